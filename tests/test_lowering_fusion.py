"""The lowering's fusion pass and constant-folding record
(compiler/frontend/lowering/__init__.py)."""

from __future__ import annotations

import torch

from compiler.frontend.capture import capture
from compiler.frontend.lowering import fuse_pointwise, lower
from compiler.graph import Epilogue, GemmNode, GraphInput, MatrixGraph, TensorRef, Term


def _graph(scale_like_target: str | None) -> MatrixGraph:
    """x -> X (identity) -> P = tanh(2 x) -> output; Y reads x and is quantised like
    ``scale_like_target``."""
    g = MatrixGraph()
    g.inputs.append(GraphInput("x", 0, (4, 3), torch.float32))
    g.constants["w"] = torch.randn(3, 3)
    g.constants["two_i"] = 2 * torch.eye(3)
    x = TensorRef("x", (4, 3))
    g.nodes.append(GemmNode("X", [Term(x, TensorRef("w", (3, 3)))], None, Epilogue(), (4, 3)))
    g.nodes.append(GemmNode("P", [Term(TensorRef("X", (4, 3)), TensorRef("two_i", (3, 3)))],
                            None, Epilogue(function="tanh"), (4, 3)))
    g.nodes.append(GemmNode("Y", [Term(x, TensorRef("w", (3, 3)))], None,
                            Epilogue(scale_like=scale_like_target), (4, 3)))
    g.outputs = [TensorRef("P", (4, 3)), TensorRef("Y", (4, 3))]
    return g


def test_fusion_renames_scale_like_of_the_folded_node():
    g = _graph("P")
    assert fuse_pointwise(g) == 1
    assert [n.name for n in g.nodes] == ["X", "Y"]
    assert g.node("X").epilogue.function == "tanh"
    assert g.node("Y").epilogue.scale_like == "X"  # P's values now live in X
    g.check()


def test_fusion_never_folds_into_a_scale_like_target():
    g = _graph("X")
    assert fuse_pointwise(g) == 0
    assert [n.name for n in g.nodes] == ["X", "P", "Y"]
    assert g.node("X").epilogue.function is None
    assert g.node("Y").epilogue.scale_like == "X"


class _ConstThenData(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(5, 5))

    def forward(self, x):
        return x @ (self.w * 2.0).t()


def test_constant_folding_is_recorded():
    m = _ConstThenData().eval()
    g = lower(capture(m, (torch.randn(3, 5),)))
    assert any("on constants" in f for f in g.folded), g.folded
