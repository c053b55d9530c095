"""16-bit GEMM operands (256 hi + lo as two accumulating int8 GEMMs) and per-tensor precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compiler import QuantizationError, convert, finetune
from compiler.execute import _get
from compiler.quant.precision import output_error, wide_candidates
from compiler.quant.wide import (
    WIDE_MAX,
    WIDE_MIN,
    WIDE_PAIR_MAX_K,
    join_int16,
    scale_group,
    split_int16,
    split_saturating,
    wide_cost,
    wide_problem,
)
from hw.numeric import PwlTable, epilogue, int_range, pwl_apply, requantize

# ---- the split itself -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(1, 40), n=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_two_int8_gemms_equal_the_int16_gemm(m, k, n, seed):
    """hi·W accumulated, x256 in place (the ISA's EPI dest=ACC), lo·W accumulated == v·W."""
    rng = np.random.default_rng(seed)
    v = rng.integers(WIDE_MIN, WIDE_MAX + 1, (m, k))
    v[0, 0] = WIDE_MIN if seed % 2 else WIDE_MAX
    w = rng.integers(-128, 128, (k, n))
    hi, lo = split_int16(v)
    assert hi.min() >= -128 and hi.max() <= 127 and lo.min() >= -128 and lo.max() <= 127
    assert np.array_equal(join_int16(hi, lo), v)
    assert np.array_equal(lo, ((v + 128) % 256) - 128)
    acc = epilogue(hi @ w, 256, 0, PwlTable.identity(), 32) + lo @ w
    assert np.array_equal(acc, v @ w)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=50))
def test_producer_split_saturates_to_the_split_range(values):
    v = np.asarray(values, dtype=np.int64)
    hi, lo = split_saturating(v)
    assert hi.min() >= -128 and hi.max() <= 127 and lo.min() >= -128 and lo.max() <= 127
    assert np.array_equal(join_int16(hi, lo), np.clip(v, WIDE_MIN, WIDE_MAX))


@pytest.mark.parametrize("bad", [WIDE_MAX + 1, WIDE_MIN - 1, 32767, -40000])
def test_split_out_of_range_is_an_error(bad):
    with pytest.raises(QuantizationError, match="outside the split range"):
        split_int16(np.array([0, bad]))


# ---- converted modules ------------------------------------------------------------------------


class Outlier(nn.Module):
    """fc1's output has one channel ~60x larger than the rest: int8 loses the small channels."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)
        with torch.no_grad():
            self.fc1.weight[0] *= 60.0
            self.fc2.weight[:, 0] /= 60.0

    def forward(self, x):
        return self.fc2(self.fc1(x))


class Residual(nn.Module):
    """A residual stream with LayerNorm (the transformer pattern), ReLU-only otherwise."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)
        with torch.no_grad():
            self.fc.weight[3] *= 20.0

    def forward(self, x):
        h = x + torch.relu(self.fc(x))
        return self.head(self.norm(h))


def _data(seed, d=8, batches=4):
    gen = torch.Generator().manual_seed(seed)
    ex = (torch.randn(8, d, generator=gen),)
    cal = [(torch.randn(8, d, generator=gen),) for _ in range(batches)]
    test = torch.randn(64, d, generator=gen)
    return ex, cal, test


@pytest.fixture(scope="module")
def outlier():
    torch.manual_seed(0)
    m = Outlier().eval()
    ex, cal, test = _data(0)
    return m, ex, cal, test


def _err(m, cm, x, mode="int"):
    with torch.no_grad():
        return output_error([cm(x, mode=mode)], [m(x)])


def test_sixteen_bit_tensor_matches_pytorch_better(outlier):
    m, ex, cal, test = outlier
    narrow = convert(m, ex, cal, wide="none")
    wide = convert(m, ex, cal, wide=["fc1"])
    assert narrow.quant.wide == [] and wide.quant.wide == ["fc1"]
    assert wide.graph.node("fc1").epilogue.out_bits == 16
    assert wide.quant.bits["fc1"] == 16 and wide.quant.nodes["fc1"].split_out
    assert [t.split for t in wide.quant.nodes["fc2"].terms] == ["a"]
    e8, e16 = _err(m, narrow, test), _err(m, wide, test)
    assert e16 < e8 / 10, (e8, e16)
    # fake-quant simulates the same 16-bit path
    ef = _err(m, wide, test, "fake-quant")
    assert ef < e8 / 10
    with torch.no_grad():
        a, b = wide(test), wide(test, mode="fake-quant")
    assert torch.nn.functional.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0) > 0.99999


