"""Capture-time rewrites: HF ``gelu_new`` -> ``aten.gelu(approximate="tanh")``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compiler import convert
from compiler.frontend.capture import capture, rewrite_gelu_tanh
from compiler.graph import UnsupportedOpError
from compiler.zoo.bert import NewGELUActivation


def _targets(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


class Dense(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 8)
        self.act = act

    def forward(self, x):
        return self.act(self.fc(x))


class SwappedGeluNew(nn.Module):
    """The same formula with every product/sum written in the other operand order."""

    def forward(self, x):
        inner = (torch.pow(x, 3) * 0.044715 + x) * math.sqrt(2.0 / math.pi)
        return x * (torch.tanh(inner) + 1.0) * 0.5


class Cube(nn.Module):
    def forward(self, x):
        return torch.pow(x, 3.0)


class AlmostGeluNew(nn.Module):
    """gelu_new with a different cubic coefficient: not GELU, must not be rewritten."""

    def forward(self, x):
        inner = math.sqrt(2.0 / math.pi) * (x + 0.05 * torch.pow(x, 3.0))
        return 0.5 * x * (1.0 + torch.tanh(inner))


class SharedIntermediate(nn.Module):
    """gelu_new whose tanh is also an output: the pattern is not self-contained."""

    def forward(self, x):
        t = torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))
        return 0.5 * x * (1.0 + t), t


@pytest.mark.parametrize("act", [NewGELUActivation(), SwappedGeluNew()])
def test_gelu_new_becomes_one_gelu_tanh(act):
    m = Dense(act).eval()
    x = torch.randn(4, 6)
    cap = capture(m, (x,))
    ops = _targets(cap.graph_module)
    assert ops == ["aten.linear.default", "aten.gelu.default"]
    gelu = next(n for n in cap.graph_module.graph.nodes if str(n.target) == "aten.gelu.default")
    assert gelu.kwargs == {"approximate": "tanh"}
    assert len(cap.rewrites) == 1 and "act" in cap.rewrites[0]
    # The rewritten graph computes the same function as the formula.
    consts = [cap.constants[n.name] for n in cap.graph_module.graph.nodes
              if n.op == "placeholder" and n.name in cap.constants]
    xs = torch.randn(64, 6) * 4
    got = cap.graph_module(*consts, xs)[0]
    torch.testing.assert_close(got, m(xs), atol=1e-5, rtol=1e-5)


def test_gelu_new_converts_as_gelu_tanh_pwl():
    m = Dense(NewGELUActivation()).eval()
    gen = torch.Generator().manual_seed(1)
    cal = [(torch.randn(8, 6, generator=gen) * 2,) for _ in range(4)]
    cm = convert(m, (cal[0][0],), cal)
    assert [n.epilogue.function for n in cm.graph.nodes] == ["gelu_tanh"]
    x = torch.randn(8, 6, generator=gen)
    with torch.no_grad():
        ref = m(x)
        pwl = cm(x, mode="float-pwl")
    assert float((pwl - ref).abs().max()) < 2e-2


def test_unmatched_pow_still_unsupported():
    with pytest.raises(UnsupportedOpError, match="aten.pow.Tensor_Scalar"):
        convert(Cube().eval(), (torch.randn(2, 3),), [(torch.randn(2, 3),)])


def test_near_miss_is_not_rewritten():
    cap = capture(Dense(AlmostGeluNew()).eval(), (torch.randn(2, 6),))
    assert cap.rewrites == [] and "aten.pow.Tensor_Scalar" in _targets(cap.graph_module)
    with pytest.raises(UnsupportedOpError, match="pow"):
        convert(Dense(AlmostGeluNew()).eval(), (torch.randn(2, 6),), [(torch.randn(2, 6),)])


def test_pattern_with_outside_users_is_not_rewritten():
    cap = capture(SharedIntermediate().eval(), (torch.randn(2, 6),))
    assert cap.rewrites == []
    assert rewrite_gelu_tanh(cap.graph_module) == []
    assert "aten.pow.Tensor_Scalar" in _targets(cap.graph_module)


@pytest.mark.slow
def test_zoo_bert_gelu_new_converts():
    from compiler.zoo import load

    zm = load("bert", hidden_act="gelu_new")
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    fns = [n.epilogue.function for n in cm.graph.nodes]
    assert fns.count("gelu_tanh") == zm.config.num_hidden_layers
    with torch.no_grad():
        ref = zm.model(*zm.eval_inputs)
        got = cm(*zm.eval_inputs, mode="int")
    agree = float((ref.argmax(-1) == got.argmax(-1)).float().mean())
    assert agree >= 0.995  # the transformer target (issue #4)
