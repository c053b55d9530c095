"""Quantisation of a calibrated matrix graph: every number the integer executor and hardware use.

Scheme (all symmetric, zero point 0):

- **Activations** (graph inputs, host results, node outputs): one int8 scale per tensor, from the
  calibration samples by *MSE-optimal clipping*: the clip value ``c`` minimising the mean squared
  quantisation error of the observed values over candidates ``c = amax * (0.30 .. 1.00)`` (71
  steps), scale ``c / 127``. int16 row-scale vectors and int32 wide outputs use the observed
  ``amax`` (no clipping). ``scale_like`` outputs take the named tensor's scale times the smallest
  power of two ``2**k`` with ``amax <= 2**k * amax(named)`` (so max-pool steps stay exact).
- **Constant operands**: int8, with the scale the accumulator needs. A term ``data @ W`` gives ``W``
  one scale per output column (per-channel weights); a term ``W @ data`` one scale per tensor.
  When several terms accumulate into one node, their accumulator scales must agree: data x data
  terms fix it; otherwise each column's accumulator scale is the largest any term needs to keep its
  constant within int8, and the others are quantised to that scale (fewer levels). When every
  constant in a column holds a single magnitude (identity, ones, pooling matrices), the common
  scale is chosen so that all of them are as close as possible to exact integers.
- **Bias**: int32 at the accumulator scale (added into the accumulator before the epilogue).
- **Epilogue**: ``hw.numeric`` formats: per-column ``(multiplier, shift)`` from
  :func:`hw.numeric.quantize_multiplier` bring the accumulator to the PWL input scale ``x_scale``
  (the output scale itself for identity and relu-class functions, else ``max|x| / 2**15``); with a
  row scale the multiplier is the row's int16 value and the shift a constant. The PWL table comes
  from :func:`compiler.pwl.fit_pwl` (output scale folded into the slopes and intercepts), or is
  built exactly for identity/ReLU/ReLU6.
- **16-bit operands** (:mod:`compiler.quant.wide`): a node output with ``out_bits=16`` read by GEMMs
  gets scale ``WIDE_HEADROOM amax / WIDE_QMAX``, except the ``"transformer"`` policy's tensors
  (:func:`compiler.quant.precision.transformer_tensors`: residual stream, attention; headroom
  cost the zoo BERT's worst token 0.995 -> 0.977, below its 0.98 target) and tensors whose
  ``hi`` halves alone are read (``amax / WIDE_QMAX``); a graph input marked 16-bit gets
  ``WIDE_HEADROOM amax / WIDE_QMAX`` (the host writes its halves); terms reading it run as
  ``hi`` and ``lo`` GEMMs around an ``x256`` epilogue, and the node's other terms count
  ``1/256`` of their data scales.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from compiler.graph import ConvertError, GemmNode, MatrixGraph
from compiler.pwl.errors import PwlFormatError
from compiler.quant.wide import (
    HI_STEP,
    SHIFTED_SPLITS,
    WIDE_HEADROOM,
    WIDE_MAX,
    WIDE_MIN,
    WIDE_PAIR_MAX_K,
    WIDE_QMAX,
    pair_split,
    scale_group,
    weight_side,
    wide_problem,
    wide_tensors,
    wide_weights,
)
from hw.numeric import MAX_SHIFT, SCALE_BITS, PwlTable, int_range, quantize_multiplier

__all__ = ["DEFAULT_SEGMENTS", "EXACT_FUNCTIONS", "NodeQuant", "OUTPUT32_HEADROOM", "WIDE_OUTPUT",
           "QuantizationError", "QuantParams", "asymptotes_reached", "check_segments", "fit_range",
           "mse_scale", "quantize_graph", "segment_budget"]

#: Functions whose epilogue table is exact (no fit): identity, ReLU, ReLU6.
EXACT_FUNCTIONS = (None, "relu", "relu6")
_QMAX = {8: 127, 16: 32767, 32: (1 << 31) - 1}
_MULT_MAX = (1 << (SCALE_BITS - 1)) - 1
_X_BITS = 15  # PWL input precision: max|x| maps to 2**15
#: Activation clipping methods of :func:`quantize_graph`.
CLIPPING = ("mse", "max")


class QuantizationError(ConvertError):
    """A tensor or node whose quantisation cannot be represented in the hardware's formats."""


