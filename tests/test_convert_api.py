"""The conversion API: integer-exact reference, batching, report, fine-tuning, zoo and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compiler import ConvertedModel, convert, finetune
from compiler.execute import _get
from compiler.quant.finetune import trainable_constants
from compiler.quant.quantize import segment_budget
from hw.numeric import epilogue, int_range


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = y + nn.functional.silu(self.dw(y))
        y = nn.functional.max_pool2d(y, 2)
        return self.fc(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    m = Block().eval()
    gen = torch.Generator().manual_seed(0)
    cal = [(torch.randn(4, 2, 6, 6, generator=gen),) for _ in range(3)]
    return m, convert(m, (torch.randn(2, 2, 6, 6, generator=gen),), cal)


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = nn.functional.hardswish(self.conv(x))
        gate = torch.sigmoid(self.fc(y.mean(dim=(2, 3))))
        return (y * gate.reshape(*gate.shape, 1, 1)).amax(dim=(2, 3))


@pytest.fixture(scope="module")
def squeeze_excite():
    torch.manual_seed(1)
    m = SqueezeExcite().eval()
    gen = torch.Generator().manual_seed(0)
    cal = [(torch.randn(4, 2, 6, 6, generator=gen),) for _ in range(3)]
    return m, convert(m, (torch.randn(2, 2, 6, 6, generator=gen),), cal)


@pytest.mark.parametrize("which", ["block", "squeeze_excite"])
def test_int_executor_is_hw_numeric_exactly(which, request):
    _, cm = request.getfixturevalue(which)
    x = torch.randn(6, 2, 6, 6)
    samples, _ = cm.to_samples((x,))
    _, vals = cm.run_samples(samples, "int", keep=True)
    g = cm.graph
    rows_scaled = 0
    for node in g.nodes:
        nq = cm.quant.nodes[node.name]
        y = vals[node.name]
        assert y.dtype == torch.int64
        lo, hi = int_range(node.epilogue.out_bits)
        assert int(y.min()) >= lo and int(y.max()) <= hi
        acc = 0
        for t, tq in zip(node.terms, nq.terms, strict=True):
            a = tq.a_int if tq.a_int is not None else _get(g, t.a, vals, {})
            b = tq.b_int if tq.b_int is not None else _get(g, t.b, vals, {})
            assert a.abs().max() <= 128 and b.abs().max() <= 128
            acc = acc + (a.numpy() @ b.numpy()) if a.ndim <= 2 and b.ndim <= 2 else acc + \
                np.matmul(a.numpy(), b.numpy())
        if nq.bias_int is not None:
            acc = acc + nq.bias_int.numpy()
        if node.epilogue.row_scale is None:
            mult = nq.multiplier
        else:
            mult = _get(g, node.epilogue.row_scale, vals, {}).numpy()
            assert cm.quant.bits[node.epilogue.row_scale.source] == 16
            rows_scaled += 1
        expect = epilogue(acc, mult, nq.shift, nq.table, node.epilogue.out_bits)
        np.testing.assert_array_equal(y.numpy(), expect)
    assert rows_scaled == (which == "squeeze_excite")


def test_int_executor_matches_an_independent_integer_mlp():
    """The int executor against integers computed here from the quantisation parameters alone
    (NumPy matmuls, no executor helpers; hw.numeric.epilogue is the one definition of the
    epilogue arithmetic, which the golden model and the RTL share)."""
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(16, 8)
    cm = convert(m, (x,), [(torch.randn(16, 8),) for _ in range(3)])
    hidden, logits = cm.graph.nodes
    q = cm.quant
    lo, hi = int_range(8)
    x_int = np.clip(np.round(x.double().numpy() / q.scales["input"]), lo, hi).astype(np.int64)
    values = x_int
    for node in (hidden, logits):
        nq = q.nodes[node.name]
        (term,) = nq.terms
        acc = values @ term.b_int.numpy().astype(np.int64) + nq.bias_int.numpy()
        values = epilogue(acc, nq.multiplier, nq.shift, nq.table, node.epilogue.out_bits)
    samples, _ = cm.to_samples((x,))
    _, kept = cm.run_samples(samples, "int", keep=True)
    np.testing.assert_array_equal(kept[logits.name][0].numpy(), values)
    with torch.no_grad():
        got, ref = cm(x), m(x)
    np.testing.assert_allclose(got.double().numpy(), values * q.scales[logits.name], rtol=1e-6)
    assert float((got - ref).abs().max()) <= 0.05 * float(ref.abs().max())


def test_batch_of_any_size_matches_per_batch_calls(block):
    _, cm = block
    x = torch.randn(5, 2, 6, 6)
    full = cm(x)
    assert full.shape == (5, 3)
    parts = torch.cat([cm(x[0:2]), cm(x[2:4])])
    assert torch.equal(full[:4], parts)
    assert torch.equal(full[4:], cm(torch.cat([x[4:], x[:1]]))[:1])


def test_converted_model_accuracy_modes(block):
    m, cm = block
    x = torch.randn(8, 2, 6, 6)
    ref = m(x)
    cos = torch.nn.functional.cosine_similarity
    for mode in ("float-pwl", "fake-quant", "int"):
        assert cos(cm(x, mode=mode).flatten(), ref.flatten(), dim=0) > 0.99
    assert isinstance(cm, ConvertedModel) and "GEMM nodes" in repr(cm)


def test_report_lists_nodes_functions_and_folding(block):
    _, cm = block
    rep = cm.report()
    assert [n.name for n in rep.nodes] == [n.name for n in cm.graph.nodes]
    assert all(0.98 < n.int_cos <= 1.0 + 1e-9 for n in rep.nodes)
    assert any(f.function == "silu" for f in rep.functions)
    silu = next(f for f in rep.functions if f.function == "silu")
    assert silu.fixed_max < 0.02 and silu.segments <= segment_budget(cm.segments, "silu")
    assert any("BatchNorm folded" in f for f in rep.folded)
    text = rep.render()
    assert "silu" in text and "conv2d" in text
    json.dumps(rep.to_dict())


def test_finetune_trains_weights_and_returns_a_new_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(64, 8)
    y = m(x).argmax(-1)
    cal = [(x[i : i + 16],) for i in range(0, 64, 16)]
    cm = convert(m, (x[:16],), cal)
    names = trainable_constants(cm)
    assert names
    data = [((x[i : i + 16],), y[i : i + 16]) for i in range(0, 64, 16)]
    before = {n: cm.graph.constants[n].clone() for n in names}
    ft = finetune(cm, data, epochs=2, lr=1e-3)
    assert ft is not cm and isinstance(ft, ConvertedModel)
    assert all(torch.equal(cm.graph.constants[n], before[n]) for n in names)
    assert any(not torch.equal(ft.graph.constants[n], before[n]) for n in names)
    with torch.no_grad():
        out0, out1 = cm(x), ft(x)
    # measured: 100 % accuracy before and after, int-output cross-entropy 0.962 -> 0.945
    assert (out1.argmax(-1) == y).float().mean() >= (out0.argmax(-1) == y).float().mean()
    ce = nn.functional.cross_entropy
    assert ce(out1, y) < 0.99 * ce(out0, y)


def test_finetune_keeps_the_best_epoch_on_validation_data():
    """With validation data the result is never worse there than the converted model."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(96, 8)
    y = m(x).argmax(-1)
    cal = [(x[i : i + 16],) for i in range(0, 64, 16)]
    cm = convert(m, (x[:16],), cal)
    data = [((x[i : i + 16],), y[i : i + 16]) for i in range(0, 64, 16)]
    val = [((x[i : i + 16],), y[i : i + 16]) for i in range(64, 96, 16)]
    ft = finetune(cm, data, epochs=3, lr=1e-2, validation=val)
    hist = ft.finetune_history
    assert hist["select"] == "loss" and len(hist["val"]) == 4 and hist["best_epoch"] > 0
    assert hist["val"][hist["best_epoch"]] == min(hist["val"]) < 0.98 * hist["val"][0]
    for select in ("loss", "agreement"):  # training at lr 10 only hurts
        wrecked = finetune(cm, data, epochs=2, lr=10.0, validation=val, select=select)
        h = wrecked.finetune_history
        assert h["best_epoch"] == 0 and len(h["val"]) == 3
        assert wrecked.quant is cm.quant
        assert all(torch.equal(wrecked.graph.constants[n], cm.graph.constants[n])
                   for n in trainable_constants(cm))
        with torch.no_grad():
            assert torch.equal(wrecked(x), cm(x))
    assert 0.9 <= h["val"][0] <= 1.0 and h["val"][1] < h["val"][0]  # agreement with float
    assert finetune(cm, data, epochs=1).finetune_history == {"select": "loss", "val": [],
                                                             "best_epoch": 1}
    from compiler import ConvertError

    with pytest.raises(ConvertError, match="validation set is empty"):
        finetune(cm, data, validation=[])
    with pytest.raises(ConvertError, match="select='best'"):
        finetune(cm, data, validation=val, select="best")


