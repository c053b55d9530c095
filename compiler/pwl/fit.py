"""Fitting a function with PWL segments in the epilogue's fixed-point formats.

:func:`fit_pwl` places the breakpoints (:mod:`compiler.pwl.segmentation`), fits one line per
segment (minimax or least squares, which includes the vertical bias correction: the intercept that
centres the error) and then re-fits every segment *in the integer formats*: the slope is rounded to
its signed ``SLOPE_BITS`` format and the intercept chosen optimally for the rounded slope, so that
:meth:`PwlFit.errors` reports the error the hardware makes. :func:`quantize_fit` repeats that last
step for other scales.

Integer form (``hw.numeric.pwl_apply``): ``y_int = sat_out(round_shift(k[s] * x_int + b[s], sh))``
with real input ``x = x_int * in_scale`` and real output ``y = y_int * out_scale``; a real line
``y = m x + c`` becomes ``k = m * in_scale / out_scale * 2**sh``, ``b = c / out_scale * 2**sh``.
``sh`` is the largest shift (<= ``MAX_SHIFT``) for which every ``k`` and ``b`` fits its format.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from compiler.pwl.errors import (
    PwlError,
    PwlFormatError,
    PwlRangeError,
    SegmentBudgetError,
    UnknownFunctionError,
)
from compiler.pwl.functions import FUNCTIONS, Line, PwlFunction, parameterised
from compiler.pwl.segmentation import segment
from hw.numeric import ACC_BITS, MAX_SHIFT, SLOPE_BITS, PwlTable, int_range, pwl_apply

__all__ = [
    "DEFAULT_IN_STEPS",
    "DEFAULT_WIDE_OUT_SCALE",
    "MAX_GRID",
    "MAX_SEGMENTS",
    "METRICS",
    "PwlFit",
    "default_in_scale",
    "default_out_scale",
    "fit_line",
    "fit_pwl",
    "get_function",
    "quantize_fit",
]

#: Segment budget of the smallest legal accelerator config (``AcceleratorConfig.pwl_segments``).
MAX_SEGMENTS = 64
#: Largest fitting grid accepted by :func:`fit_pwl`.
MAX_GRID = 1 << 16
#: The default ``in_scale`` makes ``[lo, hi]`` span at least this many integer input steps.
DEFAULT_IN_STEPS = 1 << 20
#: Default ``out_scale`` of wide (``out_bits=32``) results.
DEFAULT_WIDE_OUT_SCALE = 2.0**-16
METRICS = ("max", "mse")
_OUT_BITS = (8, 32)
#: Error evaluation uses every integer input if there are at most this many, else a subsample.
_DENSE_ALL = (1 << 17) + 1
_DENSE_SAMPLES = (1 << 16) + 1
_K_LO, _K_HI = int_range(SLOPE_BITS)
_B_LO, _B_HI = int_range(ACC_BITS)


def get_function(fn: str | PwlFunction) -> PwlFunction:
    """Look up a function by name (or pass a :class:`PwlFunction` through); parameterised names
    such as ``"leaky_relu(negative_slope=0.2)"`` are built on first use
    (:func:`compiler.pwl.functions.parameterised`)."""
    if isinstance(fn, PwlFunction):
        return fn
    try:
        return FUNCTIONS[fn]
    except (KeyError, TypeError):
        built = parameterised(fn) if isinstance(fn, str) else None
        if built is not None:
            return built
        raise UnknownFunctionError(
            f"unknown PWL function {fn!r}; supported: {', '.join(sorted(FUNCTIONS))}"
        ) from None


def default_in_scale(lo: float, hi: float) -> float:
    """Power of two such that ``[lo, hi]`` spans ``DEFAULT_IN_STEPS`` to twice that many steps.

    Made coarser if needed so that ``max(|lo|, |hi|) / in_scale < 2**30`` (int32 with headroom).
    """
    scale = 2.0 ** math.floor(math.log2((hi - lo) / DEFAULT_IN_STEPS))
    while max(abs(lo), abs(hi)) / scale >= 2.0**30:
        scale *= 2.0
    return scale


def default_out_scale(y_abs_max: float, out_bits: int) -> float:
    """``max|f| / 127`` over the range for int8 results (fills int8); ``2**-16`` for int32."""
    if out_bits == 32:
        return DEFAULT_WIDE_OUT_SCALE
    return (y_abs_max if y_abs_max > 0 else 1.0) / 127.0


@dataclass(frozen=True, eq=False)
class PwlFit:
    """A PWL approximation of one function over ``[lo, hi]``, in float and integer form.

    Attributes
    ----------
    name : str
        Function name.
    function : PwlFunction
        The approximated function.
    lo, hi : float
        Fitting range (the calibrated input range).
    segments : int
        Number of segments of the fit (at most the requested budget).
    metric : str
        ``"max"`` (minimax) or ``"mse"`` (least squares).
    breakpoints : numpy.ndarray
        ``segments - 1`` float breakpoints (``x >= breakpoints[i]`` selects segment ``i + 1``);
        they are ``table.breakpoints * in_scale``, i.e. they sit on integer inputs.
    slopes, intercepts : numpy.ndarray
        The float PWL's lines, one per segment.
    fixed : tuple of bool
        Whether each segment is an asymptote line (the end segments that continue past the range).
    table : hw.numeric.PwlTable or None
        The integer form for ``in_scale`` / ``out_scale`` / ``out_bits``.
    in_scale, out_scale : float
        Real value of one input / output integer step.
    out_bits : int
        8 (int8 result) or 32 (wide result).
    fit_seconds : float
        Wall time of the fit.
    """

    name: str
    function: PwlFunction
    lo: float
    hi: float
    segments: int
    metric: str
    breakpoints: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    fixed: tuple[bool, ...]
    table: PwlTable | None
    in_scale: float
    out_scale: float
    out_bits: int
    fit_seconds: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        for name in ("breakpoints", "slopes", "intercepts"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def _segment_of(self, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.breakpoints, x, side="right")

    def eval_float(self, x) -> np.ndarray:
        """The float PWL at ``x`` (float64)."""
        x = np.asarray(x, dtype=np.float64)
        s = self._segment_of(x)
        return self.slopes[s] * x + self.intercepts[s]

    def eval_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The float PWL in PyTorch, differentiable w.r.t. ``x`` (slope of its segment).

        In float64 it equals :meth:`eval_float` exactly; in lower precisions the segment choice
        can differ within a rounding step of a breakpoint.
        """
        bp = torch.tensor(self.breakpoints.tolist(), dtype=x.dtype, device=x.device)
        k = torch.tensor(self.slopes.tolist(), dtype=x.dtype, device=x.device)
        b = torch.tensor(self.intercepts.tolist(), dtype=x.dtype, device=x.device)
        s = torch.searchsorted(bp, x.detach().contiguous(), right=True)
        return k[s] * x + b[s]

    def _require_table(self) -> PwlTable:
        if self.table is None:
            raise PwlError(f"PWL fit of {self.name} has no integer table")
        return self.table

    def eval_int(self, x_int) -> np.ndarray:
        """The hardware result: ``hw.numeric.pwl_apply(x_int, table, out_bits)`` (int64)."""
        return pwl_apply(x_int, self._require_table(), self.out_bits)

    def eval_fixed(self, x_int) -> np.ndarray:
        """The epilogue's internal value before the final rounding, in real units.

        ``(k[s] * x_int + b[s]) / 2**shift * out_scale`` (float64).
        """
        t = self._require_table()
        x = np.asarray(x_int, dtype=np.int64)
        s = np.searchsorted(np.asarray(t.breakpoints, dtype=np.int64), x, side="right")
        acc = np.asarray(t.slopes, dtype=np.int64)[s] * x + np.asarray(t.intercepts, np.int64)[s]
        return acc.astype(np.float64) * (self.out_scale / 2.0**t.shift)

    def eval_points(self) -> np.ndarray:
        """The integer inputs :meth:`errors` measures on (dense over ``[lo, hi]``)."""
        bp = np.asarray(self.table.breakpoints if self.table else (), dtype=np.int64)
        return _dense_points(self.lo, self.hi, self.in_scale, np.concatenate([bp, bp - 1]))

    @cached_property
    def _errors(self) -> dict:
        x_int = self.eval_points()
        x = x_int * self.in_scale
        y = self.function(x)
        out = {"points": int(x_int.size), "out_lsb": self.out_scale}
        out["float"] = _stats(self.eval_float(x) - y, mse=True)
        if self.table is not None:
            out["fixed"] = _stats(self.eval_fixed(x_int) - y, mse=True)
            out["output"] = _stats(self.eval_int(x_int) * self.out_scale - y, mse=True)
        return out

    def errors(self) -> dict:
        """Errors against the function over a dense set of integer inputs in ``[lo, hi]``.

        Returns
        -------
        dict
            ``{"float": s, "fixed": s, "output": s, "points": n, "out_lsb": out_scale}`` where each
            ``s`` is ``{"max_abs", "mean_abs", "mse"}``: ``float`` is the float PWL, ``fixed`` the
            hardware's PWL at the epilogue's internal precision (before the final rounding),
            ``output`` the hardware's result after rounding to ``out_bits`` (and saturation).
            Inputs: every integer in range if there are at most 2**17 + 1, else 2**16 + 1 evenly
            spaced ones plus both sides of every breakpoint.
        """
        return self._errors

    def to_dict(self) -> dict:
        """JSON-serialisable summary (float and integer tables, scales, errors)."""
        t = self.table
        return {
            "name": self.name,
            "lo": self.lo,
            "hi": self.hi,
            "segments": self.segments,
            "metric": self.metric,
            "breakpoints": self.breakpoints.tolist(),
            "slopes": self.slopes.tolist(),
            "intercepts": self.intercepts.tolist(),
            "fixed": list(self.fixed),
            "in_scale": self.in_scale,
            "out_scale": self.out_scale,
            "out_bits": self.out_bits,
            "table": None
            if t is None
            else {
                "breakpoints": list(t.breakpoints),
                "slopes": list(t.slopes),
                "intercepts": list(t.intercepts),
                "shift": t.shift,
            },
            "errors": self.errors(),
        }


