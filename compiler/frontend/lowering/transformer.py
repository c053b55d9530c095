"""Lowerings of the transformer op set: LayerNorm, softmax (with key-padding masks), attention,
``scaled_dot_product_attention``, GELU, embeddings, and the host pre-processing of masks and ids.

Every op becomes GEMM nodes with epilogues (see ``docs/transformers.md`` for the formulas, the
precision choices and the measured errors):

- **LayerNorm** over the last dim ``d``: ``mu = x @ (1/d)`` (ones column), ``xc = x @ I - mu @ 1ᵀ``
  (rank-1 accumulate), ``r = rsqrt((xc·xc + eps d) / d)`` as a batched data x data GEMM per row
  with an ``rsqrt`` PWL epilogue written as an int16 row-scale vector, ``n = (xc @ I) * r`` (row
  scale), ``y = n @ diag(gamma) + beta``.
- **softmax** over the last dim: the row maximum by a pairwise tree ``max(a, b) = b + relu(a - b)``
  on ``u = x / 2`` (half range, so the differences fit int8 exactly), ``e = exp(x - 2 max(u))``
  (``exp`` PWL on the wide accumulator), ``r = 1 / (e @ 1)`` (``reciprocal`` PWL, int16 row
  scale), ``p = (e @ I) * r``.
- **key-padding masks** (``scores + (1 - mask) * min`` feeding softmax, or the ``attn_mask`` of
  SDPA): no large additive constant is ever quantised. Host pre-processing turns the mask into a
  0/1 ``keep`` vector, a selection matrix ``Sel`` that replaces every masked key by the first
  valid key (so the row maximum is that of the valid keys, with every value in its normal range),
  and ``diag(keep)`` that zeroes the masked probabilities exactly (``sum = e @ keep``).
- **attention** ``softmax(q kᵀ * scale + mask) v``: data x data GEMMs per head (the head split and
  ``kᵀ`` are views); masked keys are selected in ``kᵀ`` before the product, and the ``1/sum`` row
  scale is applied in the ``P·V`` epilogue (SDPA, and eager ``softmax`` followed by ``matmul``:
  ``aten.add`` and ``aten.matmul`` of :mod:`compiler.frontend.lowering.linear` are specialised for
  this).
- **GELU** (erf and tanh forms) and the **tanh** pooler are PWL epilogues.
- **embeddings** are one-hot GEMMs: the host turns ids into one-hot rows, the table is a constant
  operand (exact: one 1 per row). Position / token-type ids that depend only on the input shape
  are constants and fold at conversion time.
"""

from __future__ import annotations

import math

import torch

from compiler.frontend.lowering.linear import max2, specialise
from compiler.frontend.lowering.registry import (
    LoweringContext,
    prod,
    register,
    register_host,
)
from compiler.graph import ConvertError, Permute, Reshape, TensorRef, Term

__all__ = [
    "MASKED_AT_OR_BELOW",
    "KeyMask",
    "MaskError",
    "attention_output",
    "attention_probs",
    "key_mask",
    "layer_norm",
    "masked_scores",
    "row_max",
    "softmax_last",
    "stable_copy",
]

#: Additive mask values at or below this are "masked" (HF uses finfo.min or -10000).
MASKED_AT_OR_BELOW = -1.0e3

