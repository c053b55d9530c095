"""compiler/coverage/diagnose.py: per-node local errors and the error-source breakdown."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compiler import convert
from compiler.coverage.architectures import Case
from compiler.coverage.diagnose import _without, error_sources, local_errors


def _case(seed: int = 0) -> Case:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(),
                          nn.Flatten(), nn.Linear(8 * 36, 5)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(2, 3, 6, 6, generator=g),) for _ in range(6)]
    return Case(model, batches[0], batches[:4], batches[4:])


def test_local_error_excludes_what_a_node_inherits():
    case = _case()
    cm = convert(case.model, case.example_inputs, case.calibration)
    rows = local_errors(cm, case.evaluation[0])
    assert [r.name for r in rows] == [n.name for n in cm.graph.nodes]
    assert all(0 <= r.local < 0.05 for r in rows), rows
    # the last node inherits every upstream rounding: its total error exceeds its own
    assert rows[-1].total > rows[-1].local


def test_error_sources_leave_the_model_as_it_was():
    case = _case()
    cm = convert(case.model, case.example_inputs, case.calibration)
    from compiler.quant.precision import wide_choices

    quant, bits = cm.quant, [n.epilogue.out_bits for n in cm.graph.nodes]
    choices = wide_choices(cm.graph)
    x = case.evaluation[0][0]
    before = cm(x, mode="int")
    res = error_sources(cm, case)
    assert cm.quant is quant and [n.epilogue.out_bits for n in cm.graph.nodes] == bits
    assert wide_choices(cm.graph) == choices
    assert torch.equal(cm(x, mode="int"), before)
    assert set(res) == {"int", "fake-quant", "inputs only", "weights only", "activations only",
                        "int, all int8", "int, every activation 16-bit",
                        "int, everything 16-bit"}
    assert res["int, all int8"] < 1 - 1e-7, res
    assert res["int, everything 16-bit"] > 0.9999, res
    # each variant quantises something; with 16-bit activations the int8 input dominates (this
    # small network's errors partly cancel, so neither is bounded by the full int8 result)
    for label in ("inputs only", "weights only", "activations only"):
        assert res[label] < 1 - 1e-7, (label, res)
    assert res["int, every activation 16-bit"] > 0.998, res
    assert res["int"] == pytest.approx(res["fake-quant"], abs=5e-3)


def test_with_every_source_left_out_only_the_pwl_error_remains():
    case = _case()
    cm = convert(case.model, case.example_inputs, case.calibration)
    qp = cm.quant
    cm.quant = _without(qp, inputs=[i.name for i in cm.graph.inputs], constants=True,
                        activations=True, amax=cm.stats.amax)
    x = case.evaluation[0][0]
    with torch.no_grad():
        got, pwl = cm(x, mode="fake-quant"), cm(x, mode="float-pwl")
    assert float((got - pwl).abs().max() / pwl.abs().max()) < 1e-4


def test_error_sources_with_sixteen_bit_weights_and_input():
    """Leaving out a source must work when terms read 16-bit weights against 16-bit data (the
    ``"ab"`` terms the fake-quant executor models with their dropped ``lo.lo`` part): an operand
    left unquantised has no halves to drop."""
    from compiler.quant.precision import weight_candidates, wide_candidates

    case = _case()
    base = convert(case.model, case.example_inputs, case.calibration, wide="none")
    wide = wide_candidates(base.graph) + weight_candidates(base.graph)
    cm = convert(case.model, case.example_inputs, case.calibration, wide=wide)
    res = error_sources(cm, case)
    assert res["int"] > 0.9999 and res["int, everything 16-bit"] > 0.9999, res
    assert res["int"] == pytest.approx(res["fake-quant"], abs=1e-4)
