"""Lowerings of the CNN/MLP op set: linear algebra, convolution, BatchNorm, pooling, element-wise
arithmetic, activations and pure data movement (views).

Conventions: a per-sample data tensor keeps PyTorch's logical shape; the GEMM that produced it may
hold it in another layout (a convolution writes ``(N, Ho*Wo, Cout)``: output channels are the
columns) and the logical value is a view of that. Element-wise work runs on the producer's layout
whenever the operands share it
(:meth:`~compiler.frontend.lowering.registry.LoweringContext.combine`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch

from compiler.frontend.lowering.registry import LoweringContext, prod, register
from compiler.graph import Pad, TensorRef

# ---------------------------------------------------------------------------------------------
# views: pure data movement
# ---------------------------------------------------------------------------------------------


@register("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _reshape(ctx: LoweringContext, x, shape):
    return x.reshape(*shape)


@register("aten.flatten.using_ints")
def _flatten(ctx, x, start_dim=0, end_dim=-1):
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(*x.shape[:s], prod(x.shape[s : e + 1]), *x.shape[e + 1 :])


@register("aten.unsqueeze.default")
def _unsqueeze(ctx, x, dim):
    d = dim % (x.ndim + 1)
    return x.reshape(*x.shape[:d], 1, *x.shape[d:])


@register("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(ctx, x, dim=None):
    dims = range(x.ndim) if dim is None else ([dim] if isinstance(dim, int) else dim)
    dims = {d % x.ndim for d in dims}
    return x.reshape(*[s for i, s in enumerate(x.shape) if not (i in dims and s == 1)])


@register("aten.permute.default")
def _permute(ctx, x, dims):
    return x.permute(*dims)


@register("aten.transpose.int")
def _transpose(ctx, x, d0, d1):
    return x.transpose(d0, d1)


@register("aten.t.default")
def _t(ctx, x):
    return x if x.ndim < 2 else x.transpose(0, 1)


@register("aten.contiguous.default", "aten.clone.default", "aten.alias.default",
          "aten.detach.default", "aten.lift_fresh_copy.default")
def _identity(ctx, x, *args, **kwargs):
    return x


@register("aten.dropout.default", "aten.dropout_.default", "aten.feature_dropout.default",
          "aten.feature_dropout_.default", "aten.alpha_dropout.default",
          "aten.alpha_dropout_.default", "aten.feature_alpha_dropout.default",
          "aten.feature_alpha_dropout_.default")
def _dropout(ctx, x, p=0.5, train=False):
    """Dropout is the identity at inference (``train=False``, as ``model.eval()`` traces it)."""
    if train and p:
        raise ctx.unsupported(f"dropout with train=True (p={p}); call model.eval()")
    return x


@register("aten.to.dtype", "aten._to_copy.default", "aten.to.dtype_layout", "aten.type_as.default",
          "aten.to.device", "aten.to.other")
def _to(ctx, x, *args, **kwargs):
    dtype = kwargs.get("dtype")
    if dtype is None:
        dtype = next((a for a in args if isinstance(a, torch.dtype)), None)
    if dtype is not None and not dtype.is_floating_point:
        raise ctx.unsupported(f"cast of a data tensor to {dtype}; data tensors stay real-valued")
    return x


@register("aten.slice.Tensor")
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    n = x.shape[dim % x.ndim]
    start = 0 if start is None else (start + n if start < 0 else min(start, n))
    end = n if end is None else (end + n if end < 0 else min(end, n))
    if start == 0 and end == n and step == 1:
        return x
    return x.slice(dim, start, end, step)


@register("aten.select.int")
def _select(ctx, x, dim, index):
    d = dim % x.ndim
    i = index % x.shape[d]
    y = x.slice(d, i, i + 1)
    return y.reshape(*x.shape[:d], *x.shape[d + 1 :])


# ---------------------------------------------------------------------------------------------
# matrix products
# ---------------------------------------------------------------------------------------------


#: Pattern-specific lowerings tried, in order, before the generic one of an op in this module
#: (key: ``str`` of the ``OpOverload``). Each takes the op's arguments and returns the result, or
#: None to leave the op to the generic lowering (:mod:`compiler.frontend.lowering.transformer` adds
#: attention masks to ``aten.add.Tensor`` and ``softmax(s) @ v`` to ``aten.matmul.default``).
SPECIALISATIONS: dict[str, list[Callable[..., Any]]] = {}


def specialise(*ops: str) -> Callable:
    """Decorator: add a pattern-specific lowering for ``ops`` (see :data:`SPECIALISATIONS`)."""

    def deco(fn: Callable) -> Callable:
        for op in ops:
            SPECIALISATIONS.setdefault(op, []).append(fn)
        return fn

    return deco


def _specialised(ctx: LoweringContext, *args: Any) -> Any:
    for fn in SPECIALISATIONS.get(ctx.aten, ()):
        out = fn(ctx, *args)
        if out is not None:
            return out
    return None


def _matmul(ctx: LoweringContext, a, b, bias=None):
    """``a @ b`` with 1-D operands promoted like :func:`torch.matmul`."""
    if not ctx.is_data(a) and not ctx.is_data(b):
        raise ctx.unsupported("matmul of two constants should have been folded")
    a_ref, b_ref = ctx.as_ref(a, "mat"), ctx.as_ref(b, "weight")
    squeeze_a = squeeze_b = False
    if a_ref.ndim == 1:
        a_ref, squeeze_a = a_ref.reshape(1, -1), True
    if b_ref.ndim == 1:
        b_ref, squeeze_b = b_ref.reshape(-1, 1), True
    out = ctx.gemm([(a_ref, b_ref)], bias=bias)
    shape = list(out.shape)
    if squeeze_a:
        shape.pop(-2)
    if squeeze_b:
        shape.pop(-1)
    return out.reshape(*shape) if tuple(shape) != out.shape else out


@register("aten.linear.default")
def _linear(ctx, x, weight, bias=None):
    if ctx.is_data(weight):
        w = weight.transpose(-1, -2) if weight.ndim >= 2 else weight
        return _matmul(ctx, x, w, bias)
    return _matmul(ctx, x, weight.t() if weight.ndim == 2 else weight, bias)


@register("aten.matmul.default", "aten.mm.default", "aten.bmm.default")
def _mm(ctx, a, b):
    out = _specialised(ctx, a, b)
    return _matmul(ctx, a, b) if out is None else out


@register("aten.addmm.default")
def _addmm(ctx, bias, a, b, beta=1, alpha=1):
    if ctx.is_data(bias) or bias.ndim > 1 and bias.shape[0] != 1:
        raise ctx.unsupported("addmm bias must be a constant vector")
    if alpha != 1:
        b = b * alpha if not ctx.is_data(b) else b
        if ctx.is_data(b):
            raise ctx.unsupported("addmm alpha != 1 with a data right operand")
    return _matmul(ctx, a, b, bias.reshape(-1) * beta)


# ---------------------------------------------------------------------------------------------
# convolution and BatchNorm
# ---------------------------------------------------------------------------------------------


def _pair(v, name, ctx):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ctx.unsupported(f"{name}={v}: only 2-D convolution/pooling is supported")
    return v


def conv2d(ctx: LoweringContext, x: TensorRef, weight, bias, stride, padding, dilation,
           groups) -> TensorRef:
    """2-D convolution as an (optionally grouped/batched) GEMM over an im2col view."""
    from compiler.graph import Im2col

    if ctx.is_data(weight) or (bias is not None and ctx.is_data(bias)):
        raise ctx.unsupported("convolution weights and bias must be constants")
    if x.ndim != 4 or weight.ndim != 4:
        raise ctx.unsupported(f"conv2d needs a 4-D (N, C, H, W) input, got {x.shape}")
    n, c, h, w = x.shape
    cout, cg, kh, kw = weight.shape
    g = int(groups)
    if cg * g != c or cout % g:
        raise ctx.unsupported(f"groups={g} does not divide channels {c} -> {cout}")
    stride, dilation = _pair(stride, "stride", ctx), _pair(dilation, "dilation", ctx)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1):
            tot = [dilation[i] * (k - 1) for i, k in enumerate((kh, kw))]
            if any(t % 2 for t in tot):
                raise ctx.unsupported("padding='same' with an even kernel (asymmetric padding)")
            padding = (tot[0] // 2, tot[1] // 2)
        else:
            raise ctx.unsupported(f"padding={padding!r} with stride {stride}")
    padding = _pair(padding, "padding", ctx)
    cols = Im2col((kh, kw), stride, padding, dilation)
    cog = cout // g
    wm = weight.detach().float()
    if g == 1:
        a = x.view(cols)  # (N, L, C*kh*kw)
        b = wm.reshape(cout, -1).t().contiguous()  # (K, Cout)
        bias_v = None if bias is None else bias.detach().float()
    else:
        a = x.reshape(n, g, cg, h, w).view(cols)  # (N, G, L, Cg*kh*kw)
        b = wm.reshape(g, cog, cg * kh * kw).transpose(1, 2).contiguous()  # (G, K, Cog)
        bias_v = None if bias is None else bias.detach().float().reshape(g, 1, cog)
    out = ctx.gemm([(a, b)], bias=bias_v, hint=(ctx.module.replace(".", "_") or "conv"))
    ho, wo = _conv_out(h, w, cols)
    if g == 1:
        return out.permute(0, 2, 1).reshape(n, cout, ho, wo)
    return out.permute(0, 1, 3, 2).reshape(n, cout, ho, wo)


def _conv_out(h, w, cols):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cols.kernel, cols.stride, cols.padding, cols.dilation
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


@register("aten.conv2d.default", "aten.conv2d.padding")
def _conv2d(ctx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv2d(ctx, x, weight, bias, stride, padding, dilation, groups)


@register("aten.convolution.default")
def _convolution(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups):
    if transposed:
        raise ctx.unsupported("transposed convolution")
    if len(stride) == 1:
        return _conv1d(ctx, x, weight, bias, stride, padding, dilation, groups)
    if len(stride) != 2:
        raise ctx.unsupported(f"{len(stride)}-D convolution; 1-D and 2-D are supported")
    return conv2d(ctx, x, weight, bias, stride, padding, dilation, groups)


@register("aten.conv1d.default", "aten.conv1d.padding")
def _conv1d(ctx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution as a 2-D one of height 1: ``(N, C, L) -> (N, C, 1, L)`` (a view)."""
    if x.ndim != 3 or ctx.is_data(weight) or weight.ndim != 3:
        raise ctx.unsupported(f"conv1d needs a 3-D (N, C, L) input and constant weights, got "
                              f"{x.shape}")

    def one(v):
        return v[0] if isinstance(v, (tuple, list)) else v

    pad = padding if isinstance(padding, str) else (0, one(padding))
    out = conv2d(ctx, x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]), weight.unsqueeze(2),
                 bias, (1, one(stride)), pad, (1, one(dilation)), groups)
    return out.reshape(out.shape[0], out.shape[1], out.shape[3])