def test_int_executor_is_two_int8_gemms_and_hw_numeric(outlier):
    """Recompute the consumer of the 16-bit tensor from its int8 halves with hw.numeric only."""
    m, ex, cal, test = outlier
    cm = convert(m, ex, cal, wide=["fc1"])
    samples, _ = cm.to_samples((test,))
    _, vals = cm.run_samples(samples, "int", keep=True)
    v = vals["fc1"].numpy()
    assert v.min() >= WIDE_MIN and v.max() <= WIDE_MAX
    assert int(np.abs(v).max()) > 127  # really wider than int8
    node, nq = cm.graph.node("fc2"), cm.quant.nodes["fc2"]
    a = _get(cm.graph, node.terms[0].a, vals, {}).numpy()
    hi, lo = split_int16(a)
    w = nq.terms[0].b_int.numpy()
    acc = epilogue(hi @ w, 256, 0, PwlTable.identity(), 32) + lo @ w + nq.bias_int.numpy()
    lo32, hi32 = int_range(32)
    assert acc.min() >= lo32 and acc.max() <= hi32
    y = pwl_apply(requantize(acc, nq.multiplier, nq.shift), nq.table, nq.out_bits)
    assert np.array_equal(y, vals["fc2"].numpy())
    # the producer: its int32 epilogue result split by saturating epilogues
    p, pq = cm.graph.node("fc1"), cm.quant.nodes["fc1"]
    x = samples[0].double()
    xi = torch.clamp(torch.round(x / cm.quant.scales[p.terms[0].a.source]), -128, 127)
    acc1 = xi.long().numpy() @ pq.terms[0].b_int.numpy() + pq.bias_int.numpy()
    y1 = pwl_apply(requantize(acc1, pq.multiplier, pq.shift), pq.table, 32)
    assert np.array_equal(join_int16(*split_saturating(y1)), v)


def test_without_layernorm_transformer_and_auto_within_budget_change_nothing(outlier):
    """The "transformer" policy leaves a model without LayerNorm all-int8, and so does "auto"
    when the int8 error is within its budget (no search, no candidate measured)."""
    m, ex, cal, test = outlier
    base = convert(m, ex, cal, wide="none")
    none = convert(m, ex, cal, wide="transformer")
    auto = convert(m, ex, cal, wide="auto", wide_budget=1.0)
    for cm in (none, auto):
        assert cm.quant.wide == []
        assert all(n.epilogue.out_bits == b.epilogue.out_bits
                   for n, b in zip(cm.graph.nodes, base.graph.nodes, strict=True))
        assert cm.quant.scales == base.quant.scales
        with torch.no_grad():
            assert torch.equal(cm(test), base(test))
    assert auto.wide_search.chosen == [] and auto.wide_search.int8_error == {}


def test_auto_widens_the_outlier_tensor_and_meets_the_budget(outlier):
    m, ex, cal, test = outlier
    base = convert(m, ex, cal, wide="none")
    budget = 0.01
    auto = convert(m, ex, cal, wide="auto", wide_budget=budget)
    s = auto.wide_search
    assert s.chosen == ["fc1"] and auto.quant.wide == ["fc1"]
    assert s.baseline > budget >= s.final and s.met
    # fc1's measured int8 cost ranks it first; one integer run with it 16-bit met the budget
    assert max(s.int8_error, key=s.int8_error.get) == "fc1"
    assert s.steps == [(1, s.final)]
    assert _err(m, auto, test) < _err(m, base, test) / 10
    rep = auto.report((test,))
    assert [r["tensor"] for r in rep.wide] == ["fc1"]
    assert rep.wide[0]["consumer_passes"] == 1 and rep.wide[0]["split_passes"] == 2
    text = rep.render()
    assert "16-bit operand tensors" in text and "fc1" in text


def test_residual_stream_and_layernorm_input_at_16_bits():
    torch.manual_seed(3)
    m = Residual().eval()
    ex, cal, test = _data(3, d=16)
    base = convert(m, ex, cal, wide="none")
    cands = wide_candidates(base.graph)
    assert cands, "no 16-bit candidates in a residual + LayerNorm model"
    resid = [n.name for n in base.graph.nodes if n.aten.startswith("aten.add")]
    assert resid and set(resid) <= set(cands)
    cm = convert(m, ex, cal, wide=resid)
    assert cm.quant.wide == resid
    # the LayerNorm reads the 16-bit residual: its int8 terms accumulate before the x256
    readers = [n for n in cm.graph.nodes if any(t.a.source in resid or t.b.source in resid
                                                 for t in n.terms)]
    assert readers and all(cm.quant.nodes[n.name].shifted for n in readers)
    assert _err(m, cm, test) < _err(m, base, test)


