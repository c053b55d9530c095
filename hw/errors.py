"""The base class of every error that is the user's to fix (bad config, program, model, ...).

The ``nmx`` command line prints these as one line (no traceback) and exits non-zero; any other
exception is a bug and keeps its traceback.
"""

__all__ = ["NmxError"]


class NmxError(Exception):
    """An error caused by the user's input, with a message that names what and where."""