def _stats(err: np.ndarray, *, mse: bool) -> dict[str, float]:
    a = np.abs(err)
    out = {"max_abs": float(a.max()), "mean_abs": float(a.mean())}
    if mse:
        out["mse"] = float(np.mean(err * err))
    return out


def _int_bounds(lo: float, hi: float, in_scale: float) -> tuple[int, int]:
    """Integer inputs inside ``[lo, hi]`` (a relative 1e-9 of slack absorbs float error)."""
    tol = 1e-9 * max(1.0, abs(lo / in_scale), abs(hi / in_scale))
    return math.ceil(lo / in_scale - tol), math.floor(hi / in_scale + tol)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])]


def _dense_points(lo: float, hi: float, in_scale: float, extra: np.ndarray) -> np.ndarray:
    lo_i, hi_i = _int_bounds(lo, hi, in_scale)
    if hi_i - lo_i + 1 <= _DENSE_ALL:
        return np.arange(lo_i, hi_i + 1, dtype=np.int64)
    pts = np.rint(np.linspace(lo_i, hi_i, _DENSE_SAMPLES)).astype(np.int64)
    extra = np.asarray(extra, dtype=np.int64)
    extra = extra[(extra >= lo_i) & (extra <= hi_i)]
    return _sorted_unique(np.concatenate([pts, extra]))