def _channel_layout(ctx: LoweringContext, x: TensorRef, node, channel_dim: int):
    """Map ``x``'s channel index to the producer's B-operand columns, or None if not a function.

    Returns an int tensor of shape ``(*B batch dims, 1, N)`` giving the channel of each column.
    """
    term = node.terms[0]
    src = torch.arange(prod(x.source_shape)).reshape(x.source_shape)
    logical = src
    for v in x.views:
        logical = v.apply(logical, logical.ndim)
    ch = torch.arange(x.shape[channel_dim]).reshape(
        [-1 if i == channel_dim else 1 for i in range(x.ndim)]).expand(x.shape)
    out_shape = node.shape
    bshape = term.b.shape
    key_shape = (*bshape[:-2], 1, bshape[-1])
    table = torch.full((prod(key_shape),), -1, dtype=torch.long)
    pos = logical.reshape(-1)
    coords = torch.stack(torch.unravel_index(pos, out_shape), dim=-1)  # (P, ndim_out)
    nd = len(out_shape)
    kc = []
    for i, s in enumerate(key_shape):
        od = nd - len(key_shape) + i
        kc.append(torch.zeros_like(coords[:, 0]) if s == 1 else coords[:, od])
    key = torch.zeros_like(coords[:, 0])
    for i, s in enumerate(key_shape):
        key = key * s + kc[i]
    chv = ch.reshape(-1)
    table[key] = chv
    if not torch.equal(table[key], chv) or (table < 0).any():
        return None
    return table.reshape(key_shape)


