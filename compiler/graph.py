"""The matrix graph: a network expressed as GEMM nodes only.

Every data-dependent computation of a converted network is a :class:`GemmNode`::

    out = epilogue( sum_t  A_t @ B_t  + bias )

- each *term* ``A_t @ B_t`` is one GEMM that accumulates into the same int32 accumulator (several
  terms = accumulating GEMMs: residual adds against identity, rank-1 updates, ...);
- ``A_t`` and ``B_t`` are :class:`TensorRef` operands: a constant (weights, identity, ones,
  pooling or one-hot matrices) or a data tensor, seen through a chain of *views* (reshape,
  permute/transpose, slice, pad, im2col): addressing that the DMA does, never arithmetic;
- operands follow :func:`torch.matmul` semantics: the last two dims are the matrix, leading dims
  are batch dims (heads, groups, images) that broadcast;
- the :class:`Epilogue` scales per output column (a constant) and/or per row (a data vector
  written by an earlier node's epilogue, e.g. LayerNorm's 1/sigma), applies one PWL function by
  name (``None`` = identity) and writes int8 (or int16/int32 for row-scale vectors and outputs).

A data tensor read by GEMMs may be held at 16 bits (its producer's ``out_bits=16``): each term
reading it runs as two int8 GEMMs into the same accumulator, ``hi`` before and ``lo`` after an
in-place ``x256`` epilogue (``v = 256 hi + lo``; :mod:`compiler.quant.wide`,
:mod:`compiler.quant.precision`).

Shapes are concrete: they are those of the example inputs the graph was captured with (one
*sample*). The executors (:mod:`compiler.execute`) add one leading dimension for a stack of samples,
so every view op here acts on the *trailing* dims of whatever it is given.

Host pre-processing (:class:`HostOp`) covers the few computations that depend only on the inputs'
shapes or on non-feature inputs (attention masks, position ids, one-hot encodings of token ids):
they run in PyTorch on the host before the matrix graph and the report lists them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hw.errors import NmxError

__all__ = [
    "ConvertError",
    "Epilogue",
    "GemmNode",
    "GraphInput",
    "HostOp",
    "Im2col",
    "MatrixGraph",
    "Pad",
    "Permute",
    "Problem",
    "Reshape",
    "Slice",
    "TensorRef",
    "Term",
    "UnsupportedDtypeError",
    "UnsupportedOpError",
    "UnsupportedShapeError",
    "View",
    "summarise_problems",
]


class ConvertError(NmxError):
    """Base class of every error raised while converting a network to a matrix graph."""


#: Where a user finds the supported set and how to add to it (quoted by every unsupported-op error).
SUPPORT_HINT = ("`nmx ops` lists the supported ops; docs/compiler.md, \"Adding a lowering\", "
                "shows how to add one")


@dataclass(frozen=True)
class Problem:
    """One thing a conversion cannot do: an op with no lowering, or arguments its lowering refuses.

    Attributes
    ----------
    op : str
        The aten op (``"aten.elu.default"``).
    module : str
        Qualified ``nn.Module`` name (``""`` = top level).
    location : str
        ``file:line`` of the user's source that called it (from the capture's stack trace), or
        ``""`` when unknown.
    detail : str
        Why (empty for an op with no lowering).
    kind : str
        ``"op"`` (no lowering), ``"args"`` (unsupported arguments or shapes) or ``"dtype"``.
    downstream : bool
        Whether an operand was produced by an earlier problem (the problem may go away once
        that one is supported).
    """

    op: str
    module: str
    location: str = ""
    detail: str = ""
    kind: str = "op"
    downstream: bool = False

    def line(self) -> str:
        """One line: op, where, why."""
        where = f" at {self.location}" if self.location else ""
        why = f": {self.detail}" if self.detail else ": no lowering"
        after = " (downstream of an earlier problem)" if self.downstream else ""
        return f"{self.op} in module {self.module or '<top>'!r}{where}{why}{after}"


def summarise_problems(problems: list[Problem]) -> str:
    """A summary of all problems of one conversion: one line per (op, reason) with its count and
    first location, then the pointer to the supported set."""
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.kind, p.op, p.detail), []).append(p)
    n_ops = len({p.op for p in problems})
    lines = [f"{len(problems)} unsupported use(s) of {n_ops} op(s):"]
    for (_, op, _), ps in groups.items():
        first = ps[0]
        where = f", first at {first.location}" if first.location else ""
        why = first.detail or "no lowering"
        after = " [downstream of an earlier problem]" if all(p.downstream for p in ps) else ""
        lines.append(f"  {op} x{len(ps)}: {why} (module {first.module or '<top>'!r}{where})"
                     f"{after}")
    lines.append(SUPPORT_HINT)
    return "\n".join(lines)


class UnsupportedOpError(ConvertError, NotImplementedError):
    """Ops the conversion cannot lower: names each aten op, its module path and source location.

    ``op`` and ``module`` are those of the first problem; ``problems`` lists every one found in
    the graph (one pass), ``supported`` the registered ops (printed by ``nmx ops``, not here).
    """

    def __init__(self, op: str, module: str, supported: list[str], detail: str = "", *,
                 problems: list[Problem] | None = None) -> None:
        self.op, self.module, self.supported = op, module, sorted(supported)
        self.problems = list(problems) if problems else [Problem(op, module, "", detail)]
        if problems and len(problems) > 1:
            msg = summarise_problems(self.problems)
        else:
            p = self.problems[0]
            where = f" at {p.location}" if p.location else ""
            extra = f" ({detail or p.detail})" if (detail or p.detail) else ""
            msg = (f"unsupported op {op} in module {module or '<top>'!r}{where}{extra}; "
                   f"{SUPPORT_HINT}")
        super().__init__(msg)


class UnsupportedDtypeError(ConvertError, TypeError):
    """A tensor dtype the conversion cannot handle (names the tensor, its dtype, what is allowed).
    """


class UnsupportedShapeError(ConvertError, ValueError):
    """A shape (or op argument) the conversion cannot handle, naming the op and module."""


# --------------------------------------------------------------------------------------------
# Views: DMA addressing applied to an operand. Each acts on the trailing dims of its input, so
# the executors can prepend a sample dimension.
# --------------------------------------------------------------------------------------------


class View:
    """Base class of operand views: a pure data movement applied to the trailing dims.

    Subclasses implement :meth:`apply` (any dtype, any number of extra leading dims) and
    :attr:`ndim_in` (how many trailing dims they act on; ``None`` = all of the sample's dims).
    """

    def apply(self, t: torch.Tensor, sample_ndim: int) -> torch.Tensor:
        """Apply to ``t`` whose trailing ``sample_ndim`` dims are one sample's tensor."""
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input ``shape`` (computed on 'meta')."""
        return tuple(self.apply(torch.empty(shape, device="meta"), len(shape)).shape)


@dataclass(frozen=True)
class Reshape(View):
    """Reshape one sample to ``shape`` (row-major, like :meth:`torch.Tensor.reshape`)."""

    shape: tuple[int, ...]

    def apply(self, t, sample_ndim):
        lead = t.shape[: t.ndim - sample_ndim]
        return t.reshape((*lead, *self.shape))


@dataclass(frozen=True)
class Permute(View):
    """Permute one sample's dims (``dims`` index the sample's dims, non-negative)."""

    dims: tuple[int, ...]

    def apply(self, t, sample_ndim):
        nl = t.ndim - sample_ndim
        return t.permute(*range(nl), *(nl + d for d in self.dims))


@dataclass(frozen=True)
class Slice(View):
    """``t[..., start:stop:step, ...]`` along sample dim ``dim`` (non-negative)."""

    dim: int
    start: int
    stop: int
    step: int = 1

    def apply(self, t, sample_ndim):
        d = t.ndim - sample_ndim + self.dim
        idx = [slice(None)] * t.ndim
        idx[d] = slice(self.start, self.stop, self.step)
        return t[tuple(idx)]


@dataclass(frozen=True)
class Pad(View):
    """Padding of the trailing dims (``pads`` ordered as :func:`torch.nn.functional.pad`).

    ``mode`` is ``"zero"`` (the DMA's zero fill) or ``"replicate"`` (out-of-range addresses clamp
    to the nearest edge element; max pooling uses it, since the clamped element is itself in the
    window, so padding never wins a max).
    """

    pads: tuple[int, ...]
    mode: str = "zero"

    def apply(self, t, sample_ndim):
        if self.mode == "zero":
            return F.pad(t, self.pads)
        for i in range(len(self.pads) // 2):
            lo, hi = self.pads[2 * i], self.pads[2 * i + 1]
            d = t.ndim - 1 - i
            n = t.shape[d]
            idx = torch.arange(-lo, n + hi, device=t.device).clamp(0, n - 1)
            t = t.index_select(d, idx)
        return t


@dataclass(frozen=True)
class Im2col(View):
    """Image to columns for convolution: ``(..., C, H, W) -> (..., Ho*Wo, C*kh*kw)``.

    Rows are output positions (row-major over ``Ho, Wo``), columns follow ``weight.reshape(Cout,
    -1)``'s order ``(c, i, j)``. Zero padding, stride and dilation are DMA address patterns.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def apply(self, t, sample_ndim):
        kh, kw = self.kernel
        sh, sw = self.stride
        ph, pw = self.padding
        dh, dw = self.dilation
        if ph or pw:
            t = F.pad(t, (pw, pw, ph, ph))
        lead = t.shape[:-3]
        c, h, w = t.shape[-3:]
        ho = (h - dh * (kh - 1) - 1) // sh + 1
        wo = (w - dw * (kw - 1) - 1) // sw + 1
        cols = []
        for i, j in itertools.product(range(kh), range(kw)):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols.append(t[..., rows, j * dw : j * dw + sw * (wo - 1) + 1 : sw])
        p = torch.stack(cols, dim=-3)  # (..., C, kh*kw, Ho, Wo)
        p = p.reshape(*lead, c * kh * kw, ho * wo)
        return p.transpose(-1, -2)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRef:
    """A tensor of the matrix graph seen through a chain of views.

    Parameters
    ----------
    source : str
        Name of a graph input, host-op result, constant (``graph.constants``) or node output.
    source_shape : tuple of int
        Per-sample shape of ``source``.
    views : tuple of View
        Applied in order to the source.
    shape : tuple of int
        Per-sample shape after the views (computed; pass ``None`` to compute it).
    """

    source: str
    source_shape: tuple[int, ...]
    views: tuple[View, ...] = ()
    shape: tuple[int, ...] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.shape is None:
            shape = tuple(self.source_shape)
            for v in self.views:
                shape = v.out_shape(shape)
            object.__setattr__(self, "shape", shape)

    @property
    def ndim(self) -> int:
        """Number of per-sample dims."""
        return len(self.shape)

    def numel(self) -> int:
        """Elements per sample."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def view(self, v: View) -> TensorRef:
        """This tensor seen through one more view."""
        return TensorRef(self.source, self.source_shape, (*self.views, v))

    def reshape(self, *shape: int) -> TensorRef:
        """Reshape (one ``-1`` allowed)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(s) for s in shape)
        if -1 in shape:
            known = 1
            for s in shape:
                if s != -1:
                    known *= s
            shape = tuple(self.numel() // known if s == -1 else s for s in shape)
        if tuple(shape) == self.shape:
            return self
        return self.view(Reshape(tuple(shape)))

    def permute(self, *dims: int) -> TensorRef:
        """Permute dims (negative dims allowed)."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        dims = tuple(d % self.ndim for d in dims)
        if dims == tuple(range(self.ndim)):
            return self
        return self.view(Permute(dims))

    def transpose(self, d0: int = -2, d1: int = -1) -> TensorRef:
        """Swap two dims (default: the matrix transpose, as for Q·Kᵀ)."""
        dims = list(range(self.ndim))
        a, b = d0 % self.ndim, d1 % self.ndim
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(*dims)

    def slice(self, dim: int, start: int, stop: int, step: int = 1) -> TensorRef:
        """``t[..., start:stop:step, ...]`` along ``dim``."""
        return self.view(Slice(dim % self.ndim, start, stop, step))

    def as_matrix(self) -> TensorRef:
        """Flatten all but the last dim: ``(prod(shape[:-1]), shape[-1])``."""
        if self.ndim == 2:
            return self
        return self.reshape(-1, self.shape[-1])


@dataclass
class Term:
    """One GEMM accumulating into a node's accumulator: ``a @ b`` (matmul broadcasting).

    ``clamp`` allows the quantiser to saturate a constant operand whose scale is dictated by the
    other terms (e.g. a large additive mask); without it, overflow is an error.
    ``const_bits`` is the precision of the term's constant operand when the other one is data
    (a weight): 8 (int8, the default) or 16 (held as int8 halves ``256 hi + lo`` and run as two
    GEMMs around the node's ``x256`` epilogue, :mod:`compiler.quant.wide`); set by the precision
    policy (:func:`compiler.quant.precision.set_wide` with a ``"<node>:weights"`` name).
    """

    a: TensorRef
    b: TensorRef
    clamp: bool = False
    const_bits: int = 8


@dataclass
class Epilogue:
    """What happens to a node's int32 accumulator on its way out.

    Parameters
    ----------
    function : str or None
        PWL function name (a key of :data:`compiler.pwl.FUNCTIONS`, or the exact relu-class
        ``"relu"``/``"relu6"``), applied to ``(acc + bias) * col_scale * row_scale``; ``None`` is
        the identity (pure requantisation).
    col_scale : torch.Tensor or None
        Constant per-output-column real factor, broadcastable to ``(..., 1, N)``; a Python float is
        allowed. Folded into the per-channel requantisation multiplier.
    row_scale : TensorRef or None
        Data vector written by an earlier node (``out_bits=16``), broadcastable to ``(..., M, 1)``:
        the epilogue's per-row multiplier (LayerNorm 1/sigma, softmax 1/sum).
    out_bits : int
        8 (scratchpad int8, the default), 16 (row-scale vectors, and 16-bit GEMM operands: held
        as int8 halves ``256 hi + lo`` within ``compiler.quant.wide.WIDE_MIN .. WIDE_MAX``, each
        read as two accumulating int8 GEMMs) or 32 (wide results, e.g. network outputs; never an
        operand).
    scale_like : str or None
        Quantise the output with the same scale as this tensor (e.g. max-pool steps, so that
        ``max(a, b) = b + relu(a - b)`` is exact after a ReLU).
    fit : object or None
        The fitted PWL (:class:`compiler.pwl.PwlFit`), filled in by calibration.
    headroom : float
        How far beyond the calibrated range the node's values may go (1: not at all; only
        16-bit outputs have any): the output's full scale is ``headroom`` times its calibrated
        ``max |v|``, and a PWL function is fitted over its calibrated input range widened by
        that factor at each end (:func:`compiler.quant.quantize.fit_range`). For statistics of
        a few values (GroupNorm's group means, variances, normalised values) that a few
        calibration inputs cannot bound; 16 bits keep the step fine.
    """

    function: str | None = None
    col_scale: Any = None
    row_scale: TensorRef | None = None
    out_bits: int = 8
    scale_like: str | None = None
    fit: Any = None
    headroom: float = 1.0


@dataclass
class GemmNode:
    """``out = epilogue(sum_t a_t @ b_t + bias)``: the only kind of compute node.

    Parameters
    ----------
    name : str
        Output tensor name (unique in the graph).
    terms : list of Term
        Accumulating GEMMs; their outputs must broadcast to ``shape``.
    bias : str or None
        Constant name of a per-output-column bias, broadcastable to ``(..., 1, N)`` (int32 in the
        accumulator after quantisation).
    epilogue : Epilogue
        Scales, function and output format.
    shape : tuple of int
        Per-sample output shape ``(*batch, M, N)``.
    module : str
        Qualified name of the ``nn.Module`` the node came from (``""`` = top level).
    aten : str
        The aten op that was lowered (``"aten.conv2d.default"``, ...).
    """

    name: str
    terms: list[Term]
    bias: str | None
    epilogue: Epilogue
    shape: tuple[int, ...]
    module: str = ""
    aten: str = ""

    def macs(self) -> int:
        """Multiply-accumulates per sample (sum over terms)."""
        total = 0
        for t in self.terms:
            k = t.a.shape[-1]
            n = 1
            for s in self.shape:
                n *= s
            total += n * k
        return total


@dataclass
class GraphInput:
    """A user input of the converted model (position ``index`` in the call).

    ``bits``: how a floating-point input enters the machine: 8 (int8, the default) or 16 (the
    host writes its ``hi`` and ``lo`` int8 planes, ``256 hi + lo``, and the GEMMs reading it run
    twice, :mod:`compiler.quant.wide`); set by the precision policy
    (:func:`compiler.quant.precision.set_wide`).
    """

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    bits: int = 8


@dataclass
class HostOp:
    """Host pre-processing: ``fn(*args)`` in PyTorch, per sample, before the matrix graph.

    ``args`` holds tensor names (str wrapped in :class:`TensorRef`) and Python constants.
    """

    name: str
    fn: Any
    args: tuple
    kwargs: dict
    shape: tuple[int, ...]
    dtype: torch.dtype
    module: str = ""
    aten: str = ""
    description: str = ""


@dataclass
class MatrixGraph:
    """A converted network: inputs, host pre-processing, constants, GEMM nodes and outputs.

    ``nodes`` are in execution order. ``constants`` hold float32 (real-valued) tensors; the
    quantiser derives their integer forms. ``folded`` lists the constant computations done at
    conversion time (BatchNorm folding, constant sub-graphs) as human-readable strings.
    """

    inputs: list[GraphInput] = field(default_factory=list)
    host_ops: list[HostOp] = field(default_factory=list)
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    nodes: list[GemmNode] = field(default_factory=list)
    outputs: list[TensorRef] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    capture_method: str = ""

    def node(self, name: str) -> GemmNode:
        """The node producing ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of any named tensor."""
        for i in self.inputs:
            if i.name == name:
                return i.shape
        for h in self.host_ops:
            if h.name == name:
                return h.shape
        if name in self.constants:
            return tuple(self.constants[name].shape)
        return self.node(name).shape

    def kind_of(self, name: str) -> str:
        """``"input"``, ``"host"``, ``"const"`` or ``"node"``."""
        if any(i.name == name for i in self.inputs):
            return "input"
        if any(h.name == name for h in self.host_ops):
            return "host"
        if name in self.constants:
            return "const"
        self.node(name)
        return "node"

    def is_const(self, ref: TensorRef) -> bool:
        """Whether ``ref`` is a constant operand."""
        return ref.source in self.constants

    def const_value(self, ref: TensorRef) -> torch.Tensor:
        """The float value of a constant operand after its views."""
        t = self.constants[ref.source]
        for v in ref.views:
            t = v.apply(t, t.ndim)
        return t

    def check(self) -> None:
        """Validate the structure: only GEMM nodes, operands defined before use, shapes agree."""
        known = {i.name for i in self.inputs} | {h.name for h in self.host_ops}
        known |= set(self.constants)
        for n in self.nodes:
            if not isinstance(n, GemmNode):
                raise ConvertError(f"non-GEMM node {n!r} in the matrix graph")
            if not n.terms:
                raise ConvertError(f"node {n.name} has no GEMM term")
            for t in n.terms:
                for ref in (t.a, t.b):
                    if ref.source not in known:
                        raise ConvertError(f"node {n.name} uses {ref.source} before it is defined")
                try:
                    out = torch.broadcast_shapes(
                        (*torch.broadcast_shapes(t.a.shape[:-2], t.b.shape[:-2]),
                         t.a.shape[-2], t.b.shape[-1]),
                        n.shape,
                    )
                except RuntimeError as e:
                    raise ConvertError(f"node {n.name}: term shapes do not fit: {e}") from e
                if t.a.shape[-1] != t.b.shape[-2] or tuple(out) != tuple(n.shape):
                    raise ConvertError(
                        f"node {n.name} ({n.module}, {n.aten}): term {t.a.shape} @ {t.b.shape} "
                        f"does not give {n.shape}"
                    )
            rs = n.epilogue.row_scale
            if rs is not None and rs.source not in known:
                raise ConvertError(f"node {n.name}: row scale {rs.source} not defined before use")
            known.add(n.name)
        for o in self.outputs:
            if o.source not in known:
                raise ConvertError(f"graph output {o.source} is not defined")

    def summary(self) -> str:
        """One line per node: name, shape, terms, function, module and aten op."""
        lines = []
        for n in self.nodes:
            terms = " + ".join(f"{t.a.source}{list(t.a.shape)}@{t.b.source}{list(t.b.shape)}"
                               for t in n.terms)
            lines.append(f"{n.name} {list(n.shape)} = {n.epilogue.function or 'id'}({terms})"
                         f"  [{n.module} {n.aten}]")
        return "\n".join(lines)