def _minimax_line(x: np.ndarray, y: np.ndarray) -> Line:
    """The line minimising the max abs error on the points (golden-section on the slope).

    ``max(y - k x) - min(y - k x)`` is convex in ``k`` and minimal between the smallest and the
    largest slope of consecutive points.
    """
    if x.size == 1:
        return 0.0, float(y[0])
    xc = 0.5 * (x[0] + x[-1])
    u = x - xc
    d = np.diff(y) / np.diff(u)
    a, b = float(d.min()), float(d.max())

    def width(k: float) -> float:
        r = y - k * u
        return float(r.max() - r.min())

    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, e = b - g * (b - a), a + g * (b - a)
    wc, we = width(c), width(e)
    for _ in range(200):
        if b - a <= 1e-15 * max(abs(a), abs(b), 1e-300):
            break
        if wc <= we:
            b, e, we = e, c, wc
            c = b - g * (b - a)
            wc = width(c)
        else:
            a, c, wc = c, e, we
            e = a + g * (b - a)
            we = width(e)
    k = 0.5 * (a + b)
    r = y - k * u
    return k, 0.5 * float(r.max() + r.min()) - k * xc


def _least_squares_line(x: np.ndarray, y: np.ndarray) -> Line:
    """The least-squares line (its residuals have zero mean: no bias)."""
    if x.size == 1:
        return 0.0, float(y[0])
    xc = float(np.mean(x))
    u = x - xc
    k = float(np.dot(u, y - y.mean()) / np.dot(u, u))
    return k, float(y.mean()) - k * xc


