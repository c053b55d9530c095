"""ViT-tiny for 1x8x8 digits: 2x2 patches, [CLS] token, learned positions, pre-norm blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from compiler.zoo.data import image_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig

__all__ = ["ViTConfig", "Attention", "MLPBlock", "Block", "ViT", "SPEC"]


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of :class:`ViT`.

    Attributes
    ----------
    patch_size : int
        Side of the square patches (2 or 4; must divide 8).
    dim : int
        Token width.
    depth : int
        Number of transformer blocks.
    heads : int
        Attention heads (must divide ``dim``).
    mlp_ratio : int
        Hidden width of each block's MLP, as a multiple of ``dim``.
    """

    patch_size: int = 2
    dim: int = 48
    depth: int = 2
    heads: int = 3
    mlp_ratio: int = 2


class Attention(nn.Module):
    """Multi-head self-attention with explicit q/k/v Linear layers, matmul, softmax, matmul."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.proj(context.transpose(1, 2).reshape(b, n, d))


class MLPBlock(nn.Module):
    """Linear - GELU (erf) - Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Conv2d patch embedding -> flatten/transpose to tokens -> concat [CLS] -> + positions ->
    pre-norm blocks -> LayerNorm -> Linear head on [CLS].

    Input: float32 (N, 1, 8, 8) in [0, 1]. Output: (N, 10) logits.
    """

    def __init__(self, config: ViTConfig, classes: int = 10, image_size: int = 8):
        super().__init__()
        if config.patch_size not in (2, 4):
            raise ValueError(f"ViTConfig.patch_size must be 2 or 4, got {config.patch_size!r}")
        if config.depth < 1 or config.mlp_ratio < 1:
            raise ValueError(f"ViTConfig depth and mlp_ratio must be >= 1, got {config!r}")
        tokens = (image_size // config.patch_size) ** 2
        d = config.dim
        self.patch_embed = nn.Conv2d(1, d, config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, d))
        self.blocks = nn.Sequential(
            *(Block(d, config.heads, config.mlp_ratio * d) for _ in range(config.depth))
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def _describe(config: ViTConfig) -> str:
    return (
        f"ViT-tiny ({config.patch_size}x{config.patch_size} patches, dim {config.dim}, "
        f"{config.depth} pre-norm blocks, {config.heads} heads) on 1x8x8; digit classification; "
        "sklearn load_digits, stratified 1347 train / 450 test (seed 0)"
    )


SPEC = ZooSpec(
    name="vit",
    config=ViTConfig(),
    training=TrainingConfig(epochs=40, batch_size=32, lr=3e-3, weight_decay=5e-2),
    build=ViT,
    data=lambda config: image_data(),
    task="classification",
    describe=_describe,
)
