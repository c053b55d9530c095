"""GroupNorm: LayerNorm over each group's ``C/G * H * W`` values, then a per-channel affine.

The statistics are those of :func:`compiler.frontend.lowering.transformer.layer_norm` (mean by a
ones-column GEMM, centring by a rank-1 update, ``rsqrt`` PWL of the variance as an int16 row
scale) on ``x`` viewed as ``(N, G, C/G*H*W)``; ``gamma`` and ``beta`` are a diagonal GEMM with
bias over the channels. The group means and normalised values are 16-bit with
:data:`GROUP_STATS_HEADROOM` (the centred values and the input are 16-bit under the default
precision policy, as LayerNorm's; the ``rsqrt`` table covers 4x beyond the calibrated variances).
"""

from __future__ import annotations

import torch

from compiler.frontend.lowering.registry import LoweringContext, prod, register
from compiler.frontend.lowering.transformer import layer_norm

#: GroupNorm's group means and normalised values are 16-bit, and its ``rsqrt`` table is fitted,
#: with this headroom over their calibrated range: statistics of a few channels vary between
#: inputs more than four calibration batches show (an int8 group mean with MSE clipping
#: saturated a held-out mean at 78 % of its value; a held-out variance 12 % below the calibrated
#: range followed the first segment's line to a 7 % too small ``1/sigma``; a normalised value past
#: the calibrated maximum saturated).
GROUP_STATS_HEADROOM = 4.0


@register("aten.group_norm.default")
def _group_norm(ctx: LoweringContext, x, num_groups, weight=None, bias=None, eps=1e-5,
                cudnn_enabled=True):
    if not ctx.is_data(x):
        raise ctx.unsupported("group_norm of a constant should have been folded")
    if any(t is not None and ctx.is_data(t) for t in (weight, bias)):
        raise ctx.unsupported("group_norm with a data weight or bias (must be parameters)")
    if x.ndim < 2:
        raise ctx.unsupported(f"group_norm of a {x.ndim}-D tensor")
    n, c = x.shape[:2]
    g = int(num_groups)
    if c % g:
        raise ctx.unsupported(f"{c} channels in {g} groups")
    d = (c // g) * prod(x.shape[2:])
    y = layer_norm(ctx, x.reshape(n, g, d), d, None, None, float(eps),
                   stats_headroom=GROUP_STATS_HEADROOM)
    if weight is None and bias is None:
        return y.reshape(*x.shape)
    w = torch.ones(c) if weight is None else weight.detach().float().reshape(c)
    b = torch.zeros(c) if bias is None else bias.detach().float().reshape(c)
    # channels last, one diagonal GEMM with bias
    dims = [0, *range(2, x.ndim), 1]
    yl = y.reshape(*x.shape).permute(*dims)
    out = ctx.gemm([(yl.as_matrix(), torch.diag(w))], bias=b, hint="gn_affine")
    inv = [dims.index(i) for i in range(x.ndim)]
    return out.reshape(*yl.shape).permute(*inv)