# Shape/mask/id computations that may run as host pre-processing when all their tensor
# arguments are host values (the attention mask, input ids).
register_host(
    "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.view.default",
    "aten.reshape.default", "aten.expand.default", "aten.permute.default",
    "aten.transpose.int", "aten.slice.Tensor", "aten.select.int", "aten.clone.default",
    "aten.contiguous.default", "aten._to_copy.default", "aten.to.dtype", "aten.type_as.default",
    "aten.rsub.Scalar", "aten.sub.Tensor", "aten.sub.Scalar", "aten.add.Tensor",
    "aten.add.Scalar", "aten.mul.Tensor", "aten.mul.Scalar", "aten.masked_fill.Scalar",
    "aten.masked_fill.Tensor", "aten.where.self", "aten.where.ScalarSelf",
    "aten.where.ScalarOther", "aten.eq.Scalar", "aten.ne.Scalar", "aten.lt.Scalar",
    "aten.le.Scalar", "aten.gt.Scalar", "aten.ge.Scalar", "aten.logical_not.default",
    "aten.bitwise_not.default", "aten.zeros_like.default", "aten.ones_like.default",
    "aten.full_like.default", "aten.cumsum.default", "aten.ne.Tensor", "aten.eq.Tensor",
    # the mask utilities of transformers 4.x/5.x (masking_utils: bool masks built by indexing
    # the padding mask with arange grids and combining them with & / |)
    "aten.to.device", "aten.to.dtype_layout", "aten.to.other", "aten.index.Tensor",
    "aten.__and__.Tensor", "aten.__or__.Tensor", "aten.bitwise_and.Tensor",
    "aten.bitwise_or.Tensor", "aten.logical_and.default", "aten.logical_or.default",
    "aten.new_ones.default", "aten.new_zeros.default", "aten.new_full.default",
    "aten.gather.default", "aten.index_select.default", "aten.all.dim", "aten.any.dim",
    "aten.ge.Tensor", "aten.gt.Tensor", "aten.le.Tensor", "aten.lt.Tensor",
    "aten.unflatten.int", "aten.flatten.using_ints", "aten.squeeze.default",
    "aten.expand_as.default", "aten.div.Scalar", "aten.div.Tensor", "aten.neg.default",
    "aten.abs.default", "aten.min.other", "aten.max.other", "aten.clamp.default",
    "aten.repeat.default", "aten.cat.default", "aten.stack.default", "aten.sum.dim_IntList",
)


class MaskError(ConvertError):
    """An attention mask the conversion cannot express (not a key-padding mask)."""


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _as_2d(x: TensorRef) -> TensorRef:
    return x.reshape(1, -1) if x.ndim == 1 else x


def _is_host_value(ctx: LoweringContext, x: TensorRef) -> bool:
    """Whether ``x`` is host data: a host pre-processing result or a non-float graph input."""
    kind = ctx.graph.kind_of(x.source)
    if kind == "host":
        return True
    if kind == "input":
        dt = getattr(ctx, "dtypes", {}).get(x.source, torch.float32)
        return not dt.is_floating_point
    return False


def _is_pointwise_of_node(ctx: LoweringContext, x: TensorRef):
    """``(N, X, c)`` if ``x`` is a node ``N = X @ (c I)`` that the fusion pass folds into ``X``."""
    g = ctx.graph
    if g.kind_of(x.source) != "node":
        return None
    n = g.node(x.source)
    if len(n.terms) != 1 or n.bias is not None or n.epilogue.row_scale is not None:
        return None
    if n.epilogue.function is not None or n.epilogue.scale_like is not None:
        return None
    t = n.terms[0]
    if not g.is_const(t.b) or g.is_const(t.a) or g.kind_of(t.a.source) != "node":
        return None
    if not all(isinstance(v, (Reshape, Permute)) for v in t.a.views):
        return None
    b = g.const_value(t.b)
    if b.ndim != 2 or b.shape[0] != b.shape[1]:
        return None
    if not torch.equal(b, torch.eye(b.shape[0]) * b[0, 0]):
        return None
    x_node = g.node(t.a.source)
    ex = x_node.epilogue
    if ex.function is not None or ex.row_scale is not None or ex.scale_like is not None:
        return None
    if ex.out_bits != 8:
        return None
    return n, x_node, float(b[0, 0])


def stable_copy(ctx: LoweringContext, x: TensorRef) -> TensorRef:
    """``x`` as the output of a node whose name the fusion pass never changes.

    ``scale_like`` names a tensor, and the driver's fusion pass renames a folded element-wise
    node to its producer. Softmax quantises its steps ``scale_like`` its input, so the input must
    keep its name: when ``x`` is a pending element-wise scaling of another node (the
    ``/ sqrt(d)`` after ``q @ kᵀ``), the producer is re-emitted with the scale folded in (no extra
    pass; the originals become dead); otherwise ``x`` is copied through an identity GEMM whose zero
    bias marks it as not foldable.
    """
    g = ctx.graph
    p = _is_pointwise_of_node(ctx, x)
    if p is not None:
        n, x_node, c = p
        cs = x_node.epilogue.col_scale
        col = c if cs is None else cs * c
        bias = None if x_node.bias is None else g.constants[x_node.bias]
        terms = [Term(t.a, t.b, t.clamp) for t in x_node.terms]
        pinned = any(g.is_const(t.b) and not g.is_const(t.a) for t in terms) and bias is None
        out = ctx.gemm(terms, bias=torch.zeros(x_node.shape[-1]) if pinned else bias,
                       col_scale=col, hint="scores")
        views = (*n.terms[0].a.views, *x.views)
        return TensorRef(out.source, out.shape, views)
    xm = _as_2d(x)
    out = ctx.gemm([(xm, torch.eye(xm.shape[-1]))], bias=torch.zeros(xm.shape[-1]), hint="copy")
    return out.reshape(*x.shape) if out.shape != x.shape else out


