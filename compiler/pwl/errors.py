"""Errors raised by PWL fitting: every one is the user's to fix, so all derive from NmxError."""

from __future__ import annotations

from hw.errors import NmxError

__all__ = [
    "PwlError",
    "PwlFormatError",
    "PwlRangeError",
    "SegmentBudgetError",
    "UnknownFunctionError",
]


class PwlError(NmxError, ValueError):
    """Base class of the errors of :mod:`compiler.pwl`."""


class UnknownFunctionError(PwlError, KeyError):
    """The function name is not one of :data:`compiler.pwl.FUNCTIONS`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PwlRangeError(PwlError):
    """The fitting range is empty, not finite, or leaves the function's natural domain."""


class SegmentBudgetError(PwlError):
    """The requested number of segments is outside what the fit or the hardware supports."""


class PwlFormatError(PwlError):
    """Scales or output width that the epilogue's integer formats cannot represent."""