def test_layernorm_policy_widens_input_and_centred_values():
    """wide="layernorm": LayerNorm input, xc and output 16-bit; Σ xc² runs as three passes."""
    torch.manual_seed(3)
    m = Residual().eval()
    ex, cal, test = _data(3, d=16)
    base = convert(m, ex, cal, wide="none")
    cm = convert(m, ex, cal, wide="layernorm")
    resid = [n.name for n in cm.graph.nodes if n.aten.startswith("aten.add")]
    centred = [n.name for n in cm.graph.nodes if n.name.startswith("ln_centred")]
    out = [n.name for n in cm.graph.nodes if n.name.startswith("ln_affine")]
    assert len(resid) == len(centred) == len(out) == 1
    assert cm.quant.wide == resid + centred + out
    rstd = next(n for n in cm.graph.nodes if n.name.startswith("ln_rstd"))
    assert [t.split for t in cm.quant.nodes[rstd.name].terms] == ["ab"]
    assert cm.quant.nodes[rstd.name].shifted
    assert _err(m, cm, test) < 0.7 * _err(m, base, test)
    assert _err(m, cm, test, "fake-quant") < 0.7 * _err(m, base, test, "fake-quant")


class PostNormFfn(nn.Module):
    """``LayerNorm(x + fc2(gelu(fc1(x))))``: a transformer FFN sublayer (post-norm)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.norm(x + self.fc2(nn.functional.gelu(self.fc1(x)))))


def test_layernorm_policy_widens_the_ffn_hidden_layer():
    """wide="layernorm" also holds the activation read by the projection into the stream."""
    torch.manual_seed(5)
    m = PostNormFfn().eval()
    ex, cal, test = _data(5, d=16)
    base = convert(m, ex, cal, wide="none")
    cm = convert(m, ex, cal, wide="layernorm")
    hidden = next(n for n in cm.graph.nodes if n.epilogue.function == "gelu")
    assert hidden.module == "fc1" and hidden.name in cm.quant.wide
    proj = next(n for n in cm.graph.nodes if any(t.a.source == hidden.name for t in n.terms))
    assert cm.quant.nodes[proj.name].shifted
    assert not any(n.startswith("fc2") or n.startswith("head") for n in cm.quant.wide)
    assert _err(m, cm, test) < _err(m, base, test)


def test_patterns_and_errors(outlier):
    m, ex, cal, test = outlier
    cm = convert(m, ex, cal, wide=["fc*"])
    assert cm.quant.wide == ["fc1"]  # fc2 is the int32 output: not a GEMM operand
    with pytest.raises(QuantizationError, match="matches no tensor"):
        convert(m, ex, cal, wide=["nothing*"])
    with pytest.raises(QuantizationError, match="cannot be a 16-bit GEMM operand: no such"):
        convert(m, ex, cal, wide=["nope"])
    name = cm.graph.inputs[0].name  # a graph input can be 16-bit (the host splits it)
    assert convert(m, ex, cal, wide=[name]).quant.wide == [name]
    with pytest.raises(QuantizationError, match="no GEMM node 'nope'"):
        convert(m, ex, cal, wide=["nope:weights"])
    with pytest.raises(QuantizationError, match="weight pattern 'no\\*:weights' matches no"):
        convert(m, ex, cal, wide=["no*:weights"])
    assert convert(m, ex, cal, wide=["fc*:weights"]).quant.wide_weights == [
        "fc1:weights", "fc2:weights"]
    with pytest.raises(QuantizationError, match="writes int32"):
        convert(m, ex, cal, wide=["fc2"])
    with pytest.raises(ValueError, match="wide='some'"):
        convert(m, ex, cal, wide="some")


class SelfProduct(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.fc2 = nn.Linear(width, 4)

    def forward(self, x):
        h = self.fc(x)
        g = self.fc2(h)
        return h @ h.transpose(-1, -2) + g @ g.transpose(-1, -2)


class TwoOperands(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.q = nn.Linear(4, width)
        self.k = nn.Linear(4, width)

    def forward(self, x):
        return self.q(x) @ self.k(x).transpose(-1, -2)


def _assert_three_pass_node_exact(cm, node, test):
    """Recompute ``node``'s integer output as docs/isa.md specifies a term with two 16-bit
    operands (hi·hi, x256, hi·lo + lo·hi) from its operands' halves, with hw.numeric only."""
    samples, _ = cm.to_samples((test,))
    _, vals = cm.run_samples(samples, "int", keep=True)
    nq = cm.quant.nodes[node.name]
    acc = 0
    for t, tq in zip(node.terms, nq.terms, strict=True):
        a, b = (_get(cm.graph, r, vals, {}).numpy() for r in (t.a, t.b))
        if tq.split == "ab":
            (ha, la), (hb, lb) = split_int16(a), split_int16(b)
            acc = acc + 256 * (ha @ hb) + ha @ lb + la @ hb
        else:
            acc = acc + 256 * (a @ b)  # int8 terms accumulate before the x256 epilogue
    bias = 0 if nq.bias_int is None else nq.bias_int.numpy()
    x = requantize(acc + bias, nq.multiplier, nq.shift)
    assert np.array_equal(pwl_apply(x, nq.table, nq.out_bits), vals[node.name].numpy())