# ---------------------------------------------------------------------------------------------
# masks (host pre-processing)
# ---------------------------------------------------------------------------------------------


def _keep_from_additive(mask: torch.Tensor) -> torch.Tensor:
    """0/1 keep of an additive mask (0 = attend, <= MASKED_AT_OR_BELOW = masked), per key."""
    if mask.dtype == torch.bool:
        keep = mask.float()
    else:
        m = mask.float()
        masked = m <= MASKED_AT_OR_BELOW
        if bool(((m != 0) & ~masked).any()):
            bad = m[(m != 0) & ~masked].reshape(-1)[0].item()
            raise MaskError(
                f"additive attention mask value {bad:g}: only key-padding masks are supported "
                f"(0 = attend, <= {MASKED_AT_OR_BELOW:g} = masked); general attention biases "
                "are not"
            )
        keep = (~masked).float()
    if keep.ndim >= 2 and keep.shape[-2] > 1:
        if not bool((keep == keep[..., :1, :]).all()):
            raise MaskError(
                "attention mask differs between query rows (e.g. causal); only key-padding "
                "masks (the same for every query) are supported"
            )
        keep = keep[..., :1, :]
    return keep


def _selection(keep: torch.Tensor) -> torch.Tensor:
    """``Sel`` (..., Tk, Tk): column j is e_j for a kept key, e_{first kept} for a masked one."""
    k = keep[..., 0, :] if keep.ndim >= 2 else keep
    tk = k.shape[-1]
    first = torch.argmax((k > 0).to(torch.int64), dim=-1, keepdim=True)  # 0 if none kept
    src = torch.where(k > 0, torch.arange(tk).expand_as(k), first.expand_as(k))
    sel = torch.nn.functional.one_hot(src, tk).to(torch.float32)  # (..., j, src)
    return sel.transpose(-1, -2).contiguous()


def _diag(keep: torch.Tensor) -> torch.Tensor:
    k = keep[..., 0, :] if keep.ndim >= 2 else keep
    return torch.diag_embed(k.to(torch.float32))


class KeyMask:
    """Host tensors derived from a key-padding mask of per-sample shape ``(..., 1 or Tq, Tk)``.

    Attributes
    ----------
    keep : TensorRef
        ``(..., 1, Tk)`` 0/1 floats.
    sel : TensorRef
        ``(..., Tk, Tk)`` selection matrix (masked keys replaced by the first valid key).
    diag : TensorRef
        ``(..., Tk, Tk)`` ``diag(keep)``.
    """

    def __init__(self, ctx: LoweringContext, mask: TensorRef, what: str) -> None:
        shape = tuple(mask.shape)
        if len(shape) < 1:
            raise ctx.unsupported(f"{what}: a 0-D attention mask")
        lead = shape[:-2] if len(shape) >= 2 else ()
        tk = shape[-1]
        self.tk = tk
        self.keep = ctx.host(_keep_from_additive, (mask,), shape=(*lead, 1, tk),
                             dtype=torch.float32,
                             description=f"{what}: key-padding mask -> 0/1 keep vector")
        self.sel = ctx.host(_selection, (self.keep,), shape=(*lead, tk, tk), dtype=torch.float32,
                            description=f"{what}: masked keys -> first valid key (selection "
                                        "matrix)")
        self.diag = ctx.host(_diag, (self.keep,), shape=(*lead, tk, tk), dtype=torch.float32,
                             description=f"{what}: diag(keep) that zeroes masked probabilities")

    def keep_col(self) -> TensorRef:
        """``keep`` as a ``(..., Tk, 1)`` column (the masked row sum's right operand)."""
        return self.keep.transpose(-1, -2)