def _affine_channels(ctx: LoweringContext, fx_arg, x: TensorRef, scale: torch.Tensor,
                     shift: torch.Tensor, channel_dim: int, what: str) -> TensorRef:
    """``x * scale[c] + shift[c]`` per channel: folded into the producing GEMM when possible."""
    g = ctx.graph
    fold_ok = (
        g.kind_of(x.source) == "node"
        and isinstance(fx_arg, torch.fx.Node)
        and len(fx_arg.users) == 1
    )
    if fold_ok:
        node = g.node(x.source)
        ep = node.epilogue
        fold_ok = (len(node.terms) == 1 and g.is_const(node.terms[0].b)
                   and not node.terms[0].b.views and ep.function is None
                   and ep.row_scale is None and ep.scale_like is None and ep.col_scale is None
                   and not any(o.source == node.name for o in g.outputs)
                   and not any(t.a.source == node.name or t.b.source == node.name
                               for n2 in g.nodes for t in n2.terms))
    if fold_ok:
        layout = _channel_layout(ctx, x, node, channel_dim)
        if layout is not None:
            bname = node.terms[0].b.source
            s_cols, t_cols = scale[layout], shift[layout]
            g.constants[bname] = g.constants[bname] * s_cols
            if node.bias is None:
                node.bias = ctx.const(t_cols, "bias").source
            else:
                g.constants[node.bias] = (g.constants[node.bias] * s_cols + t_cols)
            node.aten = f"{node.aten}+{ctx.aten}"
            ctx.fold(f"{what} folded into the weights and bias of {node.name}")
            return x
    # general case: channels to the last dim, diagonal GEMM with bias
    dims = [d for d in range(x.ndim) if d != channel_dim] + [channel_dim]
    xl = x.permute(*dims)
    out = ctx.gemm([(xl.as_matrix(), torch.diag(scale))], bias=shift)
    inv = [dims.index(d) for d in range(x.ndim)]
    return out.reshape(*xl.shape).permute(*inv)


