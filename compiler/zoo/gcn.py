"""Two-layer GCN (Kipf & Welling) for semi-supervised node classification on a digits kNN graph.

The graph: every digits image is a node with its 64 pixels (scaled to [0, 1]) as features; each
node links to its 10 nearest neighbours (Euclidean), symmetrised. The propagation matrix
Â = D^-1/2 (A + I) D^-1/2 is precomputed and held as a dense buffer (the graph is fixed), so the
forward is H1 = relu(Â·X·W1), logits = Â·H1·W2, with ``(features,)`` as the only input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compiler.zoo.data import GCN_NEIGHBOURS, gcn_graph, graph_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig, train_node_classifier

__all__ = ["GCNConfig", "GraphConvolution", "GCN", "SPEC"]


@dataclass(frozen=True)
class GCNConfig:
    """Architecture of :class:`GCN`.

    Attributes
    ----------
    hidden : int
        Width of the hidden layer.
    dropout : float
        Dropout on the inputs of both layers during training.
    neighbours : int
        k of the kNN graph.
    """

    hidden: int = 32
    dropout: float = 0.5
    neighbours: int = GCN_NEIGHBOURS


class GraphConvolution(nn.Module):
    """One GCN layer: Â · (H · W) + b, with Â passed in."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, a_norm: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a_norm, self.linear(h))


class GCN(nn.Module):
    """dropout -> GraphConvolution -> ReLU -> dropout -> GraphConvolution.

    Input: float32 node features (1797, 64). Output: (1797, 10) logits. The normalised adjacency
    is the non-persistent buffer ``a_norm`` (rebuilt from the data, not stored in checkpoints).
    """

    def __init__(self, config: GCNConfig, in_features: int = 64, classes: int = 10):
        super().__init__()
        if config.hidden < 1 or not 0.0 <= config.dropout < 1.0 or config.neighbours < 1:
            raise ValueError(f"invalid GCNConfig {config!r}")
        _, a_norm = gcn_graph(config.neighbours)
        self.register_buffer("a_norm", a_norm, persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.conv1 = GraphConvolution(in_features, config.hidden)
        self.relu = nn.ReLU()
        self.conv2 = GraphConvolution(config.hidden, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(self.a_norm, self.dropout(features)))
        return self.conv2(self.a_norm, self.dropout(h))


def _describe(config: GCNConfig) -> str:
    return (
        f"2-layer GCN (hidden {config.hidden}, dense Â buffer); node classification on a "
        f"symmetric {config.neighbours}-NN graph of all 1797 sklearn load_digits images; 20 "
        "labelled nodes per class train (seed 0), the other 1597 nodes test"
    )


SPEC = ZooSpec(
    name="gcn",
    config=GCNConfig(),
    training=TrainingConfig(epochs=200, lr=1e-2, weight_decay=5e-4),
    build=GCN,
    data=lambda config: graph_data(config.neighbours),
    task="node-classification",
    describe=_describe,
    trainer=train_node_classifier,
)
