"""MobileNetV2/V3-style CNN for 1x8x8 digits: inverted residuals with depthwise convolutions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compiler.zoo.data import image_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig

__all__ = ["MobileNetConfig", "SqueezeExcite", "InvertedResidual", "MobileNet", "SPEC"]

_ACTIVATIONS = {"relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU}


@dataclass(frozen=True)
class MobileNetConfig:
    """Architecture of :class:`MobileNet`.

    Attributes
    ----------
    squeeze_excite : bool
        Put a MobileNetV3 squeeze-excite block (ReLU, Hardsigmoid, channel-wise multiply) in the
        second inverted residual.
    """

    squeeze_excite: bool = True


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite: x * hardsigmoid(fc2(relu(fc1(avgpool(x))))), 1x1 convs as fc."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """Expand (1x1 conv-BN-act) -> depthwise 3x3 (groups=channels) conv-BN-act -> optional SE ->
    project (1x1 conv-BN, linear); residual add when stride is 1 and widths match."""

    def __init__(
        self,
        in_channels: int,
        expanded: int,
        out_channels: int,
        stride: int,
        activation: str,
        squeeze_excite: bool,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(_ACTIVATIONS)}")
        act = _ACTIVATIONS[activation]
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), act()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(expanded, expanded, 3, stride, padding=1, groups=expanded, bias=False),
            nn.BatchNorm2d(expanded),
            act(),
        )
        self.se = SqueezeExcite(expanded, max(8, expanded // 4)) if squeeze_excite else None
        self.project = nn.Sequential(
            nn.Conv2d(expanded, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise(self.expand(x))
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return x + out if self.use_residual else out


class MobileNet(nn.Module):
    """Stem conv3x3-BN-Hardswish (16 ch, 8x8) -> inverted residuals:
    16->64->16 SiLU (residual), 16->64->24 stride 2 Hardswish (+SE), 24->72->24 ReLU6 (residual)
    -> 1x1 conv-BN-Hardswish to 64 -> AdaptiveAvgPool2d(1) -> flatten -> Linear.

    Input: float32 (N, 1, 8, 8) in [0, 1]. Output: (N, 10) logits.
    """

    def __init__(self, config: MobileNetConfig, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.blocks = nn.Sequential(
            InvertedResidual(16, 64, 16, 1, "silu", squeeze_excite=False),
            InvertedResidual(16, 64, 24, 2, "hardswish", squeeze_excite=config.squeeze_excite),
            InvertedResidual(24, 72, 24, 1, "relu6", squeeze_excite=False),
        )
        self.head = nn.Sequential(
            nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish()
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def _describe(config: MobileNetConfig) -> str:
    se = "with" if config.squeeze_excite else "without"
    return (
        f"MobileNetV2/V3-style CNN (3 inverted residuals, depthwise 3x3, SiLU/Hardswish/ReLU6, "
        f"{se} squeeze-excite) on 1x8x8; digit classification; sklearn load_digits, stratified "
        "1347 train / 450 test (seed 0)"
    )


SPEC = ZooSpec(
    name="mobilenet",
    config=MobileNetConfig(),
    training=TrainingConfig(epochs=30, batch_size=32, lr=3e-3, weight_decay=5e-4),
    build=MobileNet,
    data=lambda config: image_data(),
    task="classification",
    describe=_describe,
)