def key_mask(ctx: LoweringContext, mask: TensorRef) -> KeyMask:
    """The :class:`KeyMask` of host tensor ``mask`` (built once per mask, shared by all layers)."""
    cache = getattr(ctx, "_nmx_mask_cache", None)
    if cache is None:
        cache = {}
        ctx._nmx_mask_cache = cache
    key = (mask.source, mask.views)
    if key not in cache:
        cache[key] = KeyMask(ctx, mask, ctx.module or "<top>")
    return cache[key]


def _key_masks(ctx: LoweringContext) -> dict[str, KeyMask]:
    table = getattr(ctx, "_nmx_key_masks", None)
    if table is None:
        table = {}
        ctx._nmx_key_masks = table
    return table


# ---------------------------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------------------------


def row_max(ctx: LoweringContext, u: TensorRef, like: str) -> TensorRef:
    """Maximum over the last dim (kept as size 1) by a pairwise ``b + relu(a - b)`` tree.

    Each level compares the first and the last ``ceil(n / 2)`` elements (they overlap by one
    when ``n`` is odd), so no padding value ever enters the comparison: a padded "lowest" value
    would make ``a - b`` overflow int8 for any ``a >= 0``. Every step is quantised
    ``scale_like`` ``like``, a tensor of at least twice ``u``'s range (so that ``a - b`` needs no
    coarser scale and the tree is exact in integers).
    """
    c = u
    while c.shape[-1] > 1:
        n = c.shape[-1]
        h = (n + 1) // 2
        a = c.slice(-1, 0, h)
        b = c.slice(-1, n - h, n)
        c = max2(ctx, a, b, like)
    return c


def attention_probs(ctx: LoweringContext, s: TensorRef, mask: KeyMask | None):
    """Unnormalised probabilities and their int16 row scale for ``softmax(s)`` over the last dim.

    ``s`` must be a node output whose name is stable (see :func:`stable_copy`); with ``mask``
    its masked columns must already hold copies of a valid column (``s @ Sel``).

    Returns
    -------
    e : TensorRef
        ``exp(s - max)`` (masked columns still present; multiply by ``mask.diag``).
    r : TensorRef
        ``1 / sum_j keep_j e_j``, shape ``(..., Tq, 1)``, int16 (row scale).
    """
    tk = s.shape[-1]
    like = s.source
    # (the zero bias keeps the fusion pass from folding u into s, which would rename s)
    u = ctx.gemm([(s, 0.5 * torch.eye(tk))], bias=torch.zeros(tk), scale_like=like,
                 hint="sm_half")
    m_half = row_max(ctx, u, like)
    m = ctx.gemm([(m_half, torch.full((1, 1), 2.0))], scale_like=like, hint="sm_max")
    e = ctx.gemm([(s, torch.eye(tk)), (m, -torch.ones(1, tk))], function="exp", hint="sm_exp")
    col = mask.keep_col() if mask is not None else torch.ones(tk, 1)
    r = ctx.gemm([(e, col)], function="reciprocal", out_bits=16, hint="sm_rsum")
    return e, r


def softmax_last(ctx: LoweringContext, s: TensorRef, mask: KeyMask | None) -> TensorRef:
    """``softmax(s, -1)`` (masked keys get probability 0): see :func:`attention_probs`.

    The result is also recorded so that a following ``probs @ v`` applies the ``1/sum`` row
    scale in its own epilogue (as SDPA does) instead of reading int8 probabilities.
    """
    e, r = attention_probs(ctx, s, mask)
    b = mask.diag if mask is not None else torch.eye(s.shape[-1])
    p = ctx.gemm([(e, b)], row_scale=r, hint="softmax")
    _pending_probs(ctx)[p.source] = (e, r, mask)
    return p


def _pending_probs(ctx: LoweringContext) -> dict:
    table = getattr(ctx, "_nmx_probs", None)
    if table is None:
        table = {}
        ctx._nmx_probs = table
    return table


def attention_output(ctx: LoweringContext, e: TensorRef, r: TensorRef, mask: KeyMask | None,
                     v: TensorRef) -> TensorRef:
    """``softmax @ v`` from unnormalised ``e`` and its row scale ``r``: ``(e @ v') * r`` with
    ``v' = diag(keep) @ v`` under a mask (masked keys contribute exactly nothing)."""
    vv = v
    if mask is not None:
        vv = ctx.gemm([(mask.diag, v)], hint="value_kept")
    return ctx.gemm([(e, vv)], row_scale=r, hint="attention")