@dataclass
class TermQuant:
    """Integer constants of one term (None for data operands) and their real step sizes.

    ``split`` names the 16-bit data operand (``"a"`` or ``"b"``; None: both int8): the term runs
    as ``hi`` before and ``lo`` after the node's ``x256`` epilogue (:mod:`compiler.quant.wide`);
    ``"ab"``: both operands 16-bit (two tensors, or a self-product such as LayerNorm's
    ``Σ xc²``): ``hi·hi`` before the ``x256`` epilogue, ``hi·lo + lo·hi`` after it, ``lo·lo``
    dropped; the accumulator step is ``256 sA sB`` (:mod:`compiler.quant.wide`). ``"hh"``: a
    self-product too long for ``"ab"`` (:data:`WIDE_PAIR_MAX_K`), run as one int8 GEMM of its
    ``hi`` halves (each worth ``256`` 16-bit steps).
    ``pre_shift``: an int8 term accumulated before that epilogue (its constants are quantised
    256x coarser than the accumulator step).
    """

    a_int: torch.Tensor | None
    b_int: torch.Tensor | None
    a_scale: Any
    b_scale: Any
    split: str | None = None
    pre_shift: bool = False


@dataclass
class NodeQuant:
    """Everything the integer epilogue of one node needs.

    ``acc_scale`` (broadcastable to the node's ``(..., M, N)``) is the real value of one
    accumulator step; ``x_scale`` that of the requantised PWL input; ``out_scale`` that of the
    output integers. ``multiplier``/``shift`` are the per-column requantisation (int64 arrays
    broadcastable to the output) or, with a row scale, ``multiplier`` is None and ``shift`` the
    constant shift applied to ``acc * row_int``.
    """

    acc_scale: np.ndarray
    terms: list[TermQuant]
    bias_int: torch.Tensor | None
    x_scale: float
    out_scale: float
    out_bits: int
    multiplier: np.ndarray | None
    shift: np.ndarray
    table: PwlTable
    split_out: bool = False

    @property
    def shifted(self) -> bool:
        """Whether the node runs the ``x256`` epilogue (it reads a 16-bit operand)."""
        return any(t.split in SHIFTED_SPLITS for t in self.terms)


@dataclass
class QuantParams:
    """Scales of every data tensor and the integer parameters of every node.

    ``wide`` lists the 16-bit GEMM operand tensors (held as ``256 hi + lo``, see
    :mod:`compiler.quant.wide`), in graph order; ``wide_weights`` the nodes whose weights are
    16-bit (``"<node>:weights"``, :attr:`compiler.graph.Term.const_bits`).
    """

    scales: dict[str, float] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, NodeQuant] = field(default_factory=dict)
    wide: list[str] = field(default_factory=list)
    wide_weights: list[str] = field(default_factory=list)


def mse_scale(values: np.ndarray, bits: int = 8, steps: int = 71) -> float:
    """MSE-optimal symmetric scale for ``values`` (see the module docstring)."""
    a = np.abs(np.asarray(values, dtype=np.float64).ravel())
    amax = float(a.max()) if a.size else 0.0
    qmax = _QMAX[bits]
    if amax == 0.0:
        return 1.0 / qmax
    best, best_c = math.inf, amax
    for frac in np.linspace(0.30, 1.0, steps):
        c = amax * frac
        s = c / qmax
        q = np.clip(np.round(a / s), 0, qmax) * s
        err = float(np.mean((q - a) ** 2))
        if err < best * (1 - 1e-9):
            best, best_c = err, c
    return best_c / qmax


def _single_magnitude(c: torch.Tensor) -> bool:
    """Every column of ``c`` (..., K, N) holds one nonzero magnitude (identity-like)."""
    a = c.abs()
    mx = a.amax(dim=-2, keepdim=True)
    return bool(torch.all((a == 0) | (a == mx)))


def _quant_int(v: torch.Tensor, step, bits: int, clamp: bool, what: str) -> torch.Tensor:
    step_t = torch.as_tensor(np.asarray(step, dtype=np.float64))
    q = torch.round(v.double() / step_t)
    lo, hi = (WIDE_MIN, WIDE_MAX) if bits == 16 else int_range(bits)  # 16: the split range
    if not clamp and (q.max() > hi or q.min() < lo):
        raise QuantizationError(
            f"{what}: constant needs {int(q.abs().max())} at the accumulator scale, outside "
            f"int{bits}; the other terms fix a finer accumulator scale (set Term.clamp to allow "
            "saturation)"
        )
    return q.clamp(lo, hi).to(torch.int64)