@register("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default")
def _batch_norm(ctx, x, weight, bias, running_mean, running_var, *args):
    if ctx.node.target.__name__.startswith("_native_batch_norm_legit_no_training"):
        eps = args[1]
        training = False
    else:
        training, eps = args[0], args[2]
    if training:
        raise ctx.unsupported("BatchNorm in training mode (call model.eval())")
    if any(ctx.is_data(v) for v in (weight, bias, running_mean, running_var) if v is not None):
        raise ctx.unsupported("BatchNorm statistics must be constants")
    c = x.shape[1]
    w = torch.ones(c) if weight is None else weight.detach().float()
    b = torch.zeros(c) if bias is None else bias.detach().float()
    s = w / torch.sqrt(running_var.float() + eps)
    t = b - running_mean.float() * s
    out = _affine_channels(ctx, ctx.node.args[0], x, s, t, 1, "BatchNorm")
    if ctx.node.target.__name__.startswith("_native_batch_norm_legit_no_training"):
        return (out, None, None)
    return out


# ---------------------------------------------------------------------------------------------
# element-wise arithmetic
# ---------------------------------------------------------------------------------------------


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1)


def add_const(ctx: LoweringContext, x: TensorRef, c, sign: float = 1.0) -> TensorRef:
    """``x + sign * c`` for a constant ``c`` broadcast to ``x``'s shape."""
    ct = torch.as_tensor(c, dtype=torch.float32) * sign
    if ct.numel() == 1:
        return ctx.combine([(x, 1.0)], bias=float(ct))
    full = ct.expand(x.shape) if ct.ndim <= x.ndim else None
    if full is None:
        raise ctx.unsupported(f"constant of shape {tuple(ct.shape)} broadcast to {x.shape}")
    lastvec = full.reshape(-1, x.shape[-1])
    if torch.equal(lastvec, lastvec[:1].expand_as(lastvec)):
        out = ctx.gemm([(x.as_matrix(), torch.eye(x.shape[-1]))], bias=lastvec[0])
        return out.reshape(*x.shape)
    # general constant: accumulate it as a constant x identity term
    xm = x.as_matrix()
    out = ctx.gemm([(xm, torch.eye(x.shape[-1])), (full.reshape(xm.shape), torch.eye(x.shape[-1]))])
    return out.reshape(*x.shape)


def mul_const(ctx: LoweringContext, x: TensorRef, c) -> TensorRef:
    """``x * c`` for a constant ``c`` (scalar, or varying along one axis only)."""
    ct = torch.as_tensor(c, dtype=torch.float32)
    if ct.numel() == 1:
        return ctx.scaled(x, float(ct))
    full = ct.expand(x.shape)
    lastvec = full.reshape(-1, x.shape[-1])
    if torch.equal(lastvec, lastvec[:1].expand_as(lastvec)):
        out = ctx.gemm([(x.as_matrix(), torch.eye(x.shape[-1]))], col_scale=lastvec[0])
        return out.reshape(*x.shape)
    # varies along one other axis only: move it last
    varying = [d for d in range(x.ndim)
               if not torch.equal(full, full.narrow(d, 0, 1).expand_as(full))]
    if len(varying) == 1:
        d = varying[0]
        vec = full.movedim(d, -1).reshape(-1, x.shape[d])[0]
        dims = [i for i in range(x.ndim) if i != d] + [d]
        xl = x.permute(*dims)
        out = ctx.gemm([(xl.as_matrix(), torch.eye(x.shape[d]))], col_scale=vec)
        inv = [dims.index(i) for i in range(x.ndim)]
        return out.reshape(*xl.shape).permute(*inv)
    raise ctx.unsupported(f"element-wise product with a constant of shape {tuple(ct.shape)}")


