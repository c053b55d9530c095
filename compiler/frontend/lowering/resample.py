"""Upsampling (nearest, bilinear, bicubic, ...) as one constant GEMM over the spatial positions.

Every ``interpolate`` mode is linear in its input, so ``(N, C, H, W) -> (N, C, Ho, Wo)`` is
``P @ X`` with ``X`` laid out ``(H*W, C)`` (channels as columns) and ``P`` the
``(Ho*Wo, H*W)`` matrix PyTorch's own ``interpolate`` gives for the unit images: nearest modes
make ``P`` one-hot (exact, a replication), the others hold the interpolation weights (exact in
float; int8-quantised like any constant operand in int mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compiler.frontend.lowering.registry import LoweringContext, register
from compiler.graph import TensorRef

#: Largest ``H*W`` (and ``Ho*Wo``) of one upsampling GEMM's constant.
MAX_POSITIONS = 1 << 14


def _interp_matrix(h: int, w: int, size, mode: str, align_corners) -> torch.Tensor:
    basis = torch.eye(h * w).reshape(h * w, 1, h, w)
    kw = {} if mode in ("nearest", "nearest-exact") else {"align_corners": align_corners}
    out = F.interpolate(basis, size=size, mode=mode, **kw)  # (H*W, 1, Ho, Wo)
    return out.reshape(h * w, -1).t().contiguous()


def upsample(ctx: LoweringContext, x: TensorRef, size, mode: str, align_corners=None):
    """``interpolate(x, size, mode)`` for a 4-D data tensor (see the module docstring)."""
    if x.ndim != 4:
        raise ctx.unsupported(f"{mode} upsampling of a {x.ndim}-D tensor; (N, C, H, W) "
                              "supported")
    n, c, h, w = x.shape
    ho, wo = (int(s) for s in size)
    if max(h * w, ho * wo) > MAX_POSITIONS:
        raise ctx.unsupported(f"{h}x{w} -> {ho}x{wo}: more than {MAX_POSITIONS} positions")
    p = _interp_matrix(h, w, (ho, wo), mode, align_corners)
    xc = x.reshape(n, c, h * w).transpose(-1, -2)  # (N, HW, C)
    out = ctx.gemm([(p, xc)], hint="upsample")
    return out.transpose(-1, -2).reshape(n, c, ho, wo)


def _size(x: TensorRef, output_size, scale_factors):
    if output_size is not None:
        return [int(s) for s in output_size]
    return [int(s * f) for s, f in zip(x.shape[2:], scale_factors, strict=True)]


@register("aten.upsample_nearest2d.vec")
def _nearest_vec(ctx, x, output_size, scale_factors):
    return upsample(ctx, x, _size(x, output_size, scale_factors), "nearest")


@register("aten.upsample_nearest2d.default")
def _nearest(ctx, x, output_size, scales_h=None, scales_w=None):
    return upsample(ctx, x, output_size, "nearest")


@register("aten._upsample_nearest_exact2d.vec")
def _nearest_exact_vec(ctx, x, output_size, scale_factors):
    return upsample(ctx, x, _size(x, output_size, scale_factors), "nearest-exact")


@register("aten.upsample_bilinear2d.vec")
def _bilinear_vec(ctx, x, output_size, align_corners, scale_factors):
    return upsample(ctx, x, _size(x, output_size, scale_factors), "bilinear", align_corners)


@register("aten.upsample_bilinear2d.default")
def _bilinear(ctx, x, output_size, align_corners, scales_h=None, scales_w=None):
    return upsample(ctx, x, output_size, "bilinear", align_corners)


@register("aten.upsample_bicubic2d.vec")
def _bicubic_vec(ctx, x, output_size, align_corners, scale_factors):
    return upsample(ctx, x, _size(x, output_size, scale_factors), "bicubic", align_corners)
