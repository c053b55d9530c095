"""Lowerings that only move data: splitting a tensor into views (``split``, ``chunk``,
``unbind``), ``unflatten``, and constants shaped like a data tensor (``new_zeros``,
``zeros_like``, ``expand_as`` of a constant). None of them emits a GEMM: the results are views
(DMA addressing) of the input, or constants.
"""

from __future__ import annotations

import torch

from compiler.frontend.lowering.registry import LoweringContext, register
from compiler.graph import TensorRef


def _pieces(ctx: LoweringContext, x: TensorRef, dim: int, sizes: list[int]) -> tuple:
    d = dim % x.ndim
    if sum(sizes) != x.shape[d]:
        raise ctx.unsupported(f"split sizes {sizes} do not add up to dim {d} of {x.shape}")
    out, start = [], 0
    for n in sizes:
        out.append(x if (start == 0 and n == x.shape[d]) else x.slice(d, start, start + n))
        start += n
    return tuple(out)


@register("aten.split.Tensor", "aten.split_with_sizes.default", "aten.split.sizes")
def _split(ctx: LoweringContext, x, split_size, dim=0):
    """``torch.split``: slices along ``dim`` (views)."""
    n = x.shape[dim % x.ndim]
    if isinstance(split_size, int):
        sizes = [min(split_size, n - i) for i in range(0, n, split_size)]
    else:
        sizes = [int(s) for s in split_size]
    return _pieces(ctx, x, dim, sizes)


@register("aten.chunk.default")
def _chunk(ctx: LoweringContext, x, chunks, dim=0):
    """``torch.chunk``: ``chunks`` slices of ``ceil(n / chunks)`` along ``dim`` (views)."""
    n = x.shape[dim % x.ndim]
    step = -(-n // int(chunks))
    return _pieces(ctx, x, dim, [min(step, n - i) for i in range(0, n, step)])


@register("aten.unbind.int")
def _unbind(ctx: LoweringContext, x, dim=0):
    """``torch.unbind``: one view per index of ``dim`` (the dim removed)."""
    d = dim % x.ndim
    rest = [*x.shape[:d], *x.shape[d + 1:]]
    return tuple(x.slice(d, i, i + 1).reshape(*rest) for i in range(x.shape[d]))


@register("aten.unflatten.int")
def _unflatten(ctx: LoweringContext, x, dim, sizes):
    """``torch.unflatten``: a reshape of one dim into ``sizes`` (one ``-1`` allowed)."""
    d = dim % x.ndim
    sizes = [int(s) for s in sizes]
    if -1 in sizes:
        known = 1
        for s in sizes:
            if s != -1:
                known *= s
        sizes = [x.shape[d] // known if s == -1 else s for s in sizes]
    return x.reshape(*x.shape[:d], *sizes, *x.shape[d + 1:])


def _shape_only(what: str):
    def lower(ctx: LoweringContext, x, *args, **kwargs):
        # a new tensor that depends only on x's (static) shape: a constant
        with torch.no_grad():
            like = torch.zeros(x.shape) if isinstance(x, TensorRef) else x
            value = getattr(torch.ops.aten, what.split(".")[1]).default(like, *args, **kwargs)
        ctx.fold(f"{what} of a data tensor's shape -> constant {tuple(value.shape)}")
        return value

    lower.__name__ = f"_{what.split('.')[1]}"
    return lower


for _op in ("aten.new_zeros.default", "aten.new_ones.default", "aten.new_full.default",
            "aten.new_empty.default", "aten.zeros_like.default", "aten.ones_like.default",
            "aten.full_like.default"):
    register(_op)(_shape_only(_op))


@register("aten.expand_as.default")
def _expand_as(ctx: LoweringContext, x, other):
    """``x.expand_as(other)`` for a constant ``x`` (``other``'s shape is static)."""
    if ctx.is_data(x):
        raise ctx.unsupported("expand_as of a data tensor (broadcast it in the consuming op)")
    shape = other.shape if isinstance(other, TensorRef) else tuple(other.shape)
    return x.expand(shape)