def _acc_scales(graph: MatrixGraph, node: GemmNode, scales: dict[str, float],
                factors: list[float] | None = None, wide_consts: list[bool] | None = None):
    """Accumulator scale (array broadcastable to (..., 1, N)) and per-term constant steps.

    ``factors`` (one per term, default 1) multiply the data scales of a term: ``1/256`` for a
    term accumulated before the ``x256`` epilogue of a node with 16-bit operands.
    ``wide_consts`` (one per term, default False) marks terms whose constant is 16-bit: it needs
    ``WIDE_QMAX / 127`` times finer accumulator steps than an int8 constant.
    """
    fixed: list[float] = []
    infos = []
    b_steps: dict[int, float] = {}
    factors = [1.0] * len(node.terms) if factors is None else factors
    wide_consts = [False] * len(node.terms) if wide_consts is None else wide_consts
    finer = [127 / WIDE_QMAX if w else 1.0 for w in wide_consts]
    for t, f in zip(node.terms, factors, strict=True):
        ca, cb = graph.is_const(t.a), graph.is_const(t.b)
        if not ca and not cb:
            fixed.append(scales[t.a.source] * scales[t.b.source] * f)
            infos.append(("dd", None, None))
        elif cb and not ca:
            infos.append(("dB", scales[t.a.source] * f, graph.const_value(t.b)))
        elif ca and not cb:
            infos.append(("Ad", scales[t.b.source] * f, graph.const_value(t.a)))
        else:  # const x const: B keeps its own per-tensor scale, A adapts
            bv = graph.const_value(t.b)
            sb = float(bv.abs().max()) / 127 or 1.0
            b_steps[len(infos)] = sb
            infos.append(("AB", sb * f, graph.const_value(t.a)))
    if fixed:
        f0 = fixed[0]
        for f in fixed[1:]:
            if abs(f - f0) > 1e-9 * abs(f0):
                raise QuantizationError(
                    f"node {node.name} ({node.module}, {node.aten}): data x data terms with "
                    f"different accumulator scales {fixed}"
                )
        acc = np.asarray(f0, dtype=np.float64)
    else:
        reqs = []
        scalar = False
        ident = True
        for (kind, s, c), fine in zip(infos, finer, strict=True):
            if kind == "dB":
                m = c.abs().amax(dim=-2, keepdim=True).double().numpy()
                reqs.append(s * m * fine)
                ident &= _single_magnitude(c)
            else:
                scalar = True
                reqs.append(np.asarray(s * float(c.abs().max()) * fine))
                ident &= _single_magnitude(c.reshape(-1, 1))
        shape = np.broadcast_shapes(*[r.shape for r in reqs])
        units = np.stack([np.broadcast_to(r, shape) for r in reqs])  # (T, ..., 1, N)
        if scalar:
            units = units.reshape(len(reqs), -1).max(axis=1)
            units = units.reshape(len(reqs), *([1] * len(shape)))
        top = units.max(axis=0)
        top = np.where(top > 0, top, 1.0)
        if ident and len(reqs) > 1:
            best_cost, acc = None, None
            for d in range(127, 0, -1):
                cand = top / d
                r = units / cand
                cost = np.where(r > 0, np.abs(r - np.round(r)) / np.maximum(r, 1e-30), 0).max(0)
                if best_cost is None:
                    best_cost, acc = cost, cand
                else:
                    better = cost < best_cost - 1e-12
                    best_cost = np.where(better, cost, best_cost)
                    acc = np.where(better, cand, acc)
        else:
            acc = top / 127
    terms = []
    for i, (kind, s, _c) in enumerate(infos):
        if kind == "dd":
            terms.append(("dd", None, None))
        elif kind == "dB":
            terms.append(("dB", None, acc / s))
        else:
            a_step = float(np.max(acc)) / s
            if np.ptp(np.asarray(acc)) > 1e-12 * float(np.max(acc)):
                raise QuantizationError(
                    f"node {node.name}: a constant left operand needs one accumulator scale, "
                    "but other terms need per-column scales"
                )
            terms.append((kind, a_step, b_steps[i] if kind == "AB" else None))
    return np.asarray(acc, dtype=np.float64), terms


