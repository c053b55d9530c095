"""MLP on flattened digits: 64 -> 128 -> 64 -> 10."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compiler.zoo.data import flat_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig

__all__ = ["MLPConfig", "MLP", "SPEC"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of :class:`MLP`.

    Attributes
    ----------
    hidden : tuple of int
        Widths of the hidden layers.
    activation : str
        ``"relu"`` or ``"gelu"`` (erf form), used after every hidden layer.
    """

    hidden: tuple[int, ...] = (128, 64)
    activation: str = "relu"


class MLP(nn.Module):
    """Fully connected classifier: Linear + activation per hidden layer, then a Linear head.

    Input: float32 (N, 64) pixels in [0, 1]. Output: (N, 10) logits.
    """

    def __init__(self, config: MLPConfig, in_features: int = 64, classes: int = 10):
        super().__init__()
        if config.activation not in _ACTIVATIONS:
            raise ValueError(
                f"MLPConfig.activation {config.activation!r} is not one of {sorted(_ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.activation]()]
            width = hidden
        layers.append(nn.Linear(width, classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def _describe(config: MLPConfig) -> str:
    widths = " -> ".join(str(w) for w in (64, *config.hidden, 10))
    return (
        f"MLP {widths} ({config.activation}); digit classification; sklearn load_digits, "
        "stratified 1347 train / 450 test (seed 0)"
    )


SPEC = ZooSpec(
    name="mlp",
    config=MLPConfig(),
    training=TrainingConfig(
        epochs=40, batch_size=32, lr=3e-3, weight_decay=1e-4, label_smoothing=0.1
    ),
    build=MLP,
    data=lambda config: flat_data(),
    task="classification",
    describe=_describe,
)
