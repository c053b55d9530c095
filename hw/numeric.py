"""The numeric contract: the one implementation of the accelerator's integer arithmetic.

The golden model, the compiler's integer-exact reference and the tests use these functions and
nothing else; the RTL implements the same formulas (``docs/isa.md`` states them in words). All
functions are vectorised over NumPy arrays and compute in int64, which holds every intermediate
exactly (``acc_bits + scale_bits <= 48`` and ``slope_bits + acc_bits + 1 <= 49``).

Epilogue, per element of an accumulator row (``acc`` is int32, column ``j``)::

    x = sat32( round_shift(acc * M_j, s_j) )           # requantise to a common fixed-point scale
    seg = #{ i : x >= bp[i] }                           # bp sorted ascending, n_seg - 1 entries
    y = sat_out( round_shift(k[seg] * x + b[seg], sh) ) # PWL; output scale folded into k, b, sh

``round_shift(v, s)`` rounds half up: ``floor((v + 2**(s-1)) / 2**s)`` for ``s > 0``; ``v`` for
``s == 0``. ``sat_out`` saturates to int8 (scratchpad results) or int32 (results kept wide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.errors import NmxError

__all__ = [
    "NumericError",
    "ACC_BITS",
    "MAX_SHIFT",
    "PwlTable",
    "SCALE_BITS",
    "SLOPE_BITS",
    "epilogue",
    "int_range",
    "pwl_apply",
    "pwl_segment",
    "quantize_multiplier",
    "requantize",
    "round_shift",
    "saturate",
    "wrap",
]



class NumericError(NmxError, ValueError):
    """A value the integer arithmetic cannot represent (e.g. a scale below the multiplier range)."""


ACC_BITS = 32
SCALE_BITS = 16
SLOPE_BITS = 16
#: Largest right shift the epilogue applies (both the requantisation and the PWL stage).
MAX_SHIFT = 47


def int_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a signed ``bits``-bit integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(v, bits: int) -> np.ndarray:
    """Clamp ``v`` to the signed ``bits``-bit range (int64 result)."""
    lo, hi = int_range(bits)
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def wrap(v, bits: int) -> np.ndarray:
    """Two's-complement wrap-around of ``v`` to ``bits`` bits (int64 result, ``bits`` 1..63).

    What a plain ``bits``-bit adder keeps, e.g. the accumulator's ``wrap(a + p, ACC_BITS)``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 63:
        raise ValueError(f"wrap: bits must be an integer in 1..63, got {bits!r}")
    half = np.int64(1) << np.int64(bits - 1)
    return (np.asarray(v, dtype=np.int64) + half) % (2 * half) - half


def round_shift(v, shift) -> np.ndarray:
    """Arithmetic right shift by ``shift`` (0..MAX_SHIFT) with round-half-up.

    ``shift`` may be a scalar or an array broadcastable against ``v``.
    """
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(s < 0) or np.any(s > MAX_SHIFT):
        raise ValueError(f"shift {shift!r} outside 0..{MAX_SHIFT}")
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(v + half, s)


def requantize(acc, multiplier, shift) -> np.ndarray:
    """First epilogue stage: ``sat32(round_shift(acc * multiplier, shift))``.

    ``multiplier`` is a signed ``SCALE_BITS`` integer, ``shift`` 0..MAX_SHIFT; both broadcast
    against ``acc`` (per column for per-channel scales, per row for row scaling).
    """
    m = np.asarray(multiplier, dtype=np.int64)
    lo, hi = int_range(SCALE_BITS)
    if np.any(m < lo) or np.any(m > hi):
        raise ValueError(f"multiplier outside the signed {SCALE_BITS}-bit range: {multiplier!r}")
    return saturate(round_shift(np.asarray(acc, dtype=np.int64) * m, shift), ACC_BITS)


