"""Piecewise-linear approximation of element-wise functions for the epilogue ("elastic" PWL).

``fit_pwl(name, lo, hi, segments=16)`` places non-uniform breakpoints optimally over the
calibrated range, fits bias-corrected lines, and rounds them into the epilogue's integer formats
(``hw.numeric.PwlTable``) with the rounding inside the fit. See ``docs/pwl.md``.
"""

from compiler.pwl.errors import (
    PwlError,
    PwlFormatError,
    PwlRangeError,
    SegmentBudgetError,
    UnknownFunctionError,
)
from compiler.pwl.fit import (
    DEFAULT_IN_STEPS,
    DEFAULT_WIDE_OUT_SCALE,
    MAX_GRID,
    MAX_SEGMENTS,
    METRICS,
    PwlFit,
    default_in_scale,
    default_out_scale,
    fit_line,
    fit_pwl,
    get_function,
    quantize_fit,
)
from compiler.pwl.functions import FUNCTIONS, Line, PwlFunction
from compiler.pwl.segmentation import Segmentation, segment

__all__ = [
    "DEFAULT_IN_STEPS",
    "DEFAULT_WIDE_OUT_SCALE",
    "FUNCTIONS",
    "Line",
    "MAX_GRID",
    "MAX_SEGMENTS",
    "METRICS",
    "PwlError",
    "PwlFit",
    "PwlFormatError",
    "PwlFunction",
    "PwlRangeError",
    "SegmentBudgetError",
    "Segmentation",
    "UnknownFunctionError",
    "default_in_scale",
    "default_out_scale",
    "fit_line",
    "fit_pwl",
    "get_function",
    "quantize_fit",
    "segment",
]