def test_self_product_of_a_16_bit_tensor_runs_three_passes():
    """h @ hᵀ with h 16-bit: hi·hi, x256, hi·lo + lo·hi (bit-exact), error well below int8's."""
    torch.manual_seed(4)
    m = SelfProduct().eval()
    ex, cal, test = _data(4, d=4)
    test = test[:8]  # rows interact (h @ hᵀ): one example-sized batch
    cm = convert(m, ex, cal, wide=["fc"])
    base = convert(m, ex, cal, wide="none")
    assert cm.quant.wide == ["fc"]
    node = next(n for n in cm.graph.nodes if any(t.a.source == t.b.source == "fc"
                                                 for t in n.terms))
    nq = cm.quant.nodes[node.name]
    i = next(i for i, t in enumerate(node.terms) if t.a.source == t.b.source == "fc")
    assert nq.terms[i].split == "ab" and nq.shifted
    assert all(tq.pre_shift == (tq.split is None) for tq in nq.terms)
    _assert_three_pass_node_exact(cm, node, test)
    with torch.no_grad():
        e16 = output_error([cm(test)], [m(test)])
        ef = output_error([cm(test, mode="fake-quant")], [m(test)])
        e8 = output_error([base(test)], [m(test)])
    assert e16 < 1e-3 and ef < 1e-3 and e16 < e8, (e16, ef, e8)
    # fc2 reads fc's lo half once, the self-product twice (hi·lo, lo·hi)
    assert wide_cost(cm.graph, ["fc"])[0]["consumer_passes"] == 3


def test_long_self_product_reads_its_hi_halves():
    """Beyond WIDE_PAIR_MAX_K the hi·hi sum could overflow the x256 epilogue: one hi·hi GEMM."""
    torch.manual_seed(4)
    m = SelfProduct(width=WIDE_PAIR_MAX_K + 1).eval()
    ex, cal, test = _data(4, d=4)
    test = test[:8]
    cm = convert(m, ex, cal, wide=["fc"])
    node = next(n for n in cm.graph.nodes if any(t.a.source == t.b.source == "fc"
                                                 for t in n.terms))
    nq = cm.quant.nodes[node.name]
    i = next(i for i, t in enumerate(node.terms) if t.a.source == t.b.source == "fc")
    assert nq.terms[i].split == "hh"
    samples, _ = cm.to_samples((test,))
    _, vals = cm.run_samples(samples, "int", keep=True)
    t = node.terms[i]
    hia = split_int16(_get(cm.graph, t.a, vals, {}).numpy())[0]
    assert np.abs(hia).max() > 64  # the hi halves carry the magnitude
    assert np.array_equal(hia, np.floor((_get(cm.graph, t.a, vals, {}).numpy() + 128) / 256))
    with torch.no_grad():
        e16 = output_error([cm(test)], [m(test)])
        ef = output_error([cm(test, mode="fake-quant")], [m(test)])
    assert e16 < 1e-3 and ef < 1e-3, (e16, ef)
    assert wide_cost(cm.graph, ["fc"])[0]["consumer_passes"] == 1  # fc2 only; hi·hi is free


