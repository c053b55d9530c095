"""The ops real architectures need, each converted and run in all four modes against PyTorch.

``float`` must equal the model (the lowering is exact); ``float-pwl`` adds only the PWL error
(zero for piecewise-linear functions and pure data movement); ``fake-quant`` and ``int`` add the
int8 quantisation and must agree with each other.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler import UnsupportedOpError, convert
from compiler.execute import MODES
from compiler.pwl import get_function
from compiler.pwl.functions import function_name


class _ConvThen(nn.Module):
    """A conv (so the op reads a GEMM node's output, as in a real network) then ``fn``."""

    def __init__(self, fn, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x))


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _LayerScale(nn.Module):
    """ConvNeXt's block tail: depthwise conv, channels-last LayerNorm and Linear, layer scale
    (a (C, 1, 1) parameter) and the residual add."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.ln = nn.LayerNorm(c)
        self.fc = nn.Linear(c, c)
        self.gamma = nn.Parameter(torch.randn(c, 1, 1))

    def forward(self, x):
        y = self.fc(self.ln(self.dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + self.gamma * y


def _cal(shape, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g),) for _ in range(n)]


#: name -> (module factory, input shape, float-pwl relative tolerance); modules are built in
#: the test under a fixed seed, so their weights do not depend on which tests were imported first
CASES = {
    "elu_alpha": (lambda: _ConvThen(nn.ELU(0.5)), (2, 3, 6, 6), 5e-3),
    "elu": (lambda: _ConvThen(nn.ELU()), (2, 3, 6, 6), 5e-3),
    "leaky_relu": (lambda: _ConvThen(nn.LeakyReLU(0.2)), (2, 3, 6, 6), 1e-4),
    "softplus_beta": (lambda: _ConvThen(nn.Softplus(2.0)), (2, 3, 6, 6), 5e-3),
    "mish": (lambda: _ConvThen(nn.Mish()), (2, 3, 6, 6), 5e-3),
    "gelu_tanh": (lambda: _ConvThen(nn.GELU("tanh")), (2, 3, 6, 6), 5e-3),
    "hardtanh": (lambda: _ConvThen(nn.Hardtanh(-2.0, 2.0)), (2, 3, 6, 6), 1e-4),
    "exp": (lambda: _ConvThen(lambda t: torch.exp(-F.relu(t))), (2, 3, 6, 6), 5e-3),
    "upsample_nearest": (lambda: _ConvThen(nn.Upsample(scale_factor=2)), (2, 3, 5, 5), 1e-6),
    "interpolate_bilinear": (lambda: _ConvThen(lambda t: F.interpolate(
        t, size=(9, 7), mode="bilinear", align_corners=False)), (2, 3, 5, 5), 1e-6),
    "upsample_bilinear_corners": (lambda: _ConvThen(nn.Upsample(
        scale_factor=2, mode="bilinear", align_corners=True)), (2, 3, 4, 4), 1e-6),
    "group_norm": (lambda: _ConvThen(nn.GroupNorm(2, 4)), (2, 3, 6, 6), 1e-3),
    "cat": (lambda: _ConvThen(lambda t: torch.cat([t, 2 * t], dim=1)), (2, 3, 5, 5), 1e-6),
    "chunk": (lambda: _ConvThen(lambda t: t.chunk(2, dim=1)[1] - t.chunk(2, dim=1)[0]),
              (2, 3, 5, 5),
              1e-6),
    "split": (lambda: _ConvThen(lambda t: torch.split(t, [1, 3], dim=1)[1]), (2, 3, 5, 5), 1e-6),
    "unbind": (lambda: _ConvThen(lambda t: torch.unbind(t, dim=1)[2]), (2, 3, 5, 5), 1e-6),
    "mean_all": (lambda: _ConvThen(lambda t: t.mean()), (2, 3, 5, 5), 1e-6),
    "mean_spatial": (lambda: _ConvThen(lambda t: t.mean(dim=(2, 3))), (2, 3, 5, 5), 1e-6),
    "sum_keepdim": (lambda: _ConvThen(lambda t: t.sum(dim=1, keepdim=True)), (2, 3, 5, 5), 1e-6),
    "squeeze_excite": (lambda: _ConvThen(
        lambda t: t * torch.sigmoid(t.mean(dim=(2, 3), keepdim=True))),
                       (2, 3, 6, 6), 5e-3),
    "gated_product": (lambda: _ConvThen(lambda t: t * torch.sigmoid(t)), (2, 3, 5, 5), 5e-3),
    "square_of_input": (lambda: _Lambda(lambda t: t * t), (2, 3, 5), 1e-6),
    "layer_scale": (lambda: _LayerScale(), (2, 8, 6, 6), 2e-3),
    "dropout_inplace": (lambda: _ConvThen(nn.Dropout(0.3, inplace=True)), (2, 3, 5, 5), 1e-6),
    "max_pool_ceil": (lambda: _ConvThen(nn.MaxPool2d(3, 2, ceil_mode=True)), (2, 3, 8, 9), 1e-6),
    "max_pool_ceil_padded": (lambda: _ConvThen(nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)),
                             (2, 3, 7, 7), 1e-6),
    "to_device": (lambda: _ConvThen(lambda t: t.to("cpu") + t.to(torch.float32)), (2, 3, 5, 5),
                  1e-6),
}


#: Cases whose int8 RMS error exceeds the common 2 % bound, with their own (none now: GroupNorm
#: measured 2.8 % at seed 0 and up to 4.9 % over seeds 0..19 before its statistics got 16 bits
#: with headroom, see test_group_norm_statistics_over_seeds).
INT8_RMS: dict[str, float] = {}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max error relative to the largest reference value."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS error relative to the reference's RMS."""
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-12))


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_in_all_modes_against_pytorch(name):
    factory, shape, pwl_tol = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    cm = convert(model, (x,), _cal(shape))
    with torch.no_grad():
        ref = model(x)
        got = {mode: cm(x, mode=mode) for mode in MODES}
    assert _rel(got["float"], ref) < 1e-5
    assert _rel(got["float-pwl"], ref) < pwl_tol
    for mode in ("fake-quant", "int"):
        assert _rms(got[mode], ref) < INT8_RMS.get(name, 0.02), mode
        cos = F.cosine_similarity(got[mode].reshape(1, -1).double(),
                                  ref.reshape(1, -1).double()).item()
        assert cos > 0.999, (mode, cos)
    # the same integer path, up to the fake-quant rounding of a few int8 steps
    assert _rel(got["int"], got["fake-quant"]) < 0.03