def _row_layout(ctx: LoweringContext, x: TensorRef, r: TensorRef, what: str):
    """Permutation putting the dims ``r`` varies over first; returns (perm, rows, r (rows, 1))."""
    if r.ndim > x.ndim:
        raise ctx.unsupported(f"{what}: {r.shape} has more dims than {x.shape}")
    rfull = (1,) * (x.ndim - r.ndim) + tuple(r.shape)
    vary = [d for d in range(x.ndim) if rfull[d] != 1]
    bcast = [d for d in range(x.ndim) if rfull[d] == 1]
    if any(rfull[d] != x.shape[d] for d in vary):
        raise ctx.unsupported(f"{what}: {r.shape} does not broadcast to {x.shape}")
    if not bcast:
        raise ctx.unsupported(f"{what}: no broadcast dims in {r.shape} vs {x.shape}")
    perm = vary + bcast
    rows = prod(x.shape[d] for d in vary)
    rr = r.reshape(*rfull).permute(*perm).reshape(rows, 1) if vary else r.reshape(1, 1)
    return perm, rows, rr


def add_rows(ctx: LoweringContext, x: TensorRef, r: TensorRef, cr: float,
             cx: float = 1.0) -> TensorRef:
    """``cx * x + cr * r`` for a data tensor ``r`` broadcast over some of ``x``'s dims: a rank-1
    accumulating GEMM ``r (rows, 1) @ ones(1, cols)`` next to ``x @ I``."""
    perm, rows, rr = _row_layout(ctx, x, r, "broadcasting add")
    xp = x.permute(*perm)
    xm = xp.reshape(rows, -1)
    cols = xm.shape[-1]
    out = ctx.gemm([(xm, cx * torch.eye(cols)), (rr, torch.full((1, cols), cr))])
    inv = [perm.index(d) for d in range(x.ndim)]
    return out.reshape(*xp.shape).permute(*inv)


def written_by_node(ctx: LoweringContext, r: TensorRef) -> TensorRef:
    """``r`` if a GEMM node wrote it, else a copy of it through an identity GEMM (a row-scale
    vector is written by an epilogue; graph inputs and host values are not)."""
    if ctx.graph.kind_of(r.source) == "node":
        return r
    rm = r.reshape(1, -1) if r.ndim < 2 else r
    out = ctx.gemm([(rm, torch.eye(rm.shape[-1]))], hint="copy")
    return out.reshape(*r.shape) if out.shape != r.shape else out


def mul_elementwise(ctx: LoweringContext, x: TensorRef, r: TensorRef) -> TensorRef:
    """``x * r`` for two data tensors of the same shape: every element is its own row,
    ``(x as a column) @ [1]`` with ``r`` as the epilogue's int16 per-row multiplier.

    Exact up to ``r``'s 16-bit quantisation (the row scale); the GEMM has ``K = N = 1``, so it
    costs one pass over the elements, like any element-wise node.
    """
    if x.shape != r.shape:
        raise ctx.unsupported(f"element-wise product of {x.shape} and {r.shape}")
    r = written_by_node(ctx, r)
    ctx.graph.node(r.source).epilogue.out_bits = 16
    n = x.numel()
    out = ctx.gemm([(x.reshape(n, 1), torch.ones(1, 1))], row_scale=r.reshape(n, 1),
                   hint="product")
    return out.reshape(*x.shape)


def mul_rows(ctx: LoweringContext, x: TensorRef, r: TensorRef) -> TensorRef:
    """``x * r`` for a data tensor ``r`` that is constant along some of ``x``'s dims: row scaling.

    ``x`` is laid out as ``(rows, cols)`` with the dims ``r`` varies over as rows and the dims it
    broadcasts over as columns; ``r`` becomes the epilogue's per-row multiplier, so it must be
    written by a node (whose output becomes int16).
    """
    g = ctx.graph
    r = written_by_node(ctx, r)
    perm, rows, rr = _row_layout(ctx, x, r, "row scaling")
    g.node(r.source).epilogue.out_bits = 16
    xp = x.permute(*perm)
    xm = xp.reshape(rows, -1)
    out = ctx.gemm([(xm, torch.eye(xm.shape[-1]))], row_scale=rr)
    inv = [perm.index(d) for d in range(x.ndim)]
    return out.reshape(*xp.shape).permute(*inv)


@register("aten.add.Tensor", "aten.add_.Tensor", "aten.sub.Tensor", "aten.sub_.Tensor",
          "aten.rsub.Scalar", "aten.rsub.Tensor", "aten.add.Scalar", "aten.sub.Scalar")