def fit_line(x: np.ndarray, y: np.ndarray, metric: str) -> Line:
    """The best line through the points: minimax (``"max"``) or least squares (``"mse"``)."""
    return _minimax_line(x, y) if metric == "max" else _least_squares_line(x, y)


def _fit_lines(
    f, bp_int, fixed_lines, lo, hi, in_scale, grid_int, metric, starts=None
) -> list[Line]:
    """One line per segment: the fixed line, or the best line on the segment's dense inputs.

    With ``starts`` (grid index of each segment's first point), only the inputs from a segment's
    first to its last grid point count (the gaps between segments are not assigned yet).
    """
    dense = _dense_points(lo, hi, in_scale, np.concatenate([bp_int, bp_int - 1, grid_int]))
    dense_seg = np.searchsorted(bp_int, dense, side="right")
    lines: list[Line] = []
    for s, line in enumerate(fixed_lines):
        if line is None:
            inside = dense_seg == s
            if starts is not None:
                last = starts[s + 1] - 1 if s + 1 < len(starts) else grid_int.size - 1
                inside &= dense <= grid_int[last]
            xs = dense[inside] * in_scale
            line = fit_line(xs, f(xs), metric)
        lines.append(line)
    return lines


_GAP_POINTS = 4096


def _place_in_gaps(f, bp_int, lines, starts, grid_int, in_scale, metric) -> np.ndarray:
    """Move each breakpoint within its grid gap to where the two lines' errors cross.

    The segmentation only says that the grid point before a breakpoint belongs to one segment
    and the grid point at it to the next; the inputs in between go to whichever split of the gap
    minimises the error (this makes exact functions exact at their kinks on every input).
    """
    bp_int = bp_int.copy()
    for s in range(1, len(lines)):
        st = int(starts[s])
        if st == 0 or st >= grid_int.size or starts[s - 1] == st:
            continue
        a, b = int(grid_int[st - 1]), int(grid_int[st])
        if b - a <= 1:
            continue
        if b - a - 1 <= _GAP_POINTS:
            pts = np.arange(a + 1, b, dtype=np.int64)
        else:
            pts = _sorted_unique(np.rint(np.linspace(a + 1, b - 1, _GAP_POINTS)).astype(np.int64))
        x = pts * in_scale
        y = f(x)
        (kl, cl), (kr, cr) = lines[s - 1], lines[s]
        el = np.abs(kl * x + cl - y)
        er = np.abs(kr * x + cr - y)
        if metric == "max":
            left = np.concatenate([[0.0], np.maximum.accumulate(el)])
            right = np.concatenate([np.maximum.accumulate(er[::-1])[::-1], [0.0]])
            cost = np.maximum(left, right)
        else:
            left = np.concatenate([[0.0], np.cumsum(el * el)])
            right = np.concatenate([np.cumsum((er * er)[::-1])[::-1], [0.0]])
            cost = left + right
        j = int(np.argmin(cost))  # pts[:j] go left, pts[j:] right
        bp_int[s - 1] = pts[j] if j < pts.size else b
    return bp_int