def test_fake_quant_is_differentiable():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    cm = convert(m, (torch.randn(3, 4),), [(torch.randn(3, 4),)])
    from compiler.execute import run

    consts = {k: (v.clone().requires_grad_(True) if k in trainable_constants(cm) else v)
              for k, v in cm.graph.constants.items()}
    out = run(cm.graph, [torch.randn(1, 3, 4)], "fake-quant", cm.quant, consts=consts)[0]
    out.square().sum().backward()
    grads = [consts[k].grad for k in trainable_constants(cm)]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_zoo_mlp_within_target():
    from compiler.zoo import load

    zm = load("mlp")
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    acc = zm.metric(cm(*zm.eval_inputs), zm.eval_labels)
    assert abs(acc - zm.float_accuracy) <= 0.003 + 1e-9


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_zoo_cnn_within_target(name):
    from compiler.zoo import load

    zm = load(name)
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    acc = zm.metric(cm(*zm.eval_inputs), zm.eval_labels)
    assert abs(acc - zm.float_accuracy) <= 0.003 + 1e-9


def test_nmx_convert_cli(tmp_path, capsys):
    from nmx.cli import main

    out = tmp_path / "r.json"
    assert main(["convert", "--model", "mlp", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "int8" in text and "float-pwl" in text
    res = json.loads(out.read_text())
    assert abs(res["int8"]["delta_pp"]) <= 0.3
    assert res["nodes"] >= 3


def test_fx_fallback_when_export_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("export unavailable in this test")

    monkeypatch.setattr(torch.export, "export", broken)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)).eval()
    x = torch.randn(2, 1, 6, 6)
    cm = convert(m, (x,), [(torch.randn(2, 1, 6, 6),)])
    assert cm.graph.capture_method.startswith("fx")
    assert "export unavailable" in cm.capture_note
    assert torch.allclose(cm(x, mode="float"), m(x), atol=1e-5)
    assert "fx" in cm.report().capture


