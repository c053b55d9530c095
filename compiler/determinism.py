"""Conversion that gives the same integers whatever the machine's thread count.

Calibration, PWL fitting and fine-tuning run float kernels (torch, and NumPy's BLAS) whose
reductions are split across threads, so their last bits (for example a tensor's calibrated
``amax``) can change with the number of threads; a scale one ulp away can round an integer
differently. :func:`single_threaded` fixes the reduction order by running the body on one thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch
from threadpoolctl import threadpool_limits

__all__ = ["single_threaded", "thread_independent"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the body with one torch intra-op thread and one BLAS/OpenMP thread (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def thread_independent(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate ``fn`` to run under :func:`single_threaded`."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with single_threaded():
            return fn(*args, **kwargs)

    return wrapper