def _add(ctx, a, b, alpha=1):
    out = _specialised(ctx, a, b, alpha)
    if out is not None:
        return out
    name = ctx.aten
    sign = -1.0 if ".sub" in name else 1.0
    if name.startswith("aten.rsub"):  # b - alpha * a
        if ctx.is_data(a) and ctx.is_data(b):
            return ctx.combine([(b, 1.0), (a, -float(alpha))])
        if ctx.is_data(a):
            return add_const(ctx, ctx.scaled(a, -float(alpha)), b)
        return add_const(ctx, b, torch.as_tensor(a) * alpha, -1.0)
    if ctx.is_data(a) and ctx.is_data(b):
        if a.shape != b.shape:
            if a.numel() >= b.numel():
                return add_rows(ctx, a, b, sign * float(alpha))
            return add_rows(ctx, b, a, 1.0, sign * float(alpha))
        return ctx.combine([(a, 1.0), (b, sign * float(alpha))])
    if ctx.is_data(a):
        return add_const(ctx, a, torch.as_tensor(b) * alpha, sign)
    # const + data
    y = b if sign * alpha == 1 else ctx.scaled(b, sign * float(alpha))
    return add_const(ctx, y, a)


@register("aten.mul.Tensor", "aten.mul.Scalar", "aten.mul_.Tensor", "aten.div.Tensor",
          "aten.div.Scalar")
def _mul(ctx, a, b):
    div = ".div" in ctx.aten
    if ctx.is_data(a) and ctx.is_data(b):
        if div:
            raise ctx.unsupported("division by a data tensor (use a reciprocal PWL lowering)")
        if b.numel() < a.numel():
            return mul_rows(ctx, a, b)
        if a.numel() < b.numel():
            return mul_rows(ctx, b, a)
        if a.shape != b.shape:
            raise ctx.unsupported(f"element-wise product of two data tensors {a.shape} * "
                                  f"{b.shape} that both broadcast")
        # the scale is the operand a node wrote with a function (a gate), else b
        ga, gb = (ctx.graph.kind_of(t.source) == "node" and ctx.graph.node(
            t.source).epilogue.function is not None for t in (a, b))
        return mul_elementwise(ctx, b, a) if ga and not gb else mul_elementwise(ctx, a, b)
    x, c = (a, b) if ctx.is_data(a) else (b, a)
    if div:
        if not ctx.is_data(a):
            raise ctx.unsupported("constant divided by a data tensor")
        c = 1.0 / torch.as_tensor(c, dtype=torch.float32)
    return mul_const(ctx, x, c)


@register("aten.neg.default")
def _neg(ctx, x):
    return ctx.scaled(x, -1.0)


# ---------------------------------------------------------------------------------------------
# activations (PWL epilogues; relu-class exact)
# ---------------------------------------------------------------------------------------------


def _act(fn_name: str):
    def lower(ctx, x, *args, **kwargs):
        return ctx.pointwise(x, fn_name)

    lower.__name__ = f"_{fn_name}"
    return lower


register("aten.relu.default", "aten.relu_.default")(_act("relu"))
register("aten.relu6.default", "aten.relu6_.default")(_act("relu6"))
register("aten.sigmoid.default", "aten.sigmoid_.default")(_act("sigmoid"))
register("aten.tanh.default", "aten.tanh_.default")(_act("tanh"))
register("aten.silu.default", "aten.silu_.default")(_act("silu"))
register("aten.hardswish.default", "aten.hardswish_.default")(_act("hardswish"))
register("aten.hardsigmoid.default", "aten.hardsigmoid_.default")(_act("hardsigmoid"))




# ---------------------------------------------------------------------------------------------
# pooling and reductions
# ---------------------------------------------------------------------------------------------