def _exact_table(function: str | None, ratio: float, out_scale: float) -> PwlTable:
    """Identity/ReLU/ReLU6 table mapping x (x_scale) to y (out_scale); ratio = x/out scale."""
    if abs(ratio - 1.0) < 1e-12:
        k, sh = 1, 0
    else:
        k, sh = quantize_multiplier(ratio)
        if k == 0:
            raise QuantizationError(f"PWL rescale ratio {ratio} underflows")
    if function is None:
        return PwlTable((), (k,), (0,), sh)
    if function == "relu":
        return PwlTable((0,), (0, k), (0, 0), sh)
    q6 = int(round(6.0 / out_scale))
    bp6 = int(round(6.0 / (out_scale * ratio)))
    if bp6 > int_range(32)[1] or (q6 << sh) > int_range(32)[1]:
        return PwlTable((0,), (0, k), (0, 0), sh)  # x (int32) never reaches 6: ReLU
    return PwlTable((0, bp6), (0, k, 0), (0, 0, q6 << sh), sh)


#: Largest jump onto an asymptote end segment at the calibrated range's end, as a fraction of
#: the function's change over the range (see :func:`asymptotes_reached`).
_ASYMPTOTE_JUMP = 0.01


def asymptotes_reached(function: str, lo: float, hi: float, tolerance: float) -> bool:
    """Whether ``function`` is within ``tolerance`` (or 1 % of its change over the range) of its
    asymptote line at each end of ``[lo, hi]`` that has one.

    Only then may the fit's end segments be those lines: they cover every input beyond the
    calibrated range, so an input just past ``hi`` of a sigmoid calibrated on [-1, 1] would
    otherwise jump from 0.73 to 1 (the end segments extrapolate the fit instead)."""
    from compiler.pwl import get_function

    f = get_function(function)
    ends = f(np.asarray([lo, hi], dtype=np.float64))
    tolerance = max(tolerance, _ASYMPTOTE_JUMP * float(abs(ends[1] - ends[0])))
    for end, line in ((lo, f.left), (hi, f.right)):
        if line is not None:
            slope, intercept = line
            if abs(float(f(np.asarray([end], dtype=np.float64))[0])
                   - (slope * end + intercept)) > tolerance:
                return False
    return True


#: An int32 output of an identity/ReLU-class epilogue (a network's logits) maps this many times
#: its calibrated ``max |v|`` to full scale: an input whose output exceeds every calibration
#: output (a few batches) must not saturate, and ``2**31 / 256`` steps stay far finer than the
#: int8 operands that produced it.
OUTPUT32_HEADROOM = 256.0


def fit_range(lo: float, hi: float, headroom: float = 1.0) -> tuple[float, float]:
    """The input range a PWL table is fitted over, given its calibrated ``[lo, hi]``: a
    degenerate range gets +-1e-3; with ``headroom`` > 1 (:attr:`compiler.graph.Epilogue.headroom`)
    each end moves away from the other by that factor (``[lo / h, hi * h]`` for a positive
    range, such as a variance), so inputs a little beyond the calibration set do not follow an
    end segment's line (below a convex ``1/sqrt`` it gives too small a value)."""
    if hi - lo < 1e-6:
        lo, hi = lo - 1e-3, hi + 1e-3
    if headroom > 1.0:
        lo = lo * headroom if lo < 0 else lo / headroom
        hi = hi * headroom if hi > 0 else hi / headroom
    return lo, hi


def _function_amax(function: str, lo: float, hi: float) -> float:
    """``max |f(x)|`` over ``[lo, hi]`` (dense evaluation)."""
    from compiler.pwl import get_function

    return float(np.abs(get_function(function)(np.linspace(lo, hi, 4097))).max())