@dataclass(frozen=True)
class PwlTable:
    """One segment table, as stored in the segment-table SRAM.

    Parameters
    ----------
    breakpoints : tuple of int
        ``n - 1`` int32 values, ascending (ties allowed: an empty segment).
    slopes : tuple of int
        ``n`` signed ``SLOPE_BITS`` slopes.
    intercepts : tuple of int
        ``n`` int32 intercepts (added before the shift).
    shift : int
        Right shift (0..MAX_SHIFT) applied to ``k * x + b``.
    """

    breakpoints: tuple[int, ...]
    slopes: tuple[int, ...]
    intercepts: tuple[int, ...]
    shift: int

    def __post_init__(self) -> None:
        n = len(self.slopes)
        if n < 1:
            raise ValueError("a PWL table needs at least one segment")
        if len(self.intercepts) != n or len(self.breakpoints) != n - 1:
            raise ValueError(
                f"PWL table with {n} slopes needs {n} intercepts and {n - 1} breakpoints, got "
                f"{len(self.intercepts)} and {len(self.breakpoints)}"
            )
        bp = np.asarray(self.breakpoints, dtype=np.int64)
        if np.any(np.diff(bp) < 0):
            raise ValueError("PWL breakpoints must be sorted ascending")
        for name, vals, bits in (
            ("breakpoint", self.breakpoints, ACC_BITS),
            ("slope", self.slopes, SLOPE_BITS),
            ("intercept", self.intercepts, ACC_BITS),
        ):
            lo, hi = int_range(bits)
            bad = [v for v in vals if not lo <= int(v) <= hi]
            if bad:
                raise ValueError(f"PWL {name} {bad[0]} outside the signed {bits}-bit range")
        if not 0 <= self.shift <= MAX_SHIFT:
            raise ValueError(f"PWL shift {self.shift} outside 0..{MAX_SHIFT}")

    @property
    def segments(self) -> int:
        """Number of segments."""
        return len(self.slopes)

    @classmethod
    def identity(cls, shift: int = 0) -> PwlTable:
        """The one-segment table ``y = round_shift(x * 2**shift, shift) == x`` (pure requant)."""
        return cls(breakpoints=(), slopes=(1 << shift,), intercepts=(0,), shift=shift)

    @classmethod
    def relu(cls) -> PwlTable:
        """Exact ReLU: ``y = 0`` for ``x < 0``, ``y = x`` otherwise."""
        return cls(breakpoints=(0,), slopes=(0, 1), intercepts=(0, 0), shift=0)


def pwl_segment(x, breakpoints) -> np.ndarray:
    """Segment index of each ``x``: the number of breakpoints ``<= x``."""
    bp = np.asarray(breakpoints, dtype=np.int64)
    return np.searchsorted(bp, np.asarray(x, dtype=np.int64), side="right")


def pwl_apply(x, table: PwlTable, out_bits: int) -> np.ndarray:
    """Second epilogue stage: ``sat_out(round_shift(k[s] * x + b[s], shift))``."""
    x = np.asarray(x, dtype=np.int64)
    seg = pwl_segment(x, table.breakpoints)
    k = np.asarray(table.slopes, dtype=np.int64)[seg]
    b = np.asarray(table.intercepts, dtype=np.int64)[seg]
    return saturate(round_shift(k * x + b, table.shift), out_bits)


def epilogue(acc, multiplier, shift, table: PwlTable, out_bits: int) -> np.ndarray:
    """The whole epilogue: :func:`requantize` then :func:`pwl_apply`."""
    return pwl_apply(requantize(acc, multiplier, shift), table, out_bits)


def quantize_multiplier(scale: float, *, max_shift: int = MAX_SHIFT) -> tuple[int, int]:
    """Integer ``(multiplier, shift)`` with ``multiplier / 2**shift`` closest to ``scale``.

    The multiplier uses the full signed ``SCALE_BITS`` range (``|m|`` in ``[2**14, 2**15)``)
    unless the shift would leave ``0..max_shift``. ``scale`` may be negative; zero gives (0, 0).
    A non-zero scale too small for ``|m| >= 2**14`` at ``shift = max_shift`` (below about
    ``2**14 / 2**max_shift``: it would lose precision, or round to a multiplier of 0) raises
    :class:`NumericError` rather than silently becoming a coarser or zero scale.
    """
    if not np.isfinite(scale):
        raise ValueError(f"scale {scale!r} is not finite")
    if scale == 0:
        return 0, 0
    _, hi = int_range(SCALE_BITS)
    mag = abs(float(scale))
    shift = 0
    while mag * (1 << (shift + 1)) <= hi and shift < max_shift:
        shift += 1
    m = int(round(mag * (1 << shift)))
    if m > hi:
        if shift == 0:
            raise ValueError(f"scale {scale!r} too large for a {SCALE_BITS}-bit multiplier")
        shift -= 1
        m = int(round(mag * (1 << shift)))
    if m < 1 << (SCALE_BITS - 2):
        raise NumericError(
            f"scale {scale!r} too small: at the largest shift {max_shift} its multiplier would be "
            f"{m}, below 2**{SCALE_BITS - 2} (the smallest representable scale is about "
            f"{(1 << (SCALE_BITS - 2)) / 2.0**max_shift:.3g})"
        )
    return (m if scale > 0 else -m), shift