def _pool_matrix(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor=None):
    """(Ho*Wo, H*W) averaging matrix of an avg-pool window pattern."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding

    def osize(n, k, s, p):
        o = (n + 2 * p - k + ((s - 1) if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        return o

    ho, wo = osize(h, kh, sh, ph), osize(w, kw, sw, pw)
    p = torch.zeros(ho * wo, h * w)
    for oi in range(ho):
        for oj in range(wo):
            i0, j0 = oi * sh - ph, oj * sw - pw
            i1, j1 = min(i0 + kh, h + ph), min(j0 + kw, w + pw)
            pool_n = (i1 - i0) * (j1 - j0)
            ii = [i for i in range(i0, i0 + kh) if 0 <= i < h]
            jj = [j for j in range(j0, j0 + kw) if 0 <= j < w]
            n = divisor or (pool_n if count_include_pad else len(ii) * len(jj))
            for i in ii:
                for j in jj:
                    p[oi * wo + oj, i * w + j] = 1.0 / n
    return p, ho, wo


def _spatial_pool(ctx, x: TensorRef, pmat: torch.Tensor, ho: int, wo: int) -> TensorRef:
    """``(N, C, H, W) -> (N, C, Ho, Wo)`` as ``P @ X`` with channels as columns."""
    n, c, h, w = x.shape
    xc = x.reshape(n, c, h * w).transpose(-1, -2)  # (N, HW, C)
    out = ctx.gemm([(pmat, xc)])  # (N, HoWo, C)
    return out.transpose(-1, -2).reshape(n, c, ho, wo)


@register("aten.avg_pool2d.default")
def _avg_pool2d(ctx, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    if x.ndim != 4:
        raise ctx.unsupported(f"avg_pool2d on a {x.ndim}-D tensor; (N, C, H, W) supported")
    k = _pair(kernel_size, "kernel_size", ctx)
    s = _pair(stride, "stride", ctx) if stride else k
    p = _pair(padding, "padding", ctx)
    pm, ho, wo = _pool_matrix(x.shape[2], x.shape[3], k, s, p, ceil_mode, count_include_pad,
                              divisor_override)
    return _spatial_pool(ctx, x, pm, ho, wo)


@register("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(ctx, x, output_size):
    if x.ndim != 4:
        raise ctx.unsupported(f"adaptive_avg_pool2d on a {x.ndim}-D tensor")
    h, w = x.shape[2:]
    oh, ow = _pair(output_size, "output_size", ctx)
    oh, ow = oh or h, ow or w
    pm = torch.zeros(oh * ow, h * w)
    for i in range(oh):
        i0, i1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            j0, j1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
            cnt = (i1 - i0) * (j1 - j0)
            for a in range(i0, i1):
                for b in range(j0, j1):
                    pm[i * ow + j, a * w + b] = 1.0 / cnt
    return _spatial_pool(ctx, x, pm, oh, ow)


def max2(ctx: LoweringContext, a: TensorRef, b: TensorRef, like: str) -> TensorRef:
    """``max(a, b) = b + relu(a - b)``: two accumulating identity-GEMM nodes."""
    d = ctx.combine([(a, 1.0), (b, -1.0)], function="relu", scale_like=like)
    return ctx.combine([(b, 1.0), (d, 1.0)], scale_like=like)


@register("aten.max_pool2d.default", "aten.max_pool2d_with_indices.default")
def _max_pool2d(ctx, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    if x.ndim != 4:
        raise ctx.unsupported(f"max_pool2d on a {x.ndim}-D tensor; (N, C, H, W) supported")
    (kh, kw) = _pair(kernel_size, "kernel_size", ctx)
    (sh, sw) = _pair(stride, "stride", ctx) if stride else (kh, kw)
    (ph, pw) = _pair(padding, "padding", ctx)
    (dh, dw) = _pair(dilation, "dilation", ctx)
    n, c, h, w = x.shape

    def osize(size, k, s, p, d):
        span = d * (k - 1) + 1
        if not ceil_mode:
            return (size + 2 * p - span) // s + 1
        o = -(-(size + 2 * p - span) // s) + 1
        return o - 1 if (o - 1) * s >= size + p else o  # the last window starts inside

    ho, wo = osize(h, kh, sh, ph, dh), osize(w, kw, sw, pw, dw)
    # ceil_mode: windows past the bottom/right edge read clamped (replicated) edge elements,
    # which are inside those windows, so the maximum is unchanged
    eh = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
    ew = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    if (ph or pw or eh or ew) and (dh, dw) != (1, 1):
        raise ctx.unsupported("max_pool2d with both padding (or ceil_mode) and dilation")
    pads = (pw, pw + ew, ph, ph + eh)
    xp = x.view(Pad(pads, "replicate")) if any(pads) else x
    xcl = xp.permute(0, 2, 3, 1)  # (N, Hp, Wp, C): channels as columns
    windows = []
    for i in range(kh):
        for j in range(kw):
            v = xcl.slice(1, i * dh, i * dh + sh * (ho - 1) + 1, sh)
            v = v.slice(2, j * dw, j * dw + sw * (wo - 1) + 1, sw)
            windows.append(v.reshape(n * ho * wo, c))
    like = x.source
    m = windows[0]
    for v in windows[1:]:
        m = max2(ctx, v, m, like)
    out = m.reshape(n, ho, wo, c).permute(0, 3, 1, 2)
    if ctx.aten.startswith("aten.max_pool2d_with_indices"):
        return (out, None)
    return out


def reduce_last(ctx: LoweringContext, x: TensorRef, dims, keepdim: bool, mean: bool):
    """Sum/mean over ``dims``: move them last, GEMM with a ones (or 1/R) column."""
    dims = sorted({d % x.ndim for d in dims})
    keep = [d for d in range(x.ndim) if d not in dims]
    xp = x.permute(*keep, *dims)
    r = prod(x.shape[d] for d in dims)
    xm = xp.reshape(-1, r)
    col = torch.full((r, 1), 1.0 / r if mean else 1.0)
    out = ctx.gemm([(xm, col)])
    shape = [1 if d in dims else s for d, s in enumerate(x.shape)] if keepdim else \
        [x.shape[d] for d in keep]
    return out.reshape(tuple(shape))


@register("aten.mean.dim", "aten.mean.default")
def _mean(ctx, x, dim=None, keepdim=False, dtype=None):
    dims = range(x.ndim) if dim is None else ([dim] if isinstance(dim, int) else dim)
    return reduce_last(ctx, x, dims, keepdim, True)


@register("aten.sum.dim_IntList", "aten.sum.default")
def _sum(ctx, x, dim=None, keepdim=False, dtype=None):
    dims = range(x.ndim) if dim is None else ([dim] if isinstance(dim, int) else dim)
    return reduce_last(ctx, x, dims, keepdim, False)


@register("aten.cat.default")
def _cat(ctx, tensors, dim=0):
    """Concatenation as accumulating GEMMs against shifted identity blocks."""
    refs = [t if ctx.is_data(t) else ctx.const(t, "cat") for t in tensors]
    nd = refs[0].ndim
    d = dim % nd
    perm = [i for i in range(nd) if i != d] + [d]
    moved = [r.permute(*perm) for r in refs]
    total = sum(r.shape[-1] for r in moved)
    terms, off = [], 0
    for r in moved:
        k = r.shape[-1]
        sel = torch.zeros(k, total)
        sel[:, off : off + k] = torch.eye(k)
        terms.append((r.as_matrix(), sel))
        off += k
    if all(ctx.graph.is_const(t[0]) for t in terms):
        raise ctx.unsupported("cat of constants only")
    out = ctx.gemm(terms)
    lead = moved[0].shape[:-1]
    inv = [perm.index(i) for i in range(nd)]
    return out.reshape(*lead, total).permute(*inv)


def max_over_rows(ctx: LoweringContext, x: TensorRef, like: str) -> TensorRef:
    """Maximum over dim -2 of ``(..., L, C)`` (kept as size 1) by a pairwise tree.

    Each level compares the first and the last ``ceil(L / 2)`` rows (overlapping by one row when
    ``L`` is odd, so no padding value enters), ``max(a, b) = b + relu(a - b)`` with channels as
    columns: ``2 ceil(log2 L)`` nodes.
    """
    c = x
    while c.shape[-2] > 1:
        n = c.shape[-2]
        h = (n + 1) // 2
        c = max2(ctx, c.slice(-2, 0, h), c.slice(-2, n - h, n), like)
    return c


def _indices_unused(ctx: LoweringContext, what: str) -> None:
    for user in ctx.node.users:
        if user.target is not operator.getitem or (user.args[1] != 0 and user.users):
            raise ctx.unsupported(f"{what}: only the values are supported, not the indices")


@register("aten.adaptive_max_pool2d.default")
def _adaptive_max_pool2d(ctx, x, output_size):
    if x.ndim != 4:
        raise ctx.unsupported(f"adaptive_max_pool2d on a {x.ndim}-D tensor")
    if tuple(_pair(output_size, "output_size", ctx)) != (1, 1):
        raise ctx.unsupported(f"adaptive_max_pool2d output size {output_size}; supported: 1")
    _indices_unused(ctx, "adaptive_max_pool2d")
    n, c, h, w = x.shape
    m = max_over_rows(ctx, x.reshape(n, c, h * w).transpose(-1, -2), x.source)  # (N, 1, C)
    return (m.transpose(-1, -2).reshape(n, c, 1, 1), None)


def _max_reduce(ctx, x: TensorRef, dims, keepdim: bool) -> TensorRef:
    dims = sorted({d % x.ndim for d in dims})
    keep = [d for d in range(x.ndim) if d not in dims]
    xp = x.permute(*dims, *keep)
    r = prod(x.shape[d] for d in dims)
    m = max_over_rows(ctx, xp.reshape(r, -1), x.source)  # (1, K)
    shape = [1 if d in dims else s for d, s in enumerate(x.shape)] if keepdim else \
        [x.shape[d] for d in keep]
    return m.reshape(*shape)


@register("aten.amax.default")
def _amax(ctx, x, dim=(), keepdim=False):
    dims = range(x.ndim) if not dim else ([dim] if isinstance(dim, int) else dim)
    return _max_reduce(ctx, x, dims, keepdim)


@register("aten.max.dim")
def _max_dim(ctx, x, dim, keepdim=False):
    _indices_unused(ctx, "max(dim)")
    return (_max_reduce(ctx, x, [dim], keepdim), None)
