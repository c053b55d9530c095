"""Every supported CNN/MLP op converted and run in all executors against PyTorch.

Tolerances (random weights, random normal inputs, calibration on 4 batches of the same
distribution): ``float`` equals PyTorch to 1e-4 relative; ``float-pwl`` equals it to 1e-4 for
relu-class networks and to cosine >= 0.999 with PWL functions; ``fake-quant`` and ``int`` (int8)
meet each op's own bound in :data:`INT8_BOUNDS` (cosine to PyTorch, max abs error as a fraction of
the output's max |value|), and agree with each other to cosine >= 0.9997 (measured >= 0.99989).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler import convert
from compiler.execute import _get
from compiler.graph import GemmNode, TensorRef


class Lambda(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        return self.fn(x, *self.mods)


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return bn


CASES = {
    "linear": (lambda: nn.Linear(12, 7), (4, 12), False),
    "linear_nobias_3d": (lambda: nn.Linear(6, 5, bias=False), (2, 3, 6), False),
    "mlp_relu": (lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)),
                 (4, 10), False),
    "matmul_const_right": (lambda: Lambda(lambda x: x @ torch.linspace(-1, 1, 40).reshape(8, 5)),
                           (3, 4, 8), False),
    "matmul_const_left": (lambda: Lambda(lambda x: torch.linspace(-1, 1, 12).reshape(3, 4) @ x),
                          (2, 4, 6), False),
    "matmul_data_data": (lambda: Lambda(lambda x: x @ x.transpose(-1, -2)), (2, 5, 6), False),
    "conv": (lambda: nn.Conv2d(3, 6, 3), (2, 3, 7, 7), False),
    "conv_stride_pad_dil": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2),
                            (2, 3, 9, 9), False),
    "conv_groups": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (2, 4, 6, 6), False),
    "conv_depthwise": (lambda: nn.Conv2d(5, 5, 3, padding=1, groups=5), (2, 5, 6, 6), False),
    "conv_same": (lambda: nn.Conv2d(2, 3, 3, padding="same", bias=False), (1, 2, 5, 5), False),
    "conv_bn_folded": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), _bn(4)), (2, 3, 6, 6), False),
    "bn_unfolded": (lambda: _bn(3), (2, 3, 4, 4), False),
    "relu": (lambda: nn.Sequential(nn.Linear(6, 6), nn.ReLU()), (4, 6), False),
    "relu6": (lambda: nn.Sequential(nn.Linear(6, 6), nn.ReLU6()), (4, 6), False),
    "hardtanh06": (lambda: nn.Sequential(nn.Linear(6, 6), nn.Hardtanh(0, 6)), (4, 6), False),
    "sigmoid": (lambda: nn.Sequential(nn.Linear(6, 6), nn.Sigmoid()), (4, 6), True),
    "tanh": (lambda: nn.Sequential(nn.Linear(6, 6), nn.Tanh()), (4, 6), True),
    "silu": (lambda: nn.Sequential(nn.Linear(6, 6), nn.SiLU()), (4, 6), True),
    "hardswish": (lambda: nn.Sequential(nn.Linear(6, 6), nn.Hardswish()), (4, 6), True),
    "hardsigmoid": (lambda: nn.Sequential(nn.Linear(6, 6), nn.Hardsigmoid()), (4, 6), True),
    "maxpool2": (lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2)), (2, 2, 6, 6), False),
    "maxpool3s2p1": (lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7), False),
    "global_maxpool": (lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveMaxPool2d(1)),
                       (2, 2, 5, 5), False),
    "amax_and_max_dim": (lambda: Lambda(lambda x: x.amax(dim=(2, 3)) + x.max(dim=1)[0].mean(
        dim=(1, 2), keepdim=False).unsqueeze(1)), (2, 3, 4, 5), False),
    "avgpool": (lambda: nn.AvgPool2d(2), (2, 3, 6, 6), False),
    "avgpool_pad_exclude": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                            (2, 3, 7, 7), False),
    "adaptive_avgpool1": (lambda: nn.AdaptiveAvgPool2d(1), (2, 4, 5, 5), False),
    "adaptive_avgpool2": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 4, 5, 7), False),
    "residual_add": (lambda: Lambda(lambda x, c: x + c(x), nn.Conv2d(3, 3, 3, padding=1)),
                     (2, 3, 5, 5), False),
    "sub_and_scale": (lambda: Lambda(lambda x, l: 0.5 * l(x) - x, nn.Linear(5, 5)), (3, 5),
                      False),
    "mul_channel_const": (lambda: Lambda(lambda x: x * torch.tensor([0.5, -1.0, 2.0]).reshape(
        1, 3, 1, 1)), (2, 3, 4, 4), False),
    "add_const_vector": (lambda: Lambda(lambda x: x + torch.tensor([0.5, -1.0, 2.0, 0.0])),
                         (3, 4), False),
    "div_scalar_neg": (lambda: Lambda(lambda x: -(x / 4.0)), (3, 4), False),
    "flatten_view_permute": (lambda: Lambda(lambda x, l: l(x.permute(0, 2, 3, 1).reshape(
        x.shape[0], -1)), nn.Linear(48, 3)), (2, 3, 4, 4), False),
    "transpose_slice_select": (lambda: Lambda(lambda x: 2 * x.transpose(1, 2)[:, 1:3, :].select(
        2, 1)), (2, 4, 5), False),
    "mean_sum": (lambda: Lambda(lambda x: x.mean(dim=(2, 3)) + 0.1 * x.sum(dim=-1).mean(dim=-1)),
                 (2, 3, 4, 4), False),
    "cat": (lambda: Lambda(lambda x, l: torch.cat([x, l(x)], dim=1), nn.Linear(4, 3)), (2, 4),
            False),
    "squeeze_excite": (lambda: Lambda(
        lambda x, p, f: x * torch.sigmoid(f(p(x).flatten(1))).reshape(x.shape[0], -1, 1, 1),
        nn.AdaptiveAvgPool2d(1), nn.Linear(4, 4)), (2, 4, 3, 3), True),
}


#: Per op: (min cosine, max abs error / max |output|) of the int8 forms (fake-quant and int)
#: against PyTorch. Each bound allows twice the measured ``1 - cosine`` and 1.5 times the
#: measured error (the worse of the two forms, in the comment), rounded outward; the inputs are
#: seeded, so the measured values are the same on every run.
INT8_BOUNDS: dict[str, tuple[float, float]] = {
    "adaptive_avgpool1": (0.99922, 0.094),  # measured 0.999612, 0.0624
    "adaptive_avgpool2": (0.99995, 0.011),  # measured 0.999977, 0.0073
    "add_const_vector": (0.99995, 0.009),  # measured 0.999979, 0.0060
    "amax_and_max_dim": (0.99997, 0.018),  # measured 0.999986, 0.0114
    "avgpool": (0.99861, 0.190),  # measured 0.999308, 0.1263
    "avgpool_pad_exclude": (0.99991, 0.015),  # measured 0.999956, 0.0098
    "bn_unfolded": (0.99995, 0.006),  # measured 0.999979, 0.0035
    "cat": (0.99991, 0.010),  # measured 0.999956, 0.0060
    "conv": (0.99992, 0.015),  # measured 0.999961, 0.0097
    "conv_bn_folded": (0.99850, 0.094),  # measured 0.999254, 0.0625
    "conv_depthwise": (0.99992, 0.013),  # measured 0.999962, 0.0083
    "conv_groups": (0.99991, 0.014),  # measured 0.999956, 0.0088
    "conv_same": (0.99992, 0.014),  # measured 0.999960, 0.0088
    "conv_stride_pad_dil": (0.99990, 0.015),  # measured 0.999953, 0.0095
    "div_scalar_neg": (0.99989, 0.013),  # measured 0.999946, 0.0086
    "flatten_view_permute": (0.99995, 0.011),  # measured 0.999978, 0.0072
    "global_maxpool": (0.99780, 0.112),  # measured 0.998904, 0.0746
    "hardsigmoid": (0.99999, 0.005),  # measured 0.999999, 0.0029
    "hardswish": (0.99991, 0.026),  # measured 0.999956, 0.0170
    "hardtanh06": (0.99992, 0.021),  # measured 0.999962, 0.0135
    "linear": (0.99994, 0.015),  # measured 0.999972, 0.0095
    "linear_nobias_3d": (0.99993, 0.012),  # measured 0.999967, 0.0077
    "matmul_const_left": (0.99997, 0.009),  # measured 0.999986, 0.0053
    "matmul_const_right": (0.99995, 0.015),  # measured 0.999977, 0.0098
    "matmul_data_data": (0.99994, 0.009),  # measured 0.999972, 0.0055
    "maxpool2": (0.99990, 0.014),  # measured 0.999954, 0.0090
    "maxpool3s2p1": (0.99991, 0.019),  # measured 0.999958, 0.0121
    "mean_sum": (0.99793, 0.123),  # measured 0.998970, 0.0814
    "mlp_relu": (0.99984, 0.018),  # measured 0.999923, 0.0119
    "mul_channel_const": (0.99994, 0.009),  # measured 0.999971, 0.0053
    "relu": (0.99992, 0.021),  # measured 0.999962, 0.0135
    "relu6": (0.99992, 0.021),  # measured 0.999962, 0.0135
    "residual_add": (0.99993, 0.013),  # measured 0.999965, 0.0086
    "sigmoid": (0.99999, 0.006),  # measured 0.999999, 0.0034
    "silu": (0.99991, 0.025),  # measured 0.999959, 0.0163
    "squeeze_excite": (0.99994, 0.008),  # measured 0.999973, 0.0049
    "sub_and_scale": (0.99993, 0.010),  # measured 0.999968, 0.0061
    "tanh": (0.99994, 0.014),  # measured 0.999975, 0.0088
    "transpose_slice_select": (0.99976, 0.042),  # measured 0.999884, 0.0275
}


def _cos(a, b):
    return F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.fixture(scope="module")
def converted():
    cache = {}

    def get(name):
        if name not in cache:
            factory, shape, _ = CASES[name]
            torch.manual_seed(0)
            model = factory().eval()
            gen = torch.Generator().manual_seed(1)
            cal = [(torch.randn(shape, generator=gen),) for _ in range(4)]
            x = torch.randn(shape, generator=gen)
            cache[name] = (model, convert(model, (x,), cal), x)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_all_modes(name, converted):
    model, cm, x = converted(name)
    _, _, uses_pwl = CASES[name]
    with torch.no_grad():
        ref = model(x)
        scale = float(ref.abs().max())
        got = {m: cm(x, mode=m) for m in ("float", "float-pwl", "fake-quant", "int")}
    assert (got["float"] - ref).abs().max() <= 1e-4 * max(scale, 1)
    if uses_pwl:
        assert _cos(got["float-pwl"], ref) >= 0.999
    else:
        assert (got["float-pwl"] - ref).abs().max() <= 1e-4 * max(scale, 1)
    min_cos, max_err = INT8_BOUNDS[name]
    for mode in ("fake-quant", "int"):
        assert _cos(got[mode], ref) >= min_cos, mode
        assert (got[mode] - ref).abs().max() <= max_err * scale, mode
    assert _cos(got["int"], got["fake-quant"]) >= 0.9997


def test_every_case_has_an_int8_bound():
    assert sorted(INT8_BOUNDS) == sorted(CASES), "measure the new case and add its bound"


@pytest.mark.parametrize("name", sorted(CASES))
def test_only_gemm_nodes_survive(name, converted):
    _, cm, _ = converted(name)
    assert cm.graph.nodes, "every case computes something"
    assert all(type(n) is GemmNode for n in cm.graph.nodes)
    assert cm.node_kinds() == {"GemmNode"}
    for n in cm.graph.nodes:
        assert n.aten.startswith("aten."), n.aten


def test_batchnorm_is_folded(converted):
    _, cm, _ = converted("conv_bn_folded")
    assert len(cm.graph.nodes) == 1
    assert any("BatchNorm folded" in f for f in cm.graph.folded)


def test_relu_class_tables_are_exact(converted):
    for name in ("relu", "relu6", "maxpool2"):
        _, cm, _ = converted(name)
        assert all(n.epilogue.fit is None for n in cm.graph.nodes)


def test_maxpool_after_relu_is_exact_in_int():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)).eval()
    x = torch.randn(2, 2, 6, 6)
    cm = convert(model, (x,), [(torch.randn(2, 2, 6, 6),) for _ in range(3)])
    samples, _ = cm.to_samples((x,))
    _, vals = cm.run_samples(samples, "int", keep=True)
    conv = cm.graph.nodes[0]
    assert conv.epilogue.function == "relu"
    logical = TensorRef(conv.name, conv.shape).permute(0, 2, 1).reshape(2, 3, 6, 6)
    conv_int = _get(cm.graph, logical, vals, {})[0]
    pooled_int = _get(cm.graph, cm.graph.outputs[0], vals, {})[0]
    assert cm.quant.scales[cm.graph.outputs[0].source] == cm.quant.scales[conv.name]
    assert torch.equal(pooled_int.double(), F.max_pool2d(conv_int.double(), 3, 2, 1))


def test_elementwise_on_padded_views_is_not_pushed_through_padding():
    """sigmoid(x) viewed with zero padding differs from zero-padded sigmoid(x): no sharing."""
    from compiler.execute import run
    from compiler.frontend.capture import capture
    from compiler.frontend.lowering import lower
    from compiler.frontend.lowering.registry import LoweringContext
    from compiler.graph import Pad

    torch.manual_seed(0)
    m = nn.Linear(3, 3).eval()
    x = torch.randn(2, 3)
    graph = lower(capture(m, (x,)))
    ctx = LoweringContext(graph)
    ctx.aten = "test"
    y = graph.outputs[0]
    padded = y.view(Pad((1, 1)))
    out = ctx.combine([(padded, 1.0), (padded, 1.0)], bias=0.5, function="sigmoid")
    graph.outputs = [out]
    got = run(graph, [x.unsqueeze(0)], "float")[0][0]
    expect = torch.sigmoid(2 * F.pad(m(x), (1, 1)) + 0.5)
    assert torch.allclose(got, expect, atol=1e-6)