def test_conv1d_in_all_modes():
    model = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1, stride=2), nn.ELU(),
                          nn.Conv1d(5, 4, 1)).eval()
    x = torch.randn(2, 3, 16)
    cm = convert(model, (x,), _cal((2, 3, 16)))
    ref = model(x).detach()
    assert _rel(cm(x, mode="float"), ref) < 1e-5
    assert _rms(cm(x, mode="int"), ref) < 0.02


def test_nearest_upsampling_is_a_replication_in_int_mode():
    """Nearest upsampling is a one-hot GEMM: in int mode every output is a copy of an input."""
    model = _ConvThen(nn.Upsample(scale_factor=2)).eval()
    x = torch.randn(1, 3, 4, 4)
    cm = convert(model, (x,), _cal((1, 3, 4, 4)))
    out = cm(x, mode="int")
    assert torch.equal(out[..., ::2, ::2], out[..., 1::2, 1::2])
    assert torch.equal(out[..., ::2, ::2], out[..., 1::2, ::2])


def test_product_of_two_data_tensors_error_is_the_row_scale_quantisation():
    """``a * b`` (same shape) runs as row scaling by ``b`` held at 16 bits: with exact operands
    (float-pwl) the product is exact; in int mode the error is that of int8 ``a`` times int16
    ``b``, measured here against the int8 quantisation of ``a`` alone."""

    class Prod(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            return self.a(x) * self.b(x)

    model = Prod().eval()
    x = torch.randn(8, 6)
    cm = convert(model, (x,), [(x,), *_cal((8, 6))])  # x inside the calibrated range
    ref = model(x).detach()
    assert _rel(cm(x, mode="float-pwl"), ref) < 1e-6
    # measured: 1.4 % RMS, the int8 rounding of a and of the input (b at 16 bits adds ~nothing)
    assert _rms(cm(x, mode="int"), ref) < 0.02
    products = [n for n in cm.graph.nodes if n.aten == "aten.mul.Tensor"]
    assert products and all(n.epilogue.row_scale is not None for n in products)


@pytest.mark.parametrize("family,params", [
    ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.5}),
    ("softplus", {"beta": 2.0, "threshold": 20.0}), ("hardtanh", {"min_val": -2.0, "max_val": 3.0}),
])
def test_parameterised_function_names_rebuild_the_function(family, params):
    name = function_name(family, **params)
    fn = get_function(name)
    assert fn.name == name and "(" in name
    x = torch.linspace(-6, 6, 101)
    want = {"leaky_relu": lambda t: F.leaky_relu(t, 0.2), "elu": lambda t: F.elu(t, 0.5),
            "softplus": lambda t: F.softplus(t, 2.0), "hardtanh": lambda t: F.hardtanh(t, -2, 3)}
    assert torch.allclose(fn.torch(x), want[family](x))
    assert abs(float(fn(x.numpy().astype("float64"))[3]) - float(want[family](x)[3])) < 1e-6
    assert function_name(family) == family  # defaults: the plain FUNCTIONS entry