@register("aten.softmax.int", "aten._softmax.default", "aten._safe_softmax.default")
def _softmax(ctx: LoweringContext, x, dim, *args, **kwargs):
    if not ctx.is_data(x):
        raise ctx.unsupported("softmax of a constant should have been folded")
    d = dim % x.ndim
    if d != x.ndim - 1:
        perm = [i for i in range(x.ndim) if i != d] + [d]
        inv = [perm.index(i) for i in range(x.ndim)]
        y = _softmax_any(ctx, x.permute(*perm))
        return y.permute(*inv)
    return _softmax_any(ctx, x)


def _softmax_any(ctx: LoweringContext, x: TensorRef) -> TensorRef:
    masks = _key_masks(ctx)
    if not x.views and x.source in masks:
        return softmax_last(ctx, x, masks[x.source])
    shape = x.shape
    s = stable_copy(ctx, _as_2d(x))
    y = softmax_last(ctx, s, None)
    return y.reshape(*shape) if y.shape != shape else y


# ---------------------------------------------------------------------------------------------
# additive attention masks: scores + mask feeding softmax
# ---------------------------------------------------------------------------------------------

_SOFTMAX_OPS = ("aten.softmax.int", "aten._softmax.default", "aten._safe_softmax.default")


def _feeds_last_dim_softmax(node) -> bool:
    if node is None or not node.users:
        return False
    for u in node.users:
        if str(u.target) not in _SOFTMAX_OPS:
            return False
        dim = u.args[1] if len(u.args) > 1 else u.kwargs.get("dim")
        nd = len(node.meta["val"].shape) if "val" in node.meta else None
        if nd is None or dim % nd != nd - 1:
            return False
    return True


def masked_scores(ctx: LoweringContext, scores: TensorRef, mask: TensorRef) -> TensorRef:
    """``scores + mask`` for a host key-padding mask, as consumed by softmax.

    Returns ``scores @ Sel`` (masked keys replaced by the first valid key) and registers the mask
    so that the softmax of this tensor zeroes the masked probabilities. The result is *not* the
    literal sum, so only a last-dim softmax may consume it (checked).
    """
    if not _feeds_last_dim_softmax(ctx.node):
        raise ctx.unsupported(
            "an attention mask added to scores that do not feed a last-dim softmax directly; "
            "supported: scores + mask -> softmax(dim=-1)"
        )
    km = key_mask(ctx, mask)
    if km.tk != scores.shape[-1]:
        raise ctx.unsupported(f"mask of {km.tk} keys for scores {scores.shape}")
    s = _reselect_scores(ctx, scores, km)
    if s is None:
        s = ctx.gemm([(_as_2d(scores), km.sel)], hint="scores_masked")
    _key_masks(ctx)[s.source] = km
    return s


def _reselect_scores(ctx: LoweringContext, scores: TensorRef, km: KeyMask) -> TensorRef | None:
    """``scores = (q @ kᵀ) * c`` rebuilt as ``(q @ (kᵀ @ Sel)) * c``, or None if not that form.

    Selecting keys before the product (as SDPA does) avoids requantising the scores twice.
    """
    g = ctx.graph
    p = _is_pointwise_of_node(ctx, scores)
    if p is None or scores.views:
        return None
    n, x_node, c = p
    if n.terms[0].a.views or len(x_node.terms) != 1 or x_node.bias is not None:
        return None
    t = x_node.terms[0]
    if g.is_const(t.a) or g.is_const(t.b) or t.b.shape[-1] != km.tk:
        return None
    kt = ctx.gemm([(t.b, km.sel)], hint="key_selected")
    cs = x_node.epilogue.col_scale
    return ctx.gemm([(t.a, kt)], col_scale=c if cs is None else cs * c, hint="scores_masked")


@specialise("aten.add.Tensor")
def _add_mask(ctx: LoweringContext, a, b, alpha=1):
    """``scores + mask`` for a host additive attention mask (:func:`masked_scores`), else None."""
    if ctx.is_data(a) and ctx.is_data(b) and alpha == 1:
        ha, hb = _is_host_value(ctx, a), _is_host_value(ctx, b)
        if ha != hb:
            scores, mask = (b, a) if ha else (a, b)
            dt = getattr(ctx, "dtypes", {}).get(mask.source, torch.float32)
            if dt.is_floating_point or dt == torch.bool:
                return masked_scores(ctx, scores, mask)
    return None