def _check_scales(in_scale: float, out_scale: float, out_bits: int) -> None:
    if out_bits not in _OUT_BITS:
        raise PwlFormatError(f"out_bits {out_bits!r} is not supported; the epilogue writes 8 or 32")
    for name, v in (("in_scale", in_scale), ("out_scale", out_scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise PwlFormatError(f"{name} must be a positive finite number, got {v!r}")


def _check_inputs(fn: PwlFunction, lo: float, hi: float, in_scale: float) -> tuple[int, int]:
    lo_i, hi_i = _int_bounds(lo, hi, in_scale)
    acc_lo, acc_hi = int_range(ACC_BITS)
    if lo_i < acc_lo or hi_i > acc_hi:
        raise PwlFormatError(
            f"{fn.name} on [{lo:g}, {hi:g}] with in_scale {in_scale:g} needs inputs "
            f"{lo_i}..{hi_i}, outside int32; use a larger in_scale"
        )
    if hi_i - lo_i < 1:
        raise PwlFormatError(
            f"{fn.name} on [{lo:g}, {hi:g}] holds {max(hi_i - lo_i + 1, 0)} integer input(s) "
            f"at in_scale {in_scale:g}; need at least 2: use a smaller in_scale"
        )
    return lo_i, hi_i


def _quantize_table(
    fn: PwlFunction,
    bp_int: np.ndarray,
    lines: list[Line],
    fixed: tuple[bool, ...],
    lo: float,
    hi: float,
    in_scale: float,
    out_scale: float,
    out_bits: int,
    metric: str,
) -> PwlTable:
    """Integer table for the given segments, with ``(k, b)`` fitted in the integer formats.

    Slopes are rounded (the two neighbours each side are tried too) and intercepts chosen
    optimally for the rounded slope on the dense integer inputs of the segment; asymptote
    segments are rounded as they are (they must keep following the asymptote past the range).
    """
    x_all = _dense_points(lo, hi, in_scale, np.concatenate([bp_int, bp_int - 1]))
    y_all = fn(x_all * in_scale) / out_scale
    seg = np.searchsorted(bp_int, x_all, side="right")
    ks = np.array([m * in_scale / out_scale for m, _ in lines])
    bs = np.array([c / out_scale for _, c in lines])
    with np.errstate(divide="ignore"):
        # upper bound of the shift: every rounded k and b in range (the refit may lower it)
        room = min(
            np.min(np.log2((_K_HI + 0.5) / np.abs(ks[ks != 0]))) if np.any(ks) else MAX_SHIFT,
            np.min(np.log2((_B_HI + 0.5) / np.abs(bs[bs != 0]))) if np.any(bs) else MAX_SHIFT,
        )
    if room < 0:
        worst = int(np.argmax(np.abs(ks) / _K_HI + np.abs(bs) / _B_HI))
        raise PwlFormatError(
            f"{fn.name}: segment {worst} (slope {lines[worst][0]:g}, intercept "
            f"{lines[worst][1]:g}) does not fit int{SLOPE_BITS} slope / int{ACC_BITS} intercept "
            f"even at shift 0 with in_scale {in_scale:g}, out_scale {out_scale:g}; use a larger "
            "out_scale"
        )
    for shift in range(min(MAX_SHIFT, math.floor(room) + 1), -1, -1):
        scale = 2.0**shift
        k_round = [round(kf) for kf in ks * scale]
        if any(not _K_LO <= k <= _K_HI for k in k_round):
            continue
        k_out, b_out = [], []
        for s, (k0, bf) in enumerate(zip(k_round, bs * scale, strict=True)):
            inside = seg == s
            if fixed[s] or not np.any(inside):
                k_out.append(k0)
                b_out.append(int(round(bf)))
                continue
            xs = x_all[inside].astype(np.float64)
            ts = y_all[inside] * scale
            best = None
            for k in range(max(k0 - 2, _K_LO), min(k0 + 2, _K_HI) + 1):
                r = ts - k * xs
                if metric == "max":
                    b = round(0.5 * (float(r.max()) + float(r.min())))
                    err = float(np.max(np.abs(r - b)))
                else:
                    b = round(float(r.mean()))
                    err = float(np.mean((r - b) ** 2))
                if best is None or err < best[0]:
                    best = (err, k, b)
            k_out.append(best[1])
            b_out.append(best[2])
        if all(_B_LO <= b <= _B_HI for b in b_out):
            return PwlTable(
                breakpoints=tuple(int(v) for v in bp_int),
                slopes=tuple(k_out),
                intercepts=tuple(b_out),
                shift=shift,
            )
    raise PwlFormatError(f"{fn.name}: no shift makes the intercepts fit int{ACC_BITS}")


def fit_pwl(
    fn: str | PwlFunction,
    lo: float | None = None,
    hi: float | None = None,
    *,
    segments: int = 16,
    in_scale: float | None = None,
    out_scale: float | None = None,
    out_bits: int = 8,
    grid: int = 4096,
    metric: str = "max",
    asymptotes: bool = True,
    max_segments: int = MAX_SEGMENTS,
) -> PwlFit:
    """Fit ``fn`` on ``[lo, hi]`` with at most ``segments`` PWL segments, float and integer.

    Parameters
    ----------
    fn : str or PwlFunction
        A name from :data:`compiler.pwl.FUNCTIONS` or a function object.
    lo, hi : float, optional
        Calibrated input range; defaults to the function's ``default_range``.
    segments : int
        Segment budget (1..``max_segments``), including the asymptote end segments.
    in_scale, out_scale : float, optional
        Real value of one integer input / output step. Defaults: :func:`default_in_scale` (a
        power of two giving ``[lo, hi]`` >= 2**20 steps) and :func:`default_out_scale`
        (``max|f| / 127`` over the range for ``out_bits=8``, ``2**-16`` for 32).
    out_bits : {8, 32}
        Width of the result (int8 scratchpad value or int32 kept wide).
    grid : int
        Number of evenly spaced points of ``[lo, hi]`` (snapped to integer inputs, plus the
        function's kinks) where breakpoints may go and the segmentation error is measured.
    metric : {"max", "mse"}
        Minimise the maximum abs error or the mean squared error.
    asymptotes : bool
        Make the end segments the function's asymptotes where it has them (they then cover
        inputs beyond the range correctly); False lets every segment be fitted and extrapolate.
    max_segments : int
        The hardware's segment budget per table (``AcceleratorConfig.pwl_segments``).

    Raises
    ------
    UnknownFunctionError, PwlRangeError, SegmentBudgetError, PwlFormatError, PwlError
        On an unknown function, a bad range, a segment count outside the budget, scales or
        widths the formats cannot hold, or a bad ``grid`` / ``metric``.
    """
    t0 = time.perf_counter()
    f = get_function(fn)
    lo = f.default_range[0] if lo is None else float(lo)
    hi = f.default_range[1] if hi is None else float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise PwlRangeError(f"{f.name}: fitting range [{lo}, {hi}] must be finite with lo < hi")
    if not f.in_domain(lo, hi):
        dlo, dhi = f.domain
        raise PwlRangeError(
            f"{f.name}: fitting range [{lo:g}, {hi:g}] leaves its domain "
            f"{'(' if f.domain_open else '['}{dlo:g}, {dhi:g}{')' if math.isinf(dhi) else ']'}"
        )
    left = f.left if asymptotes else None
    right = f.right if asymptotes else None
    n_fixed = (left is not None) + (right is not None)
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)):
        raise SegmentBudgetError(f"{f.name}: segments must be an integer, got {segments!r}")
    if not 1 <= segments <= max_segments:
        raise SegmentBudgetError(
            f"{f.name}: {segments} segments requested; the hardware table holds 1..{max_segments}"
        )
    if segments < n_fixed + 1:
        raise SegmentBudgetError(
            f"{f.name}: {segments} segment(s) requested but its {n_fixed} asymptote end "
            f"segment(s) need at least {n_fixed + 1}; pass asymptotes=False for fewer"
        )
    if metric not in METRICS:
        raise PwlError(f"{f.name}: metric {metric!r} unknown; supported: {', '.join(METRICS)}")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or not (
        2 <= grid <= MAX_GRID
    ):
        raise PwlError(f"{f.name}: grid {grid!r} must be an integer in 2..{MAX_GRID}")
    if in_scale is None:
        in_scale = default_in_scale(lo, hi)
    if out_bits not in _OUT_BITS:
        raise PwlFormatError(f"out_bits {out_bits!r} is not supported; the epilogue writes 8 or 32")
    _check_scales(in_scale, 1.0 if out_scale is None else out_scale, out_bits)
    lo_i, hi_i = _check_inputs(f, lo, hi, in_scale)

    x_int = np.rint(np.linspace(lo_i, hi_i, grid)).astype(np.int64)
    kinks = [k for k in f.kinks if lo < k < hi]
    kink_int = np.rint(np.asarray(kinks, dtype=np.float64) / in_scale).astype(np.int64)
    x_int = _sorted_unique(np.concatenate([x_int, kink_int]))
    x = x_int * in_scale
    y = f(x)
    if out_scale is None:
        out_scale = default_out_scale(float(np.max(np.abs(y))), out_bits)
    seg = segment(
        x, y, int(segments), metric=metric, left=left, right=right,
        required=np.searchsorted(x_int, kink_int),
    )
    starts = seg.starts
    # segment s starts at grid point starts[s]; an empty right end segment starts past hi
    bp_int = np.array(
        [x_int[s] if s < x_int.size else hi_i + 1 for s in starts[1:]], dtype=np.int64
    )
    lines = _fit_lines(f, bp_int, seg.fixed, lo, hi, in_scale, x_int, metric, starts)
    bp_int = _place_in_gaps(f, bp_int, lines, starts, x_int, in_scale, metric)
    lines = _fit_lines(f, bp_int, seg.fixed, lo, hi, in_scale, x_int, metric)
    fixed = tuple(line is not None for line in seg.fixed)
    table = _quantize_table(
        f, bp_int, lines, fixed, lo, hi, in_scale, out_scale, out_bits, metric
    )
    return PwlFit(
        name=f.name,
        function=f,
        lo=lo,
        hi=hi,
        segments=len(lines),
        metric=metric,
        breakpoints=bp_int * in_scale,
        slopes=np.array([m for m, _ in lines]),
        intercepts=np.array([c for _, c in lines]),
        fixed=fixed,
        table=table,
        in_scale=float(in_scale),
        out_scale=float(out_scale),
        out_bits=out_bits,
        fit_seconds=time.perf_counter() - t0,
    )