def test_two_different_16_bit_operands_run_three_passes():
    torch.manual_seed(4)
    m = TwoOperands().eval()
    ex, cal, test = _data(4, d=4)
    test = test[:8]
    cm = convert(m, ex, cal, wide=["q", "k"])
    base = convert(m, ex, cal, wide="none")
    node = cm.graph.nodes[-1]
    assert [tq.split for tq in cm.quant.nodes[node.name].terms] == ["ab"]
    _assert_three_pass_node_exact(cm, node, test)
    with torch.no_grad():
        e16 = output_error([cm(test)], [m(test)])
        e8 = output_error([base(test)], [m(test)])
        ef = output_error([cm(test, mode="fake-quant")], [m(test)])
    assert e16 < e8 and abs(ef - e16) < 0.1 * e16 + 1e-6, (e16, ef, e8)


def test_long_product_of_two_16_bit_operands_is_refused():
    torch.manual_seed(4)
    m = TwoOperands(width=WIDE_PAIR_MAX_K + 1).eval()
    ex, cal, _ = _data(4, d=4)
    with pytest.raises(QuantizationError, match=f"exceeds {WIDE_PAIR_MAX_K}"):
        convert(m, ex, cal, wide=["q", "k"])


def test_accumulator_overflow_of_the_x256_stage_is_an_error():
    """K = 600: 600 * 127 * 127 fits int32 for int8 operands, but x256 does not."""
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(8, 600), nn.Linear(600, 2)).eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.rand(600, 8) + 0.5)
        m[0].bias.zero_()
        m[1].weight.fill_(1.0)
    gen = torch.Generator().manual_seed(5)
    ex = (torch.rand(4, 8, generator=gen),)
    cal = [(torch.rand(4, 8, generator=gen),)]
    narrow = convert(m, ex, cal, wide="none")
    # the input 16-bit too: a 16-bit tensor gets 4x headroom (WIDE_HEADROOM) over its
    # calibrated range, so fc1 reaches its full scale only from a 16-bit input
    cm = convert(m, ex, cal, wide=["0", narrow.graph.inputs[0].name])
    big = 10 * torch.ones(4, 8)  # saturates fc1 at WIDE_MAX: hi = 127 everywhere
    narrow(big)
    with pytest.raises(QuantizationError, match="x256 epilogue"):
        cm(big)


def test_cost_and_finetune_keep_the_choice(outlier):
    m, ex, cal, test = outlier
    cm = convert(m, ex, cal, wide=["fc1"])
    (row,) = wide_cost(cm.graph)
    assert row["tensor"] == "fc1" and row["consumer_macs"] == 8 * 16 * 4
    data = [((x,), None) for (x,) in cal]
    ft = finetune(cm, data, epochs=1, lr=1e-4)
    assert ft.quant.wide == ["fc1"]
    assert _err(m, ft, test) < _err(m, convert(m, ex, cal, wide="none"), test)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "resnet", "mobilenet"])
def test_zoo_cnn_mlp_auto_keeps_int8_and_results(name):
    """The CNN/MLP zoo models are within the default budget: "auto" changes nothing."""
    from compiler.zoo import load

    zm = load(name)
    none = convert(zm.model, zm.example_inputs, zm.calibration, wide="none")
    auto = convert(zm.model, zm.example_inputs, zm.calibration, wide="auto")
    assert auto.quant.wide == [] and auto.wide_search.chosen == []
    assert auto.wide_search.baseline <= auto.wide_search.budget
    with torch.no_grad():
        assert torch.equal(auto(*zm.eval_inputs), none(*zm.eval_inputs))