@specialise("aten.matmul.default")
def _probs_matmul(ctx: LoweringContext, a, b):
    """``softmax(s) @ v`` fusing the ``1/sum`` row scale into the product (the int8
    probabilities are then not needed), else None."""
    if (ctx.is_data(a) and ctx.is_data(b) and not a.views and b.ndim >= 2
            and a.source in _pending_probs(ctx)):
        e, r, mask = _pending_probs(ctx)[a.source]
        return attention_output(ctx, e, r, mask, b)
    return None


# ---------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------


@register("aten.scaled_dot_product_attention.default")
def _sdpa(ctx: LoweringContext, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *,
          scale=None, enable_gqa=False):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not ctx.is_data(t):
            raise ctx.unsupported(f"scaled_dot_product_attention with a constant {name}")
    if dropout_p:
        raise ctx.unsupported(f"dropout_p={dropout_p} (inference needs 0)")
    if is_causal:
        raise ctx.unsupported("is_causal=True: causal masks differ per query row; supported: "
                              "no mask or a key-padding attn_mask")
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        raise ctx.unsupported("grouped-query attention (enable_gqa with fewer key heads)")
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    mask = None
    if attn_mask is not None:
        if not ctx.is_data(attn_mask):
            am = torch.as_tensor(attn_mask)
            if am.dtype == torch.bool and bool(am.all()) or (am.dtype != torch.bool
                                                             and bool((am == 0).all())):
                attn_mask = None
            else:
                raise ctx.unsupported("a constant attention mask or bias (only key-padding "
                                      "masks computed from an input are supported)")
        elif not _is_host_value(ctx, attn_mask):
            raise ctx.unsupported("attn_mask computed from features (an attention bias); "
                                  "only key-padding masks from an input are supported")
        else:
            mask = key_mask(ctx, attn_mask)
    kk = k
    if mask is not None:
        kk = ctx.gemm([(mask.sel.transpose(-1, -2), k)], hint="key_selected")
    s = ctx.gemm([(q, kk.transpose(-1, -2))], col_scale=sc, hint="scores")
    e, r = attention_probs(ctx, s, mask)
    return attention_output(ctx, e, r, mask, v)


_sdpa.accepts_int = True  # a boolean attn_mask is host data


# ---------------------------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------------------------


def layer_norm(ctx: LoweringContext, x: TensorRef, d: int, weight, bias, eps: float, *,
               stats_headroom: float | None = None) -> TensorRef:
    """LayerNorm over the last ``d`` elements of each row of ``x`` (see the module docstring).

    ``stats_headroom``: hold the row means and the normalised values at 16 bits, and fit the
    ``rsqrt`` of the variances, with this headroom over their calibrated range
    (:attr:`compiler.graph.Epilogue.headroom`; GroupNorm, whose group statistics vary more
    between inputs than a few calibration inputs show); None: int8 means, normalised values as
    the precision policy decides (LayerNorm).
    """
    shape = x.shape
    xm = _as_2d(x)
    lead = xm.shape[:-1]
    eye = torch.eye(d)
    if stats_headroom is None:
        mu = ctx.gemm([(xm, torch.full((d, 1), 1.0 / d))], hint="ln_mean")
    else:
        mu = ctx.gemm([(xm, torch.full((d, 1), 1.0 / d))], hint="ln_mean", out_bits=16,
                      headroom=stats_headroom)
    xc = ctx.gemm([(xm, eye), (mu, -torch.ones(1, d))], hint="ln_centred")
    var = ctx.gemm([(xc.reshape(*lead, 1, d), xc.reshape(*lead, d, 1))], col_scale=1.0 / d,
                   bias=float(eps) * d, function="rsqrt", out_bits=16, hint="ln_rstd",
                   headroom=stats_headroom or 1.0)
    r = var.reshape(*lead, 1)
    if stats_headroom is None:
        n = ctx.gemm([(xc, eye)], row_scale=r, hint="ln_norm")
    else:
        n = ctx.gemm([(xc, eye)], row_scale=r, hint="ln_norm", out_bits=16,
                     headroom=stats_headroom)
    if weight is None and bias is None:
        y = n
    else:
        g = torch.ones(d) if weight is None else weight.detach().float().reshape(d)
        y = ctx.gemm([(n, torch.diag(g))], bias=None if bias is None else
                     bias.detach().float().reshape(d), hint="ln_affine")
    return y.reshape(*shape) if y.shape != shape else y