def _fit(fit_pwl, function, lo, hi, segments, x_scale, out_scale, bits):
    """Fit with the node's scales; a wide (16/32-bit) output whose finest scale makes a slope
    overflow int16 gets the smallest power-of-two coarser scale that fits. The end segments are
    the function's asymptotes only where the calibrated range reaches them to within half an
    output step (:func:`asymptotes_reached`)."""
    from compiler.pwl import PwlFormatError

    if bits != 8:
        out_scale = max(out_scale, x_scale / 2**8)
    asymptotes = asymptotes_reached(function, lo, hi, out_scale / 2)
    last = None
    for _ in range(24):
        try:
            return fit_pwl(function, lo, hi, segments=segments, in_scale=x_scale,
                           out_scale=out_scale, out_bits=8 if bits == 8 else 32,
                           asymptotes=asymptotes)
        except PwlFormatError as e:
            if bits == 8:
                raise
            last = e
            out_scale *= 2
    raise QuantizationError(f"{function}: no output scale fits the PWL formats: {last}")


#: ``convert``'s default PWL segment budgets: 16 per function, 64 (the hardware's table size) for
#: the softmax and LayerNorm functions and for every function whose output is 16 bits wide (a
#: 16-bit operand or an int16 row scale: key :data:`WIDE_OUTPUT`). With 16 segments the
#: reciprocal of the softmax row sums is off by up to ~9 % relative at sums near 60
#: (docs/transformers.md); a 16-segment SiLU or Hardswish is off by about 1 % of a typical value,
#: far more than a 16-bit output step (docs/coverage.md). A table holds ``pwl_segments`` (>= 64)
#: entries whatever the budget, so 64 costs no hardware.
DEFAULT_SEGMENTS = {"*": 16, "exp": 64, "reciprocal": 64, "rsqrt": 64, "16-bit": 64}
#: Key of a per-function segment mapping for functions whose node output is 16 (or 32) bits wide,
#: unless the function has an entry of its own.
WIDE_OUTPUT = "16-bit"


def segment_budget(segments: int | Mapping[str, int], function: str, bits: int = 8) -> int:
    """PWL segment budget of ``function`` in a node with ``bits``-wide output: ``segments``
    itself, or its entry in a per-function mapping; else (outputs wider than 8 bits) the
    :data:`WIDE_OUTPUT` entry; else the ``"*"`` entry (default 16)."""
    if isinstance(segments, Mapping):
        if function in segments:
            return int(segments[function])
        if bits != 8 and WIDE_OUTPUT in segments:
            return int(segments[WIDE_OUTPUT])
        return int(segments.get("*", 16))
    return int(segments)


def check_segments(segments: int | Mapping[str, int], limit: int = 64) -> None:
    """Raise ``ValueError`` unless every budget in ``segments`` is an int in ``1..limit`` (the
    hardware's table size, ``AcceleratorConfig.pwl_segments``)."""
    values = segments.values() if isinstance(segments, Mapping) else [segments]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit:
            raise ValueError(f"segments={segments!r}: each budget must be an int in 1..{limit}")


def _table_constant_side(graph: MatrixGraph, term) -> str | None:
    """The constant operand of ``term`` held at 16 bits in a node with a 16-bit output, if any.

    A lookup, i.e. a term whose other operand is a host result (an embedding table read through
    a one-hot) or a constant (a folded position-embedding addend), passes its constant's
    rounding straight into the output (no reduction averages it), so int8 would waste the
    output's 16 bits; it costs one more GEMM pass. Constants that int8 holds exactly
    (identities, ones, pooling matrices: one magnitude) stay int8, and so do weights read by
    data (a reduction averages their rounding).
    """
    ca, cb = graph.is_const(term.a), graph.is_const(term.b)
    if cb and not ca and graph.kind_of(term.a.source) == "host":
        return None if _single_magnitude(graph.const_value(term.b)) else "b"
    if ca and (cb or graph.kind_of(term.b.source) == "host"):
        av = graph.const_value(term.a)
        return None if _single_magnitude(av.reshape(-1, 1)) else "a"
    return None


