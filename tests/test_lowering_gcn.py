"""GCN (Â·X·W) and data x data matrix products through the conversion, in all four modes.

Â is a constant (a buffer): ``Â @ (X W)`` is a GEMM whose *left* operand is constant (one int8
scale per tensor); ``X W`` a GEMM with per-column int8 weights. Tolerances: ``float`` and
``float-pwl`` (ReLU is exact) reproduce PyTorch to float32 rounding; ``fake-quant``/``int`` are
within a few percent (relative norm) and agree on >= 97 % of argmax node labels of a random net.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler.convert import convert

MODES = ("float", "float-pwl", "fake-quant", "int")


def _normalized_adjacency(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.zeros(n, n)
    for i in range(n):
        a[i, torch.randperm(n, generator=g)[:k]] = 1.0
    a = torch.maximum(a, a.t())
    a.fill_diagonal_(0.0)
    a_hat = a + torch.eye(n)
    d = a_hat.sum(1).rsqrt()
    return a_hat * d[:, None] * d[None, :]


class _GCN(nn.Module):
    def __init__(self, n=120, f=16, hidden=24, classes=5, order="a_xw"):
        super().__init__()
        self.register_buffer("a_norm", _normalized_adjacency(n, 4, 0))
        self.l1, self.l2 = nn.Linear(f, hidden), nn.Linear(hidden, classes)
        self.order = order

    def forward(self, x):
        if self.order == "a_xw":
            h = F.relu(torch.matmul(self.a_norm, self.l1(x)))
            return torch.matmul(self.a_norm, self.l2(h))
        h = F.relu(self.l1(self.a_norm @ x))  # (Â X) W
        return self.l2(self.a_norm @ h)


def _feats(n_sets, n=120, f=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(n, f, generator=g),) for _ in range(n_sets)]


@pytest.fixture(scope="module", params=["a_xw", "ax_w"])
def gcn(request):
    torch.manual_seed(0)
    model = _GCN(order=request.param).eval()
    x = _feats(1, seed=1)[0]
    cal = [x] + [(x[0] + 0.02 * torch.randn_like(x[0]),) for _ in range(3)]
    cm = convert(model, x, cal)
    with torch.no_grad():
        ref = model(*x)
        outs = {m: cm(*x, mode=m) for m in MODES}
    return cm, ref, outs


@pytest.mark.parametrize("mode", MODES)
def test_gcn_modes(gcn, mode):
    cm, ref, outs = gcn
    y = outs[mode]
    assert cm.node_kinds() == {"GemmNode"}
    if mode in ("float", "float-pwl"):
        assert torch.allclose(y, ref, atol=1e-4)
    else:
        rel = float((y - ref).norm() / ref.norm())
        agree = float((y.argmax(1) == ref.argmax(1)).float().mean())
        assert rel < 0.05 and agree >= 0.97, (rel, agree)


def test_adjacency_is_a_constant_left_operand(gcn):
    cm, _, _ = gcn
    consts = [n for n in cm.graph.nodes if any(cm.graph.is_const(t.a) and not
                                               cm.graph.is_const(t.b) for t in n.terms)]
    assert consts, "Â should be the constant left operand of a GEMM"
    a = cm.graph.const_value(consts[0].terms[0].a)
    assert a.shape == (120, 120)


class _DataMatmul(nn.Module):
    """matmul / bmm / transposed products between two data tensors."""

    def forward(self, x, y):
        a = torch.matmul(x, y.transpose(-1, -2))  # (B, M, M)
        b = torch.bmm(x.transpose(1, 2), y)  # (B, K, K)
        return a, b


@pytest.mark.parametrize("mode", MODES)
def test_data_by_data_matmul(mode):
    g = torch.Generator().manual_seed(3)

    def pair():
        return (torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 5, generator=g))

    example = pair()
    cm = convert(_DataMatmul().eval(), example, [pair() for _ in range(4)])
    test = pair()
    ref = _DataMatmul()(*test)
    out = cm(*test, mode=mode)
    for o, r in zip(out, ref, strict=True):
        if mode in ("float", "float-pwl"):
            assert torch.allclose(o, r, atol=1e-4)
        else:
            assert float((o - r).norm() / r.norm()) < 0.05


def test_zoo_gcn_agreement():
    """The zoo's trained 2-layer GCN: node-classification agreement with float >= 99 %."""
    from compiler.zoo import load

    zm = load("gcn")
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    with torch.no_grad():
        ref = zm.model(*zm.eval_inputs)
        out = cm(*zm.eval_inputs, mode="int")
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99
