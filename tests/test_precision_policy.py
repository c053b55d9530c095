"""The measured precision policy (``convert(..., wide="auto")``, the default) on a small
EfficientNet-style CNN: depthwise convolution, SiLU, squeeze-excite, residual add, average pool.

One channel of the expansion layer is 200x larger than the others and the layers reading it
weigh it down again (a heavy-tailed tensor, as the random EfficientNet-B0 of docs/coverage.md
has): int8 with one scale per tensor loses the small channels that carry the output, so the
int8 graph misses the budget and the search must promote tensors. Checked against PyTorch, in
the report, and on the golden model (bit-exact with the integer executor).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from compiler import convert
from compiler.backend import compile
from compiler.quant.precision import DEFAULT_BUDGET, int8_errors, output_error, wide_candidates
from hw.config import preset


class _Block(nn.Module):
    """Expand (1x1, SiLU), depthwise 3x3 (SiLU), squeeze-excite, project, residual, pool, head."""

    def __init__(self, c: int = 8, e: int = 24) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c, e, 1), nn.BatchNorm2d(e), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(e, e, 3, padding=1, groups=e), nn.BatchNorm2d(e),
                                nn.SiLU())
        self.se_fc1, self.se_fc2 = nn.Conv2d(e, 6, 1), nn.Conv2d(6, e, 1)
        self.project = nn.Sequential(nn.Conv2d(e, c, 1), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        h = self.dw(self.expand(x))
        s = torch.sigmoid(self.se_fc2(torch.nn.functional.silu(self.se_fc1(
            h.mean((2, 3), keepdim=True)))))
        y = x + self.project(h * s)
        return self.head(y.mean((2, 3)))


def _data(seed: int, n: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 8, 8, 8, generator=gen),) for _ in range(n)]


@functools.cache
def _case():
    torch.manual_seed(0)
    m = _Block().eval()
    with torch.no_grad():  # one heavy channel: 200x the others after the expansion
        for bn in (m.expand[1], m.dw[1], m.project[1]):
            bn.running_var.uniform_(0.5, 2.0)
        m.expand[1].weight[0] = 200.0  # ... which the layers reading it weigh down again
        m.se_fc1.weight[:, 0] /= 200.0
        m.project[0].weight[:, 0] /= 200.0
        m.project[1].weight *= 16.0  # the block's branch, not the input, carries the residual sum
    cal, test = _data(1, 4), _data(2, 4)
    return m, cal[0], cal, test


@functools.cache
def _converted(wide):
    m, ex, cal, _ = _case()
    return convert(m, ex, cal, wide=wide if isinstance(wide, str) else list(wide))


def _held_out_error(cm) -> float:
    m, _, _, test = _case()
    with torch.no_grad():
        return max(output_error([cm(*x)], [m(*x)]) for x in test)


def test_int8_misses_the_budget_and_auto_meets_it():
    int8, auto = _converted("none"), _converted("auto")
    s = auto.wide_search
    assert s.baseline > DEFAULT_BUDGET, "the test model must need 16-bit tensors"
    assert s.met and s.final <= DEFAULT_BUDGET < s.baseline
    assert s.chosen and set(s.chosen) <= set(s.int8_error)
    assert set(auto.quant.wide) >= set(s.chosen)
    assert len(s.chosen) < len(s.int8_error), "the search must not simply promote everything"
    # measured on held-out inputs against PyTorch: the chosen tensors buy a real improvement
    e8, ea = _held_out_error(int8), _held_out_error(auto)
    assert ea < e8 / 4, (e8, ea)


def test_chosen_tensors_are_the_top_of_the_measured_ranking():
    s = _converted("auto").wide_search
    ranking = sorted(s.int8_error, key=lambda n: -s.int8_error[n])
    assert s.chosen == ranking[:len(s.chosen)]
    # ... and the bisection found the shortest prefix: one tensor fewer misses the budget
    shorter = [e for k, e in s.steps if k == len(s.chosen) - 1]
    assert len(s.chosen) == 1 or (shorter and shorter[-1] > s.budget)


def test_int8_errors_are_whole_graph_measurements():
    """The incremental recomputation equals a float run of the whole graph with the tensor
    rounded to its int8 grid (here done with the fake-quant executor on a copy of the
    quantisation in which every other tensor and constant is float)."""
    cm = _converted("none")
    samples, _ = cm.to_samples(_case()[1])
    cands = wide_candidates(cm.graph)
    errs = int8_errors(cm, samples, cands)
    assert set(errs) == set(cands) and all(v >= 0 for v in errs.values())
    top = max(errs, key=errs.get)
    with torch.no_grad():
        ref = cm.run_samples(samples, "float")
        _, vals = cm.run_samples(samples, "float", keep=True)
    from compiler.execute import _float_node, _fq, _get

    vals = dict(vals)
    vals[top] = _fq(vals[top], cm.quant.scales[top], 8)
    names = [n.name for n in cm.graph.nodes]
    with torch.no_grad():
        for node in cm.graph.nodes[names.index(top) + 1:]:
            vals[node.name] = _float_node(cm.graph, node, vals, cm.graph.constants, "float",
                                          None, None)
        full = output_error([_get(cm.graph, o, vals, {}) for o in cm.graph.outputs], ref)
    assert errs[top] == pytest.approx(full, rel=1e-6, abs=1e-12)
    assert errs[top] > 10 * DEFAULT_BUDGET  # the heavy expansion output dominates


def test_requantising_with_the_warm_cache_equals_a_cold_quantisation():
    """The search re-quantises through ``quantize_graph``'s cache (only nodes whose inputs,
    precision or scales changed are recomputed): the result equals a fresh quantisation."""
    from compiler.quant.precision import set_wide
    from compiler.quant.quantize import quantize_graph

    m, ex, cal, test = _case()
    cm = convert(m, ex, cal, wide="auto")
    assert len(cm.fit_cache) > len(cm.graph.nodes)  # nodes and fits of several precisions
    warm = cm.quant
    with torch.no_grad():
        got = cm(*test[0])
        cold = quantize_graph(cm.graph, cm.stats, segments=cm.segments)
        cm.quant = cold
        assert torch.equal(cm(*test[0]), got)
        assert warm.scales == cold.scales and warm.wide == cold.wide
        set_wide(cm.graph, cm.wide_search.chosen[:1], wide=False)  # one tensor back to int8
        cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments,
                                  fit_cache=cm.fit_cache)
        a = cm(*test[0])
        cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments)
        assert torch.equal(cm(*test[0]), a)


def test_sixteen_bit_outputs_get_the_full_pwl_table():
    """A function whose output is 16 bits wide is fitted with 64 segments by default (16 would be
    about 1 % of a typical SiLU value off, far more than a 16-bit step); int8 outputs keep 16."""
    from compiler.quant.quantize import segment_budget

    cm = _converted("auto")
    fitted = [n for n in cm.graph.nodes if n.epilogue.fit is not None]
    wide = [n for n in fitted if n.epilogue.out_bits != 8]
    narrow = [n for n in fitted if n.epilogue.out_bits == 8]
    assert wide and narrow  # e.g. the 16-bit SE gate and expand SiLU, an int8 SE SiLU
    assert all(n.epilogue.fit.segments > 16 for n in wide)
    assert all(n.epilogue.fit.segments <= 16 for n in narrow)
    assert segment_budget(cm.segments, "silu", 16) == 64
    assert segment_budget(cm.segments, "silu", 8) == 16
    assert segment_budget({"silu": 8, "16-bit": 64}, "silu", 16) == 8  # own entry first


def test_wide_max_limits_the_search():
    m, ex, cal, _ = _case()
    cm = convert(m, ex, cal, wide_max=1)
    assert len(cm.wide_search.chosen) == 1 and len(cm.quant.wide) == 1
    with pytest.raises(ValueError, match="wide_max"):
        convert(m, ex, cal, wide_max=-1)
    with pytest.raises(ValueError, match="wide_budget"):
        convert(m, ex, cal, wide_budget=-0.1)


def test_report_states_each_nodes_precision_and_measured_cost():
    cm = _converted("auto")
    rep = cm.report(_case()[3][0])
    rows = {n.name: n for n in rep.nodes}
    for name in cm.wide_search.chosen:
        assert rows[name].precision.startswith("16-bit operand: measured")
        assert rows[name].int8_error == cm.wide_search.int8_error[name]
    assert any(n.precision == "int8" for n in rep.nodes)
    text = rep.render(width=250)
    assert "precision (auto)" in text and "meets the budget" in text
    assert "16-bit operand: measured" in text


@pytest.mark.parametrize("wide", ["auto", "all"])
def test_sixteen_bit_cnn_tensors_bit_exact_on_the_golden_model(wide):
    """Every op of the block with 16-bit operands (with ``"all"``: every candidate, i.e. the
    depthwise input and output, the SE pool, gates' producer and product, the residual sum)
    compiles and runs on the golden model bit for bit like the integer executor."""
    if wide == "all":
        base = _converted("none")
        cm = _converted(tuple(wide_candidates(base.graph)))
        assert set(cm.quant.wide) >= set(wide_candidates(base.graph))
    else:
        cm = _converted("auto")
    assert cm.quant.wide
    x = _case()[3][0]
    samples, _ = cm.to_samples(x)
    bundle = compile(cm, preset("tiny"), batch=1, name=f"precision-{wide}")
    res = bundle.run(samples, backend="golden")
    assert res.run.status.ok
    with torch.no_grad():
        want = cm(*x, mode="int")
    assert torch.equal(res.outputs[0][0], want)