@settings(max_examples=12, deadline=None)
@given(
    c=st.integers(1, 3), groups=st.sampled_from([1, "depthwise"]), k=st.integers(1, 3),
    stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2),
    hw=st.integers(5, 8),
)
def test_conv_views_match_pytorch(c, groups, k, stride, padding, dilation, hw):
    """im2col addressing (stride/padding/dilation/groups) reproduces PyTorch in float mode."""
    from compiler.execute import run
    from compiler.frontend.capture import capture
    from compiler.frontend.lowering import lower

    g = c if groups == "depthwise" else 1
    torch.manual_seed(0)
    m = nn.Conv2d(c, 2 * c, k, stride=stride, padding=padding, dilation=dilation, groups=g).eval()
    x = torch.randn(2, c, hw, hw)
    if (hw + 2 * padding - dilation * (k - 1) - 1) < 0:
        return
    graph = lower(capture(m, (x,)))
    assert len(graph.nodes) == 1
    out = run(graph, [x.unsqueeze(0)], "float")[0][0]
    assert torch.allclose(out, m(x), atol=1e-5)


def test_finetune_accepts_plain_pairs_and_unlabelled_inputs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.Hardswish(), nn.Linear(8, 2)).eval()
    x = torch.randn(16, 4)
    cm = convert(m, (x[:8],), [(x[:8],), (x[8:],)])
    labelled = finetune(cm, [(x[:8], m(x[:8]).argmax(-1))], epochs=1, lr=1e-3)
    unlabelled = finetune(cm, [x[:8], x[8:]], epochs=1, lr=1e-3)
    for ft in (labelled, unlabelled):
        assert torch.nn.functional.cosine_similarity(ft(x).flatten(), m(x).flatten(), dim=0) > 0.9
    from compiler import ConvertError

    with pytest.raises(ConvertError, match="data item has 3 tensors"):
        finetune(cm, [(x[:8], x[:8], x[:8])], epochs=1)


class _TwoFunctions(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)

    def forward(self, x):
        return torch.sigmoid(self.fc2(torch.tanh(self.fc1(x))))


def test_per_function_segment_budgets():
    torch.manual_seed(11)
    m = _TwoFunctions().eval()
    ex = (torch.randn(4, 8),)
    cal = [(torch.randn(4, 8),) for _ in range(4)]
    cm = convert(m, ex, cal, segments={"tanh": 64, "*": 4})
    fits = {n.epilogue.function: n.epilogue.fit for n in cm.graph.nodes if n.epilogue.fit}
    assert fits["tanh"].segments == 64 and fits["sigmoid"].segments == 4
    assert convert(m, ex, cal, segments={"tanh": 5}).graph.nodes[1].epilogue.fit.segments == 16
    fine = convert(m, ex, cal, segments=64)
    coarse = convert(m, ex, cal, segments=4)
    x = torch.cat([c[0] for c in cal])  # inside the calibrated ranges
    with torch.no_grad():
        err = {k: float((c(x, mode="float-pwl") - m(x)).abs().max())
               for k, c in (("fine", fine), ("mixed", cm), ("coarse", coarse))}
    assert err["fine"] < err["mixed"] < err["coarse"], err
    for bad in (0, 65, {"tanh": 100}, 16.0):
        with pytest.raises(ValueError, match="segments="):
            convert(m, ex, cal, segments=bad)


def test_end_segments_extrapolate_unless_the_range_reaches_the_asymptote():
    """A sigmoid calibrated on about [-1, 1] must not jump to its asymptote 1 just past the
    range; one calibrated far into its tails keeps the asymptote end segments."""
    from compiler.quant.quantize import asymptotes_reached

    torch.manual_seed(12)
    m = _TwoFunctions().eval()
    ex = (torch.randn(4, 8),)
    cal = [(torch.randn(4, 8),) for _ in range(4)]
    cm = convert(m, ex, cal)
    lo, hi = cm.stats.fn_range["fc2"]
    assert not asymptotes_reached("sigmoid", lo, hi, 1e-3)
    assert asymptotes_reached("sigmoid", -12.0, 12.0, 1e-3)
    fit = cm.graph.node("fc2").epilogue.fit
    x = torch.tensor([hi + 0.05 * (hi - lo)], dtype=torch.float64)
    assert abs(float(fit.eval_torch(x)) - float(torch.sigmoid(x))) < 0.01
