"""16-bit weights, 16-bit graph inputs and the headroom of 16-bit tensors
(:mod:`compiler.quant.wide`, :mod:`compiler.quant.precision`).

- a node's weights (``"<node>:weights"``) split offline into ``hi``/``lo`` planes run as two
  GEMMs around the ``x256`` epilogue (three with a 16-bit data operand: ``hi.hi``, ``hi.lo``,
  ``lo.hi``);
- a graph input marked 16-bit is split by the host, which writes both planes;
- a 16-bit tensor's full scale is ``WIDE_HEADROOM`` times its calibrated ``max |v|``: values up
  to that far beyond the calibration set are exact to a 16-bit step, values beyond it saturate
  at exactly that bound (int executor and golden model alike).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from compiler import convert
from compiler.backend import compile
from compiler.quant.precision import (
    int8_errors,
    output_error,
    weight_candidates,
    wide_candidates,
)
from compiler.quant.quantize import QuantizationError
from compiler.quant.wide import WIDE_HEADROOM, WIDE_MAX, WIDE_QMAX
from hw.config import preset


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _batches(seed: int, n: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(4, 16, generator=g),) for _ in range(n)]


@functools.cache
def _mlp():
    torch.manual_seed(0)
    m = _Mlp().eval()
    return m, _batches(1, 4), _batches(2, 2)


def _error(cm, m, batches) -> float:
    with torch.no_grad():
        return max(output_error([cm(*x)], [m(*x)]) for x in batches)


def _golden_equals_int(cm, x, name: str) -> None:
    samples, _ = cm.to_samples(x)
    bundle = compile(cm, preset("tiny"), batch=samples[0].shape[0], name=name)
    res = bundle.run(samples, backend="golden")
    assert res.run.status.ok
    with torch.no_grad():
        want = cm(*x, mode="int")
    assert torch.equal(res.outputs[0].reshape(want.shape), want)
    return bundle


def test_candidates_name_weights_and_the_input():
    m, cal, _ = _mlp()
    cm = convert(m, cal[0], cal, wide="none")
    assert weight_candidates(cm.graph) == ["fc1:weights", "fc2:weights", "fc3:weights"]
    assert cm.graph.inputs[0].name in wide_candidates(cm.graph)


def test_each_precision_step_lowers_the_error_and_stays_bit_exact_on_golden():
    """With the activations 16-bit the int8 weights and input dominate; holding them at 16 bits
    too brings the integer result to within a 16-bit step of float. Each stage compiles and the
    golden model equals the integer executor bit for bit (weights split into hi/lo planes,
    weights with a 16-bit data operand as three GEMMs, the input's planes written by the
    host)."""
    m, cal, test = _mlp()
    base = convert(m, cal[0], cal, wide="none")
    inp = base.graph.inputs[0].name
    acts = [t for t in wide_candidates(base.graph) if t != inp]
    weights = weight_candidates(base.graph)
    errors = {}
    for label, wide in (("acts", acts), ("acts+weights", acts + weights),
                        ("all", [inp, *acts, *weights])):
        cm = convert(m, cal[0], cal, wide=wide)
        assert cm.quant.wide_weights == ([] if label == "acts" else weights)
        errors[label] = _error(cm, m, test)
        bundle = _golden_equals_int(cm, test[0], f"wide-{label}")
        spec = bundle.manifest["inputs"][0]
        if label == "all":
            assert spec["bits"] == 16 and set(spec["planes"]) == {"hi", "lo"}
        else:
            assert spec["bits"] == 8 and set(spec["planes"]) == {"int8"}
    assert errors["acts+weights"] < errors["acts"], errors  # here the int8 input dominates
    assert errors["all"] < errors["acts+weights"] / 100, errors
    assert errors["all"] < 1e-7, errors


def test_sixteen_bit_weights_cost_one_pass_per_term_in_the_report():
    m, cal, _ = _mlp()
    cm = convert(m, cal[0], cal, wide=["fc2:weights"])
    rep = cm.report()
    rows = {r["tensor"]: r for r in rep.wide}
    assert rows["fc2:weights"]["consumer_passes"] == 1
    assert rows["fc2:weights"]["split_passes"] == 0
    assert "16-bit weights: policy" in {n.name: n.precision for n in rep.nodes}["fc2"]
    with pytest.raises(QuantizationError, match="no GEMM node"):
        convert(m, cal[0], cal, wide=["fc9:weights"])


def test_int8_errors_of_weights_and_inputs_are_measured():
    """The search ranks weights and the input with the tensors: each one's cost is the float
    graph with only it on its int8 grid (for weights: the int8 values the quantiser uses)."""
    m, cal, _ = _mlp()
    cm = convert(m, cal[0], cal, wide="none")
    samples, _ = cm.to_samples(cal[0])
    cands = wide_candidates(cm.graph) + weight_candidates(cm.graph)
    errs = int8_errors(cm, samples, cands)
    assert set(errs) == set(cands)
    assert all(0 < errs[c] < 1e-2 for c in cands), errs
    # the fc2 weights alone, by hand: the quantiser's int8 values through a float forward
    tq = cm.quant.nodes["fc2"].terms[0]
    w8 = (tq.b_int.double() * torch.as_tensor(tq.b_scale)).float()
    with torch.no_grad():
        h = torch.relu(m.fc1(cal[0][0]))
        h = torch.relu(h @ w8 + m.fc2.bias)
        y = m.fc3(h)
        ref = m(*cal[0])
    assert errs["fc2:weights"] == pytest.approx(output_error([y], [ref]), rel=1e-3)


class _Hidden(nn.Module):
    """``fc2(relu(fc1(x)))`` with a known hidden tensor: fc1 passes features 0..2 and drops
    feature 3 (which sets the input's range)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0])))
            self.fc1.bias.zero_()

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_sixteen_bit_tensor_headroom_and_saturation():
    """The hidden 16-bit tensor, calibrated on inputs with max |x| = 1: values up to
    ``WIDE_HEADROOM`` (4) times that are held to a 16-bit step; beyond it they saturate at
    exactly ``WIDE_HEADROOM`` times the calibrated maximum, in the int executor and on the golden
    model (the producer's split epilogues saturate)."""
    torch.manual_seed(0)
    m = _Hidden().eval()
    cal = [(torch.tensor([[1.0, -1.0, 0.5, 10.0], [0.0, 0.75, -0.5, -10.0]]),)]
    inp = "x"
    cm = convert(m, cal[0], cal, wide=["fc1", inp])
    assert cm.quant.wide == [inp, "fc1"]
    scale, in_scale = cm.quant.scales["fc1"], cm.quant.scales[inp]
    assert scale * WIDE_QMAX == pytest.approx(WIDE_HEADROOM * 1.0)  # hidden: max 1 at calibration
    assert in_scale * WIDE_QMAX == pytest.approx(WIDE_HEADROOM * 10.0)  # the input's feature 3
    x = torch.tensor([[3.5, 0.5, 2.0, 1.0], [6.0, 9.0, 0.1, 39.0]])
    samples, _ = cm.to_samples((x,))
    with torch.no_grad():
        _, ints = cm.run_samples(samples, "int", keep=True)
    hidden = ints["fc1"][0].double() * scale
    want = (torch.relu(x) * torch.tensor([1.0, 1.0, 1.0, 0.0])).double().clamp(max=WIDE_HEADROOM)
    assert torch.allclose(hidden, want, atol=scale + in_scale), (hidden, want)
    assert int(ints["fc1"][0].max()) == WIDE_MAX  # 6.0 and 9.0 saturate at the split bound
    assert int((ints["fc1"][0] == WIDE_MAX).sum()) == 2
    _golden_equals_int(cm, (x,), "wide-headroom")
