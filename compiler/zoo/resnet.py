"""ResNet-style CNN for 1x8x8 digits: BN stem, max pool, three basic blocks, global average pool."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compiler.zoo.data import image_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig

__all__ = ["ResNetConfig", "BasicBlock", "ResNet", "SPEC"]


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture of :class:`ResNet`.

    Attributes
    ----------
    width : int
        Channels of the stem and the first block; the stride-2 block doubles them.
    """

    width: int = 16


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    With ``stride`` 2 or a change of width the shortcut is ResNet-D's projection:
    AvgPool2d(2) then a 1x1 conv and BN; otherwise it is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"BasicBlock stride must be 1 or 2, got {stride!r}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride != 1 else nn.Identity(),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem (conv3x3-BN-ReLU, 8x8) -> block (8x8) -> MaxPool2d(2) (4x4) -> stride-2 block with
    projection (2x2, double width) -> block -> AdaptiveAvgPool2d(1) -> flatten -> Linear.

    Input: float32 (N, 1, 8, 8) in [0, 1]. Output: (N, 10) logits.
    """

    def __init__(self, config: ResNetConfig, classes: int = 10):
        super().__init__()
        w = config.width
        if w < 1:
            raise ValueError(f"ResNetConfig.width must be positive, got {w!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        self.layer1 = BasicBlock(w, w)
        self.pool = nn.MaxPool2d(2)
        self.layer2 = BasicBlock(w, 2 * w, stride=2)
        self.layer3 = BasicBlock(2 * w, 2 * w)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.stem(x))
        x = self.layer3(self.layer2(self.pool(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _describe(config: ResNetConfig) -> str:
    return (
        f"ResNet-style CNN (width {config.width}, 3 basic blocks, max/avg/adaptive pooling) on "
        "1x8x8; digit classification; sklearn load_digits, stratified 1347 train / 450 test "
        "(seed 0)"
    )


SPEC = ZooSpec(
    name="resnet",
    config=ResNetConfig(),
    training=TrainingConfig(epochs=30, batch_size=32, lr=3e-3, weight_decay=5e-4),
    build=ResNet,
    data=lambda config: image_data(),
    task="classification",
    describe=_describe,
)