@register("aten.layer_norm.default", "aten.native_layer_norm.default")
def _layer_norm(ctx: LoweringContext, x, normalized_shape, weight=None, bias=None, eps=1e-5,
                *args):
    if not ctx.is_data(x):
        raise ctx.unsupported("layer_norm of a constant should have been folded")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and ctx.is_data(t):
            raise ctx.unsupported(f"layer_norm with a data {name} (must be a parameter)")
    ns = [int(s) for s in normalized_shape]
    if tuple(x.shape[x.ndim - len(ns):]) != tuple(ns):
        raise ctx.unsupported(f"normalized_shape {ns} does not end input shape {x.shape}")
    d = prod(ns)
    xl = x.reshape(*x.shape[: x.ndim - len(ns)], d) if len(ns) != 1 else x
    y = layer_norm(ctx, xl, d,
                   None if weight is None else weight.reshape(-1),
                   None if bias is None else bias.reshape(-1), float(eps))
    y = y.reshape(*x.shape) if y.shape != x.shape else y
    if ctx.aten.startswith("aten.native_layer_norm"):
        return (y, None, None)
    return y


# ---------------------------------------------------------------------------------------------
# GELU
# ---------------------------------------------------------------------------------------------


@register("aten.gelu.default", "aten.gelu_.default")
def _gelu(ctx: LoweringContext, x, approximate: str = "none"):
    if approximate not in ("none", "tanh"):
        raise ctx.unsupported(f"gelu approximate={approximate!r}; supported: 'none', 'tanh'")
    return ctx.pointwise(x, "gelu" if approximate == "none" else "gelu_tanh")


# ---------------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------------


class _OneHot:
    """Host op: integer ids -> one-hot float rows (checks the id range)."""

    def __init__(self, num: int, where: str) -> None:
        self.num, self.where = num, where

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dtype.is_floating_point:
            raise ConvertError(f"{self.where}: embedding ids must be integers, got {ids.dtype}")
        ids = ids.to(torch.int64)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num):
            raise ConvertError(f"{self.where}: embedding id outside 0..{self.num - 1} "
                               f"(got {int(ids.min())}..{int(ids.max())})")
        return torch.nn.functional.one_hot(ids, self.num).to(torch.float32)


@register("aten.embedding.default")
def _embedding(ctx: LoweringContext, weight, indices, padding_idx=-1, scale_grad_by_freq=False,
               sparse=False):
    if ctx.is_data(weight):
        raise ctx.unsupported("embedding with a data table (must be a parameter)")
    if not ctx.is_data(indices):
        raise ctx.unsupported("embedding with constant ids should have been folded")
    if not _is_host_value(ctx, indices):
        raise ctx.unsupported("embedding ids computed on the accelerator (ids must be an "
                              "integer input or host pre-processing of one)")
    num, dim = weight.shape
    where = f"{ctx.aten} in module {ctx.module or '<top>'!r}"
    onehot = ctx.host(_OneHot(int(num), where), (indices,), shape=(*indices.shape, int(num)),
                      dtype=torch.float32,
                      description=f"{ctx.module or '<top>'}: ids -> one-hot rows ({num} classes)")
    oh = _as_2d(onehot)
    out = ctx.gemm([(oh, weight.detach().float())], hint=(ctx.module.replace(".", "_") or "emb"))
    want = (*indices.shape, int(dim))
    return out.reshape(*want) if out.shape != want else out


_embedding.accepts_int = True


# ---------------------------------------------------------------------------------------------
# trace-time assertions
# ---------------------------------------------------------------------------------------------


@register("aten._assert_tensor_metadata.default")
def _assert_tensor_metadata(ctx: LoweringContext, *args, **kwargs):
    """A trace-time dtype/device assertion (torch.export inserts it before casts): no data."""
    return None


_assert_tensor_metadata.accepts_int = True