class _SeveralUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.inner = nn.Sequential(nn.Linear(4, 4))

    def forward(self, x):
        y = torch.cumsum(self.fc(x), dim=-1)  # unsupported #1
        z = torch.cumsum(self.inner(x), dim=-1)  # unsupported #1 again
        return torch.abs(y) + torch.abs(z) + torch.sign(y)  # #2 twice, #3


def test_all_unsupported_ops_are_reported_at_once_with_counts_and_locations():
    with pytest.raises(UnsupportedOpError) as info:
        convert(_SeveralUnsupported().eval(), (torch.randn(2, 4),), _cal((2, 4)))
    err = info.value
    ops = [p.op for p in err.problems]
    assert ops.count("aten.cumsum.default") == 2
    assert ops.count("aten.abs.default") == 2
    assert ops.count("aten.sign.default") == 1
    msg = str(err)
    assert "aten.cumsum.default x2" in msg and "aten.abs.default x2" in msg
    assert "aten.sign.default x1" in msg
    assert f"{__file__}:" in msg  # the user's source line
    assert all(p.location.startswith(__file__) for p in err.problems)
    assert "nmx ops" in msg and "Adding a lowering" in msg
    assert "aten.linear.default" not in msg  # no dump of the supported set
    assert len(msg.splitlines()) == 5  # summary, one line per op, pointer


@pytest.mark.parametrize("seed", [0, 11, 12, 13, 19])
def test_group_norm_statistics_over_seeds(seed):
    """GroupNorm's int error stays at its conv's own int8 error (about 1 %) for weight draws
    whose held-out group statistics leave the calibrated range (seeds 11, 13: a group variance
    12 % below it, a group mean 28 % beyond it; 4.9 % and 2.0 % RMS before)."""
    factory, shape, _ = CASES["group_norm"]
    torch.manual_seed(seed)
    model = factory().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    cm = convert(model, (x,), _cal(shape))
    with torch.no_grad():
        ref = model(x)
        conv_only = convert(model.conv, (x,), _cal(shape))(x, mode="int")
        conv_err = _rms(conv_only, model.conv(x))
        got = cm(x, mode="int")
    assert _rms(got, ref) < max(0.012, 1.3 * conv_err)
    for name in ("ln_mean", "ln_norm"):
        assert cm.graph.node(name).epilogue.out_bits == 16