def quantize_fit(
    fit: PwlFit, in_scale: float, out_scale: float, out_bits: int = 8
) -> PwlFit:
    """Re-quantise ``fit``'s float PWL for other scales / output width.

    Breakpoints become ``ceil(breakpoint / in_scale)`` (the same segment for every integer
    input), and every segment's ``(k, b)`` is re-fitted in the integer formats. The float PWL is
    kept as it is.
    """
    t0 = time.perf_counter()
    _check_scales(in_scale, out_scale, out_bits)
    _check_inputs(fit.function, fit.lo, fit.hi, in_scale)
    q = fit.breakpoints / in_scale
    near = np.rint(q)
    bp_int = np.where(np.abs(q - near) <= 1e-9 * np.maximum(1.0, np.abs(q)), near, np.ceil(q))
    acc_lo, acc_hi = int_range(ACC_BITS)
    if np.any(bp_int < acc_lo) or np.any(bp_int > acc_hi):
        raise PwlFormatError(
            f"{fit.name}: breakpoints {fit.breakpoints.tolist()} leave int32 at in_scale "
            f"{in_scale:g}"
        )
    bp_int = bp_int.astype(np.int64)
    lines = list(zip(fit.slopes.tolist(), fit.intercepts.tolist(), strict=True))
    table = _quantize_table(
        fit.function, bp_int, lines, fit.fixed, fit.lo, fit.hi, in_scale, out_scale, out_bits,
        fit.metric,
    )
    return PwlFit(
        name=fit.name,
        function=fit.function,
        lo=fit.lo,
        hi=fit.hi,
        segments=fit.segments,
        metric=fit.metric,
        breakpoints=fit.breakpoints,
        slopes=fit.slopes,
        intercepts=fit.intercepts,
        fixed=fit.fixed,
        table=table,
        in_scale=float(in_scale),
        out_scale=float(out_scale),
        out_bits=out_bits,
        fit_seconds=time.perf_counter() - t0,
    )