def quantize_graph(graph: MatrixGraph, stats, *, fit_cache: dict | None = None,
                   segments: int | Mapping[str, int] = 16, clipping: str = "mse") -> QuantParams:
    """Derive :class:`QuantParams` from calibration ``stats`` (:class:`compiler.execute.Stats`).

    Node outputs with ``out_bits=16`` that GEMMs read are 16-bit operands (``QuantParams.wide``):
    scale ``WIDE_HEADROOM max|v| / WIDE_QMAX`` (the split range of :mod:`compiler.quant.wide`,
    with headroom for held-out values); every node
    reading one splits that term into ``hi``/``lo`` GEMMs and accumulates its other terms before
    the ``x256`` epilogue, so their constants are quantised against ``256 x`` the accumulator step.

    Fits each PWL function over its calibrated input range (``compiler.pwl.fit_pwl``) with the
    node's scales and stores the fit in ``node.epilogue.fit``; ``fit_cache`` (for one set of
    ``stats`` and constants) keeps the fits, the MSE-optimal int8 scales and every node's
    :class:`NodeQuant` (keyed by everything it depends on) across calls, so re-quantising after
    a precision change recomputes only the nodes it touches (the search of
    :func:`compiler.quant.precision.choose_wide`); the cached objects are shared, not copied.
    ``segments`` is the budget, one for all functions or per function (:func:`segment_budget`).
    ``clipping`` selects the int8 activation scales: ``"mse"`` (MSE-optimal clipping, the
    default) or ``"max"`` (``amax / 127``).
    """
    from compiler.pwl import fit_pwl

    if clipping not in CLIPPING:
        raise ValueError(f"clipping {clipping!r} unknown; choose one of {', '.join(CLIPPING)}")

    fit_cache = {} if fit_cache is None else fit_cache

    def act_scale(name: str) -> float:
        if clipping == "max":
            return (stats.amax.get(name, 0.0) or 1.0) / 127
        key = ("mse_scale", name)  # the statistics are the same for one cache
        if key not in fit_cache:
            fit_cache[key] = mse_scale(stats.samples[name])
        return fit_cache[key]

    q = QuantParams()
    q.wide = wide_tensors(graph)
    q.wide_weights = wide_weights(graph)
    wide = set(q.wide)
    for name in q.wide:
        problem = wide_problem(graph, name)
        if problem is not None:
            raise QuantizationError(f"tensor {name} ({graph.node(name).module}) cannot be a "
                                    f"16-bit GEMM operand: {problem}")
    # no headroom for 16-bit tensors whose hi halves alone are read (long self-products), nor
    # for the "transformer" policy's tensors (module docstring)
    hi_only = {t.a.source for n in graph.nodes for t in n.terms
               if t.a.source == t.b.source and t.a.source in wide and pair_split(t) == "hh"}
    if ("transformer_tensors",) not in fit_cache:
        from compiler.quant.precision import transformer_tensors

        fit_cache[("transformer_tensors",)] = {
            m for name in transformer_tensors(graph, any_width=True)
            for m in scale_group(graph, name)}
    hi_only |= fit_cache[("transformer_tensors",)]
    for inp in graph.inputs:
        if inp.name in stats.samples:
            if inp.bits == 16:  # split by the host into hi/lo planes: no clipping
                q.scales[inp.name] = (WIDE_HEADROOM * stats.amax.get(inp.name, 0.0)
                                      or 1.0) / WIDE_QMAX
            else:
                q.scales[inp.name] = act_scale(inp.name)
            q.bits[inp.name] = inp.bits
    for h in graph.host_ops:
        if h.name in stats.samples:
            q.scales[h.name] = act_scale(h.name)
            q.bits[h.name] = 8
    for node in graph.nodes:
        ep = node.epilogue
        bits = ep.out_bits
        amax = stats.amax[node.name]
        room = ep.headroom
        if ep.function not in EXACT_FUNCTIONS and room > 1.0:  # cover the whole fitted range
            amax = max(amax, _function_amax(ep.function, *fit_range(
                *stats.fn_range[node.name], room)))
            room = 1.0
        splits = []
        for t in node.terms:
            sides = [side for side, ref in (("a", t.a), ("b", t.b)) if ref.source in wide]
            if len(sides) == 2:
                sides = [pair_split(t)]
                if sides[0] is None:
                    raise QuantizationError(
                        f"node {node.name} ({node.module}, {node.aten}): both operands of a "
                        f"data x data GEMM are 16-bit ({t.a.source}, {t.b.source}) and its "
                        f"reduction length {int(t.a.shape[-1])} exceeds {WIDE_PAIR_MAX_K}, the "
                        "longest whose hi.hi sum cannot overflow the x256 epilogue; hold one of "
                        "them at 8 bits")
            weight = weight_side(graph, t) if t.const_bits == 16 else None
            if t.const_bits not in (8, 16):
                raise QuantizationError(f"node {node.name} ({node.module}): constant operand "
                                        f"bits {t.const_bits}; supported: 8, 16")
            if weight is not None:
                # a 16-bit weight: hi/lo GEMMs, or with a 16-bit data operand hi.hi before
                # and hi.lo + lo.hi after the x256 epilogue (lo.lo dropped, as "ab")
                sides = ["ab"] if sides else [weight]
            if not sides and ep.out_bits == 16:
                side = _table_constant_side(graph, t)
                sides = [side] if side else []
            splits.append(sides[0] if sides else None)
        wide_consts = [(sp in ("a", "b") and graph.is_const(getattr(t, sp)))
                       or (sp == "ab" and (graph.is_const(t.a) or graph.is_const(t.b)))
                       for sp, t in zip(splits, node.terms, strict=True)]
        shifted = any(sp in SHIFTED_SPLITS for sp in splits)
        pre = [shifted and sp in (None, "hh") for sp in splits]
        factors = [(1 / 256 if p else 1.0) * (HI_STEP**2 if sp == "hh" else 1.0)
                   * (HI_STEP if sp == "ab" else 1.0)
                   for p, sp in zip(pre, splits, strict=True)]
        # everything below depends only on these (and on the graph's constants and the
        # statistics, fixed for one cache): a node whose key is cached is not recomputed
        deps = [r.source for t in node.terms for r in (t.a, t.b) if not graph.is_const(r)]
        deps += [ep.row_scale.source] if ep.row_scale is not None else []
        deps += [ep.scale_like] if ep.scale_like is not None else []
        memo = ("node", node.name, bits, node.name in wide, node.name in hi_only, tuple(splits),
                tuple(pre), clipping,
                None if ep.function in EXACT_FUNCTIONS
                else segment_budget(segments, ep.function, bits),
                tuple(q.scales.get(d) for d in deps))
        if memo in fit_cache:
            nq, ep.fit = fit_cache[memo]
            q.scales[node.name], q.bits[node.name], q.nodes[node.name] = nq.out_scale, bits, nq
            continue
        acc, term_steps = _acc_scales(graph, node, q.scales, factors, wide_consts)
        col = 1.0 if ep.col_scale is None else ep.col_scale
        col = np.asarray(col.double().numpy() if isinstance(col, torch.Tensor) else col,
                         dtype=np.float64)
        eff = acc * col  # real value of one accumulator step, per column
        eff_max = float(np.max(np.abs(eff)))
        if ep.scale_like is not None:
            base = q.scales[ep.scale_like]
            like_amax = stats.amax.get(ep.scale_like, 0.0)
            k = 0
            while amax > like_amax * 2**k * (1 + 1e-6) and k < 30:
                k += 1
            out_scale = base * 2**k
        elif bits == 8:
            out_scale = act_scale(node.name)
        elif node.name in wide:
            room = room if node.name in hi_only else max(room, WIDE_HEADROOM)
            out_scale = (amax * room or 1.0) / WIDE_QMAX
        else:
            if bits == 32 and ep.function in EXACT_FUNCTIONS:
                room = OUTPUT32_HEADROOM
            out_scale = (amax * room or 1.0) / _QMAX[bits]
        if bits == 32 and ep.function in EXACT_FUNCTIONS and ep.row_scale is None:
            out_scale = max(out_scale, eff_max / _MULT_MAX)
        if ep.function in EXACT_FUNCTIONS:
            x_target, x_amax = out_scale, amax
        else:
            lo, hi = fit_range(*stats.fn_range[node.name], ep.headroom)
            x_amax = max(abs(lo), abs(hi))
            x_target = max(x_amax, 1e-12) / 2**_X_BITS
        if ep.row_scale is None:
            x_scale = max(x_target, eff_max / _MULT_MAX)  # coarser: the table rescales
            mults, shifts = np.zeros(eff.shape, np.int64), np.zeros(eff.shape, np.int64)
            for idx in np.ndindex(eff.shape):
                m, s = quantize_multiplier(float(eff[idx]) / x_scale)
                mults[idx], shifts[idx] = m, s
            multiplier = mults
            shift = shifts
        else:
            if np.ptp(eff) > 1e-9 * eff_max:
                raise QuantizationError(
                    f"node {node.name} ({node.module}): a row-scaled epilogue needs one "
                    "accumulator scale for all columns"
                )
            r_scale = q.scales[ep.row_scale.source]
            base = eff_max * r_scale * (1 if float(np.max(eff)) > 0 else -1)
            if float(np.max(eff)) < 0:
                raise QuantizationError(f"node {node.name}: negative row-scaled column scale")
            # x = round_shift(acc * row_int, s) holds acc * row_int / 2**s: one step of x is
            # worth base * 2**s
            if ep.function in EXACT_FUNCTIONS:
                x_target = x_target / 2**8  # keep 8 more bits; the table rounds once, at the end
            s = int(math.floor(math.log2(x_target / abs(base)))) if base else 0
            # ... but never so fine that the calibrated PWL input (with 2x headroom) would
            # saturate the int32 requantisation result (a 16-bit operand times an int16 row
            # scale, or an int32 output, can need more than 31 bits at the target step)
            if base and x_amax > 0:
                s = max(s, math.ceil(math.log2(2 * x_amax / (abs(base) * 2**31))))
            s = min(max(s, 0), MAX_SHIFT)
            x_scale = abs(base) * 2**s
            multiplier = None
            shift = np.asarray(s, dtype=np.int64)
        # PWL table
        if ep.function in EXACT_FUNCTIONS:
            table = _exact_table(ep.function, x_scale / out_scale, out_scale)
            ep.fit = None
        else:
            lo, hi = fit_range(*stats.fn_range[node.name], ep.headroom)
            n_seg = segment_budget(segments, ep.function, bits)
            key = (ep.function, round(lo, 9), round(hi, 9), x_scale, out_scale, bits, n_seg)
            if key not in fit_cache:
                try:
                    fit_cache[key] = _fit(fit_pwl, ep.function, lo, hi, n_seg, x_scale,
                                          out_scale, bits)
                except PwlFormatError as e:
                    raise QuantizationError(
                        f"node {node.name} ({node.module}, {node.aten}): its {ep.function} "
                        f"table cannot map the accumulator step {x_scale:.3g} to its int8 "
                        f"output step {out_scale:.3g} (calibrated output range {amax:.3g}): "
                        "a slope of their ratio does not fit the int16 table format. Its "
                        "calibrated values are far below what its operands' steps resolve, "
                        "as in a network whose activations have collapsed to ~0 (random "
                        "BatchNorm statistics, for one), which is not supported: calibrate "
                        f"with inputs that reach the range the network is meant for ({e})"
                    ) from e
            ep.fit = fit_cache[key]
            out_scale = ep.fit.out_scale
            table = ep.fit.table
        # constants
        terms = []
        for (kind, a_step, b_step), t, sp in zip(term_steps, node.terms, splits, strict=True):
            what = f"node {node.name} ({node.module}, {node.aten})"
            a_bits, b_bits = (16 if sp in ("a", "ab") else 8), (16 if sp in ("b", "ab") else 8)
            if kind == "dd":
                terms.append(TermQuant(None, None, None, None))
            elif kind == "dB":
                bv = graph.const_value(t.b)
                terms.append(TermQuant(None, _quant_int(bv, b_step, b_bits, t.clamp, what), None,
                                       b_step))
            elif kind == "Ad":
                av = graph.const_value(t.a)
                terms.append(TermQuant(_quant_int(av, a_step, a_bits, t.clamp, what), None,
                                       a_step, None))
            else:
                av, bv = graph.const_value(t.a), graph.const_value(t.b)
                terms.append(TermQuant(_quant_int(av, a_step, a_bits, t.clamp, what),
                                       _quant_int(bv, b_step, b_bits, False, what), a_step,
                                       b_step))
        bias_int = None
        if node.bias is not None:
            bias_int = _quant_int(graph.constants[node.bias], acc, 32, False,
                                  f"bias of node {node.name}")
        q.scales[node.name] = out_scale
        q.bits[node.name] = bits
        for tq, sp, p in zip(terms, splits, pre, strict=True):
            tq.split, tq.pre_shift = sp, p
        q.nodes[node.name] = NodeQuant(acc, terms, bias_int, x_scale, out_scale, bits,
                                       multiplier, np.asarray(shift), table,
                                       split_out=node.name in wide)
        fit_cache[memo] = (q.nodes[node.name], ep.fit)
    return q
