"""The lowering registry: which aten op becomes which GEMM nodes, and the context handlers use.

A lowering is a function registered for one or more aten ops::

    from compiler.frontend.lowering.registry import register

    @register("aten.relu.default", "aten.relu_.default")
    def relu(ctx, x):
        return ctx.pointwise(x, "relu")

It is called as ``handler(ctx, *args, **kwargs)`` with the fx node's arguments mapped to

- :class:`~compiler.graph.TensorRef` for data tensors (graph inputs, host results, node outputs);
- :class:`torch.Tensor` for constants (parameters, buffers, folded constant sub-graphs): do any
  arithmetic on these in PyTorch at conversion time (that is "folding");
- plain Python values (ints, floats, lists, None, dtypes) otherwise.

It returns the op's result in the same terms (a TensorRef, a constant tensor, or a tuple of them
for multi-output ops; ``operator.getitem`` is handled by the driver). The driver checks the
returned shape against the traced one. Handlers emit nodes only through
:meth:`LoweringContext.gemm` (and the helpers built on it); raise
:meth:`LoweringContext.unsupported` for arguments they cannot handle.

Keys are ``str(op)`` of an ``OpOverload`` (``"aten.linear.default"``) or of its packet
(``"aten.linear"``, matching every overload). Ops registered with :func:`register_host` run as host
pre-processing when all their tensor arguments are host values (see :mod:`compiler.graph`).
Every module in :mod:`compiler.frontend.lowering` is imported automatically, so a new file
registers its ops
just by existing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from compiler.graph import (
    ConvertError,
    Epilogue,
    GemmNode,
    HostOp,
    MatrixGraph,
    Permute,
    Reshape,
    Slice,
    TensorRef,
    Term,
    UnsupportedOpError,
    UnsupportedShapeError,
)

__all__ = [
    "HOST_OPS",
    "LOWERINGS",
    "LoweringContext",
    "lookup",
    "register",
    "register_host",
    "supported_ops",
]

#: key -> handler
LOWERINGS: dict[str, Callable[..., Any]] = {}
#: keys of ops that may run on the host when all their tensor arguments are host values
HOST_OPS: set[str] = set()


def _key(op: Any) -> str:
    return op if isinstance(op, str) else str(op)


def register(*ops: Any) -> Callable:
    """Decorator: register a lowering for aten ops (``OpOverload``, packet, or their ``str``)."""

    def deco(fn: Callable) -> Callable:
        for op in ops:
            k = _key(op)
            if k in LOWERINGS and LOWERINGS[k] is not fn:
                raise ValueError(f"lowering for {k} registered twice ({LOWERINGS[k].__module__} "
                                 f"and {fn.__module__})")
            LOWERINGS[k] = fn
        return fn

    return deco


def register_host(*ops: Any) -> None:
    """Allow ``ops`` to run as host pre-processing (all tensor arguments host values).

    Use it only for shape/mask/index computations (``arange``, comparisons, dtype casts,
    ``embedding`` index expansion, ...): the report lists every host op.
    """
    for op in ops:
        HOST_OPS.add(_key(op))


def _packet(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) >= 3 and parts[0] == "aten" else key


def lookup(target: Any) -> Callable | None:
    """The handler for an fx target, or None."""
    k = _key(target)
    return LOWERINGS.get(k) or LOWERINGS.get(_packet(k))


def is_host_op(target: Any) -> bool:
    """Whether ``target`` may run on the host."""
    k = _key(target)
    return k in HOST_OPS or _packet(k) in HOST_OPS


def supported_ops() -> list[str]:
    """Every registered key, sorted."""
    return sorted(LOWERINGS)


class LoweringContext:
    """State shared by the lowerings of one graph: the graph being built and the current fx node.

    Attributes
    ----------
    graph : MatrixGraph
        The graph under construction.
    node : torch.fx.Node or None
        The fx node being lowered.
    module : str
        Its ``nn.Module`` qualified name.
    aten : str
        Its op (``str(node.target)``).
    segments : int or dict
        PWL segment budget(s) (for information; the fitting happens in calibration).
    """

    def __init__(self, graph: MatrixGraph, *, segments: int | dict = 16) -> None:
        self.graph = graph
        self.node = None
        self.module = ""
        self.aten = ""
        self.segments = segments
        self._counter: dict[str, int] = {}

    # ---- naming and constants -----------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """A new unique tensor name starting with ``hint``."""
        hint = hint.replace(".", "_") or "t"
        i = self._counter.get(hint, 0)
        self._counter[hint] = i + 1
        return hint if i == 0 and hint not in self._all_names() else f"{hint}_{i}"

    def _all_names(self) -> set[str]:
        g = self.graph
        return ({i.name for i in g.inputs} | {h.name for h in g.host_ops} | set(g.constants)
                | {n.name for n in g.nodes})

    def const(self, value: Any, hint: str = "const") -> TensorRef:
        """Register a constant (float32) and return a reference to it."""
        t = torch.as_tensor(value).detach().to(torch.float32).clone()
        name = self.fresh(hint)
        while name in self._all_names():
            name = self.fresh(hint)
        self.graph.constants[name] = t
        return TensorRef(name, tuple(t.shape))

    def as_ref(self, v: Any, hint: str = "const") -> TensorRef:
        """A TensorRef for a data ref or a constant tensor/number."""
        if isinstance(v, TensorRef):
            return v
        if isinstance(v, (torch.Tensor, float, int)):
            return self.const(v, hint)
        raise ConvertError(f"{self.aten} in {self.module!r}: cannot use {type(v).__name__} as a "
                           "GEMM operand")

    @staticmethod
    def is_data(v: Any) -> bool:
        """Whether ``v`` is a data tensor (not a constant)."""
        return isinstance(v, TensorRef)

    def fold(self, description: str) -> None:
        """Record a conversion-time constant computation for the report."""
        self.graph.folded.append(f"{self.module or '<top>'}: {description}")

    def unsupported(self, detail: str) -> UnsupportedShapeError:
        """An error for arguments this lowering cannot handle (``raise ctx.unsupported(...)``)."""
        err = UnsupportedShapeError(
            f"{self.aten} in module {self.module or '<top>'!r}: {detail}"
        )
        err.detail = detail
        return err

    # ---- node emission --------------------------------------------------------------------

    def gemm(
        self,
        terms: Sequence[tuple[Any, Any] | Term],
        *,
        bias: Any = None,
        function: str | None = None,
        col_scale: Any = None,
        row_scale: TensorRef | None = None,
        out_bits: int = 8,
        scale_like: str | None = None,
        hint: str | None = None,
        headroom: float = 1.0,
    ) -> TensorRef:
        """Emit one GEMM node ``epilogue(sum a @ b + bias)`` and return its output.

        Parameters
        ----------
        terms : sequence of (a, b) or Term
            Operands as TensorRef or constant tensors (registered automatically).
        bias : tensor or None
            Per-output-column real bias, broadcastable to ``(..., 1, N)``.
        function, col_scale, row_scale, out_bits, scale_like, headroom
            See :class:`~compiler.graph.Epilogue`.
        hint : str or None
            Name prefix (default: from the module path).
        """
        tt: list[Term] = []
        for t in terms:
            if isinstance(t, Term):
                tt.append(t)
            else:
                a, b = t
                tt.append(Term(self.as_ref(a, "mat"), self.as_ref(b, "mat")))
        if all(self.graph.is_const(t.a) and self.graph.is_const(t.b) for t in tt):
            raise ConvertError(f"{self.aten} in {self.module!r}: a GEMM node needs a data operand")
        shape: tuple[int, ...] | None = None
        for t in tt:
            if t.a.ndim < 2 or t.b.ndim < 2:
                raise self.unsupported(f"GEMM operands must be at least 2-D, got {t.a.shape} @ "
                                       f"{t.b.shape}")
            if t.a.shape[-1] != t.b.shape[-2]:
                raise self.unsupported(f"inner dims differ: {t.a.shape} @ {t.b.shape}")
            s = (*torch.broadcast_shapes(t.a.shape[:-2], t.b.shape[:-2]), t.a.shape[-2],
                 t.b.shape[-1])
            shape = s if shape is None else tuple(torch.broadcast_shapes(shape, s))
        bias_name = None
        if bias is not None:
            bias_t = torch.as_tensor(bias, dtype=torch.float32)
            if bias_t.ndim == 0:
                bias_t = bias_t.expand(shape[-1]).clone()
            bias_name = self.const(bias_t, "bias").source
        if isinstance(col_scale, torch.Tensor):
            col_scale = col_scale.detach().to(torch.float32)
        if out_bits not in (8, 16, 32):
            raise ValueError(f"out_bits must be 8, 16 or 32, got {out_bits}")
        if not headroom >= 1.0 or (headroom != 1.0 and out_bits != 16):
            raise ValueError(f"headroom {headroom!r}: must be >= 1, and only a 16-bit output "
                             "has any")
        name = self.fresh(hint or (self.module.replace(".", "_") or "node"))
        while name in self._all_names():
            name = self.fresh(hint or "node")
        node = GemmNode(
            name=name,
            terms=tt,
            bias=bias_name,
            epilogue=Epilogue(function=function, col_scale=col_scale, row_scale=row_scale,
                              out_bits=out_bits, scale_like=scale_like, headroom=headroom),
            shape=tuple(shape),
            module=self.module,
            aten=self.aten,
        )
        self.graph.nodes.append(node)
        return TensorRef(name, tuple(shape))

    def host(self, fn: Callable, args: tuple, kwargs: dict | None = None, *, shape, dtype,
             description: str = "") -> TensorRef:
        """Record a host pre-processing op (``fn`` over per-sample tensors); returns its result."""
        name = self.fresh("host")
        while name in self._all_names():
            name = self.fresh("host")
        self.graph.host_ops.append(HostOp(name, fn, tuple(args), dict(kwargs or {}), tuple(shape),
                                          dtype, self.module, self.aten,
                                          description or self.aten))
        return TensorRef(name, tuple(shape))

    # ---- helpers built on gemm ------------------------------------------------------------

    def combine(
        self,
        items: Sequence[tuple[TensorRef, float]],
        *,
        bias: Any = None,
        function: str | None = None,
        scale_like: str | None = None,
        out_bits: int = 8,
    ) -> TensorRef:
        """``function(sum_i c_i * x_i + bias)`` for same-shape data tensors: accumulating GEMMs
        against scaled identities (residual add, subtraction, scalar multiply, max steps).

        When all ``x_i`` are the same views of same-shaped sources (e.g. several conv outputs seen
        as NCHW), the GEMMs run on the sources' layout and the result carries the same views, so
        channels stay in the columns. ``bias`` (optional) broadcasts against the last dim of that
        layout's matrix: pass a scalar, or a vector only when no views are shared.
        """
        refs = [r for r, _ in items]
        shape = refs[0].shape
        for r in refs:
            if r.shape != shape:
                raise self.unsupported(f"element-wise operands differ in shape: "
                                       f"{[x.shape for x in refs]}")
        # element-wise work commutes with pure re-addressing (reshape, permute, slice), not with
        # views that invent elements (zero padding, im2col), where f(0) + bias need not be 0
        shared = (
            all(r.views == refs[0].views and r.source_shape == refs[0].source_shape for r in refs)
            and refs[0].views
            and all(isinstance(v, (Reshape, Permute, Slice)) for v in refs[0].views)
            and len(refs[0].source_shape) >= 2
        )
        if shared:
            base = [TensorRef(r.source, r.source_shape) for r in refs]
        else:
            base = refs
        mats = [b if b.ndim >= 2 else b.reshape(1, -1) for b in base]
        n = mats[0].shape[-1]
        eye = torch.eye(n)
        terms = [(m, eye * float(c)) for m, (_, c) in zip(mats, items, strict=True)]
        if bias is not None and shared:
            bias_t = torch.as_tensor(bias, dtype=torch.float32)
            if bias_t.ndim != 0:
                raise self.unsupported("vector bias with shared views")
        out = self.gemm(terms, bias=bias, function=function, scale_like=scale_like,
                        out_bits=out_bits)
        if shared:
            return TensorRef(out.source, out.shape, refs[0].views)
        return out.reshape(shape) if out.shape != shape else out

    def pointwise(self, x: TensorRef, function: str | None, *, scale: float = 1.0,
                  offset: float = 0.0, scale_like: str | None = None) -> TensorRef:
        """``function(scale * x + offset)`` element-wise as an identity GEMM with a PWL epilogue.

        The driver's fusion pass later folds such a node into its producer's epilogue when that
        is legal (producer epilogue is the identity, no other consumer), so emit it freely.
        """
        return self.combine([(x, scale)], bias=offset if offset else None, function=function,
                            scale_like=scale_like)

    def scaled(self, x: TensorRef, factor: float) -> TensorRef:
        """``factor * x`` (a pointwise identity node; usually fused into the producer)."""
        return self.pointwise(x, None, scale=factor)


def ceil_div(a: int, b: int) -> int:
    """Ceiling division."""
    return -(-a // b)


def prod(xs) -> int:
    """Product of ints."""
    return math.prod(int(x) for x in xs)


def raise_unsupported(op: str, module: str, detail: str = "") -> None:
    """Raise :class:`UnsupportedOpError` for ``op`` with the current supported set."""
    raise UnsupportedOpError(op, module, supported_ops(), detail)