class TwoSided(nn.Module):
    """A 16-bit tensor as the left operand of a data x data GEMM and as the right operand of a
    constant x data GEMM (split "a" and split "b")."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.mix = nn.Parameter(torch.randn(5, 8))
        with torch.no_grad():
            self.fc1.weight[0] *= 40.0

    def forward(self, x):
        h = self.fc1(x)
        g = self.fc2(x)
        return h @ g.transpose(-1, -2) + (self.mix @ h).mean(dim=0, keepdim=True)


def test_data_x_data_and_constant_x_data_splits():
    torch.manual_seed(6)
    m = TwoSided().eval()
    ex, cal, test = _data(6)
    test = test[:8]
    base = convert(m, ex, cal, wide="none")
    cm = convert(m, ex, cal, wide=["fc1"])
    splits = {t.split for n in cm.quant.nodes.values() for t in n.terms}
    assert {"a", "b"} <= splits, splits
    assert _err(m, cm, test) < _err(m, base, test)
    with torch.no_grad():
        a, b = cm(test), cm(test, mode="fake-quant")
    assert torch.nn.functional.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0) > 0.9999


@pytest.mark.parametrize("sdpa", [False, True], ids=["eager", "sdpa"])
def test_transformer_policy_holds_attention_and_stream_at_16_bits(sdpa):
    """The default policy: queries, keys, the scores with their max tree, exp and P·V, the
    LayerNorm values and the embedding lookup (with a 16-bit table) are 16-bit; values stay
    int8; the hidden states get much closer to float than with "layernorm"."""
    from tests.test_lowering_transformer import _Block, _rows_cos, _tok

    torch.manual_seed(2)
    model = _Block(sdpa=sdpa).eval()
    ex, cal = _tok(1, seed=1)[0], _tok(8, seed=2)
    cm = convert(model, ex, cal)
    ln = convert(model, ex, cal, wide="layernorm")
    g, wide = cm.graph, set(cm.quant.wide)
    assert set(ln.quant.wide) < wide
    exps = [n for n in g.nodes if n.name.startswith("sm_exp")]
    assert exps and all(e.name in wide for e in exps)
    for e in exps:
        group = scale_group(g, e.terms[0].a.source)
        assert len(group) > 3 and set(group) <= wide  # scores, half, tree, max
        root = cm.quant.nodes[group[0]]
        assert [t.split for t in root.terms] == ["ab"]  # 16-bit queries x 16-bit keys
        readers = [n for n in g.nodes if n.epilogue.row_scale is not None
                   and any(t.a.source == e.name for t in n.terms)]
        assert readers and all(cm.quant.nodes[n.name].terms[0].split == "a" for n in readers)
    assert all(n.name in wide for n in g.nodes if n.name.startswith("ln_norm"))
    assert not any(n.module == "v" for n in g.nodes if n.name in wide)
    emb = next(n for n in g.nodes if n.module == "emb")
    tq = cm.quant.nodes[emb.name].terms[0]
    assert emb.name in wide and tq.split == "b" and int(tq.b_int.abs().max()) > 127

    def err(c):
        e = []
        for ids, mask in _tok(6, seed=3):
            with torch.no_grad():
                e.append(1 - _rows_cos(c(ids, mask)[0], model(ids, mask)[0]).flatten())
        return float(torch.cat(e).mean())

    assert err(cm) < 0.2 * err(ln), (err(cm), err(ln))  # measured: 3.3e-6 vs 1.2e-4


def test_naming_one_member_widens_its_scale_group():
    """The softmax max tree is quantised like the scores: 8 or 16 bits together, exact."""
    from tests.test_lowering_transformer import _Block, _tok

    torch.manual_seed(2)
    model = _Block().eval()
    ex, cal = _tok(1, seed=1)[0], _tok(8, seed=2)
    cm = convert(model, ex, cal, wide=["sm_max"])
    group = scale_group(cm.graph, "sm_max")
    assert group[0] != "sm_max" and len(group) > 3
    assert set(cm.quant.wide) == set(group)
    assert {cm.quant.scales[m] for m in group} == {cm.quant.scales[group[0]]}
    cands = wide_candidates(convert(model, ex, cal, wide="none").graph)
    assert group[0] in cands and "sm_max" not in cands  # a group is listed by its root
    ids, mask = _tok(1, seed=3)[0]
    samples, _ = cm.to_samples((ids, mask))
    _, iv = cm.run_samples(samples, "int", keep=True)
    diff = iv["sm_max"] - iv[group[0]].max(-1, keepdim=True).values
    assert int(diff.abs().max()) <= 1  # within one 16-bit step of the row maximum


def test_a_scale_group_tied_to_an_input_cannot_be_16_bit():
    """Max-pool steps on a graph input are quantised like that int8 input: not 16-bit-able."""
    torch.manual_seed(7)
    m = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = torch.randn(8, 1, 4, 4)
    cm = convert(m, (x,), [(x,)], wide="none")
    tied = [n.name for n in cm.graph.nodes if n.epilogue.scale_like is not None
            and cm.graph.kind_of(n.epilogue.scale_like) == "input"]
    assert tied
    assert "a input tensor" in wide_problem(cm.graph, tied[0])
    with pytest.raises(QuantizationError, match="quantised like"):
        convert(m, (x,), [(x,)], wide=[tied[0]])
