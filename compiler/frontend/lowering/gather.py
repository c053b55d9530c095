"""Gathers and scatters with constant indices, as graph networks use them on a fixed graph.

Message passing in PyTorch Geometric (and in plain PyTorch GNNs) is ``x_j = x.index_select(0,
src)`` followed by ``out.scatter_add_(0, dst, messages)`` (or ``index_add_``). With the graph
fixed at conversion time (``edge_index`` a buffer or constant), both are products with constant
one-hot matrices: a gather is ``S @ x`` with ``S[e, src[e]] = 1``, a scatter-add is ``Sᵀ-like @
m`` with ``T[dst[e], e] = 1`` (repeated edges add up). Both are exact. A data-dependent index is
not supported (it would be host pre-processing of an input; see ``docs/compiler.md``).
"""

from __future__ import annotations

import torch

from compiler.frontend.lowering.registry import LoweringContext, register
from compiler.graph import TensorRef


def _rows_first(x: TensorRef, d: int) -> tuple[TensorRef, list[int]]:
    """``x`` with dim ``d`` moved to -2 (rows), flattened to ``(..., rows, cols)``; the perm."""
    perm = [i for i in range(x.ndim) if i != d] + [d]
    xp = x.permute(*perm)  # (..., n)
    return xp, perm


def _select_rows(ctx: LoweringContext, x: TensorRef, d: int, mat: torch.Tensor) -> TensorRef:
    """``y`` with ``y.select(d, i) = sum_j mat[i, j] * x.select(d, j)`` as one GEMM."""
    xp, perm = _rows_first(x, d)
    lead = xp.shape[:-1]
    xm = xp.reshape(-1, xp.shape[-1])  # (rest, n)
    out = ctx.gemm([(xm, mat.t().contiguous())])  # (rest, m)
    inv = [perm.index(i) for i in range(x.ndim)]
    return out.reshape(*lead, mat.shape[0]).permute(*inv)


@register("aten.index_select.default")
def _index_select(ctx: LoweringContext, x, dim, index):
    """``x.index_select(dim, index)`` for a constant ``index``: a one-hot selection GEMM."""
    if not ctx.is_data(x):
        raise ctx.unsupported("index_select of a constant should have been folded")
    if ctx.is_data(index):
        raise ctx.unsupported("index_select with a data-dependent index (the index must be a "
                              "constant, e.g. a fixed graph's edge_index buffer)")
    d = dim % x.ndim
    idx = torch.as_tensor(index).reshape(-1).to(torch.int64)
    n = x.shape[d]
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise ctx.unsupported(f"index out of range for dim {d} of size {n}")
    sel = torch.nn.functional.one_hot(idx % n, n).to(torch.float32)  # (m, n)
    return _select_rows(ctx, x, d, sel)


def _scatter_matrix(ctx: LoweringContext, index: torch.Tensor, d: int, src_shape, out_n: int):
    """``T (out_n, E)`` with ``T[index[e], e] = 1`` for an index constant along every dim but d."""
    idx = torch.as_tensor(index).to(torch.int64)
    if idx.ndim == 1:
        vec = idx
    else:
        if tuple(idx.shape) != tuple(src_shape):
            raise ctx.unsupported(f"scatter index of shape {tuple(idx.shape)} for a source of "
                                  f"shape {tuple(src_shape)}")
        moved = idx.movedim(d, -1).reshape(-1, idx.shape[d])
        if not bool((moved == moved[:1]).all()):
            raise ctx.unsupported("scatter index that differs along the feature dims")
        vec = moved[0]
    if vec.numel() and (int(vec.min()) < 0 or int(vec.max()) >= out_n):
        raise ctx.unsupported(f"scatter index out of range 0..{out_n - 1}")
    return torch.nn.functional.one_hot(vec, out_n).to(torch.float32).t().contiguous()


@register("aten.scatter_add.default", "aten.scatter_add_.default", "aten.index_add.default",
          "aten.index_add_.default")
def _scatter_add(ctx: LoweringContext, base, dim, index, src, alpha=1):
    """``base.scatter_add(dim, index, src)`` / ``base.index_add(dim, index, src)`` for constant
    indices: ``base + T @ src`` with the one-hot scatter matrix ``T`` (exact)."""
    if ctx.is_data(index):
        raise ctx.unsupported("scatter with a data-dependent index (must be a constant)")
    if not ctx.is_data(src):
        raise ctx.unsupported("scatter of a constant source should have been folded")
    shape = base.shape if isinstance(base, TensorRef) else tuple(base.shape)
    d = dim % len(shape)
    t = _scatter_matrix(ctx, index, d, src.shape, shape[d]) * float(alpha)
    out = _select_rows(ctx, src, d, t)
    if ctx.is_data(base):
        return ctx.combine([(base, 1.0), (out, 1.0)])
    if bool((torch.as_tensor(base) == 0).all()):
        return out
    from compiler.frontend.lowering.linear import add_const

    return add_const(ctx, out, base)
