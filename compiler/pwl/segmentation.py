"""Optimal placement of PWL breakpoints on a grid of input points ("elastic" segmentation).

The hardware's segments are independent lines (no continuity constraint), so a segmentation is a
partition of the sorted grid into contiguous runs, each run approximated by its own line. Two
objectives, each solved optimally over the grid:

``"max"`` (minimax error)
    The smallest ``eps`` for which a partition into ``segments`` runs exists with every run within
    ``eps`` of some line. For a fixed ``eps`` the greedy partition (each run extended as far as it
    stays feasible) uses the fewest runs, because feasibility is inherited by sub-runs; a bisection
    on ``eps`` then finds the optimum. A run ``p..q`` is feasible iff the slope interval
    ``max (y_j - y_i - 2 eps) / (x_j - x_i) <= min (y_j - y_i + 2 eps) / (x_j - x_i)`` over pairs
    ``i < j`` is non-empty, which is evaluated incrementally, in vectorised blocks.
``"mse"`` (least squares)
    Dynamic programming over candidate boundaries with the least-squares cost of every run from
    prefix sums (O(1) per run); at most :data:`DP_CANDIDATES` candidates, then every boundary is
    refined on the full grid by coordinate descent.

End segments may be *fixed lines* (the function's asymptotes): the first segment then is that line
over a prefix of the grid (possibly empty: it still serves inputs below the range), the last one a
suffix. They count towards the segment budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.pwl.functions import Line

__all__ = ["DP_CANDIDATES", "Segmentation", "segment"]

#: Largest number of candidate boundaries of the least-squares DP before local refinement.
DP_CANDIDATES = 513
_BISECTION_RTOL = 1e-4


@dataclass(frozen=True)
class Segmentation:
    """A partition of the grid into segments.

    Attributes
    ----------
    starts : numpy.ndarray
        Grid index where each segment starts (``starts[0] == 0``, non-decreasing; segment ``s``
        covers ``starts[s]:starts[s+1]``, the last one up to the end of the grid). Only fixed-line
        end segments can be empty.
    fixed : tuple
        Per segment, the :data:`Line` it must follow, or None for a fitted segment.
    cost : float
        The objective on the grid: max abs error (``"max"``) or sum of squared errors (``"mse"``).
    """

    starts: np.ndarray
    fixed: tuple[Line | None, ...]
    cost: float


def segment(
    x: np.ndarray,
    y: np.ndarray,
    segments: int,
    *,
    metric: str,
    left: Line | None = None,
    right: Line | None = None,
    required: np.ndarray | None = None,
) -> Segmentation:
    """Optimally partition the sorted grid ``x`` (values ``y``) into at most ``segments`` pieces.

    Parameters
    ----------
    x, y : numpy.ndarray
        Strictly increasing grid and function values on it.
    segments : int
        Segment budget, including the fixed-line end segments.
    metric : {"max", "mse"}
        Objective (see the module docstring).
    left, right : Line or None
        Fixed lines for the first / last segment.
    required : numpy.ndarray or None
        Grid indices that must be candidate boundaries of the least-squares DP (kinks).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_fixed = (left is not None) + (right is not None)
    free = segments - n_fixed
    if free < 1:
        raise ValueError(f"{segments} segments leave none to fit beside {n_fixed} fixed ones")
    if metric == "max":
        return _segment_minimax(x, y, free, left, right)
    if metric == "mse":
        req = np.zeros(0, dtype=np.int64) if required is None else np.asarray(required)
        return _segment_least_squares(x, y, free, left, right, req)
    raise ValueError(f"unknown metric {metric!r}")


def _line_dev(x: np.ndarray, y: np.ndarray, line: Line) -> np.ndarray:
    return np.abs(y - (line[0] * x + line[1]))


# ----------------------------------------------------------------------------- minimax


def _reach(x: np.ndarray, y: np.ndarray, start: int, end: int, two_eps: float) -> int:
    """Largest ``e <= end`` such that the run ``start:e`` fits in a strip of height ``two_eps``."""
    lower, upper = -np.inf, np.inf
    a = start + 1
    block = 32
    while a < end:
        b = min(end, a + block)
        dx = x[a:b, None] - x[None, start:b]
        dy = y[a:b, None] - y[None, start:b]
        before = np.arange(start, b)[None, :] < np.arange(a, b)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.where(before, (dy - two_eps) / dx, -np.inf).max(axis=1)
            hi = np.where(before, (dy + two_eps) / dx, np.inf).min(axis=1)
        lo = np.maximum(np.maximum.accumulate(lo), lower)
        hi = np.minimum(np.minimum.accumulate(hi), upper)
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            return a + int(bad[0])
        lower, upper = lo[-1], hi[-1]
        a = b
        block = min(2 * block, 512)
    return end


def _greedy(x, y, eps, limit, left, right):
    """Starts of the greedy partition at tolerance ``eps``, or None if it needs > ``limit`` free."""
    n = x.size
    first, last = 0, n
    if left is not None:
        bad = np.flatnonzero(_line_dev(x, y, left) > eps)
        first = int(bad[0]) if bad.size else n
    if right is not None:
        bad = np.flatnonzero(_line_dev(x, y, right) > eps)
        last = int(bad[-1]) + 1 if bad.size else 0
    starts = [0] if left is not None else []
    if first >= last:  # the fixed end lines meet: no fitted segment is needed
        return [0, last] if left is not None and right is not None else [0]
    pos = first
    free = []
    while pos < last:
        free.append(pos)
        if len(free) > limit:
            return None
        pos = _reach(x, y, pos, last, 2.0 * eps)
    starts += free
    if right is not None:
        starts.append(last)
    return starts


def _segment_minimax(x, y, free, left, right) -> Segmentation:
    scale = max(float(np.max(np.abs(y))), 1e-300)
    floor = 1e-13 * scale

    def attempt(eps):
        return _greedy(x, y, eps, free, left, right)

    best = attempt(floor)
    if best is not None:  # exact up to rounding
        return Segmentation(np.asarray(best, np.int64), _fixed_tuple(len(best), left, right), floor)
    lo, hi = floor, 0.5 * float(np.ptp(y)) * (1 + 1e-9) + floor
    best = attempt(hi)
    if best is None:
        raise AssertionError("one fitted segment must be feasible at half the value range")
    while hi - lo > _BISECTION_RTOL * hi:
        mid = np.sqrt(lo * hi) if hi > 16 * lo else 0.5 * (lo + hi)
        got = attempt(mid)
        if got is None:
            lo = mid
        else:
            hi, best = mid, got
    starts = np.asarray(best, dtype=np.int64)
    return Segmentation(starts=starts, fixed=_fixed_tuple(len(best), left, right), cost=float(hi))


def _fixed_tuple(n: int, left, right) -> tuple[Line | None, ...]:
    fixed: list[Line | None] = [None] * n
    if left is not None:
        fixed[0] = left
    if right is not None:
        fixed[-1] = right
    return tuple(fixed)


# ----------------------------------------------------------------------------- least squares


class _LeastSquares:
    """O(1) least-squares line cost of any run ``a:b`` of the grid, from prefix sums."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        xc = x - 0.5 * (x[0] + x[-1])
        yc = y - np.mean(y)
        zero = np.zeros(1)
        #: SSEs below this are rounding noise of the prefix sums (an exactly linear run).
        self.noise = 1e-12 * float(np.sum(yc * yc)) + 1e-300
        self._s = [
            np.concatenate([zero, np.cumsum(v)])
            for v in (np.ones_like(xc), xc, yc, xc * xc, xc * yc, yc * yc)
        ]

    def cost(self, a, b) -> np.ndarray:
        """Sum of squared residuals of the least-squares line on ``a:b`` (0 for < 3 points)."""
        a = np.asarray(a)
        b = np.asarray(b)
        n, sx, sy, sxx, sxy, syy = (s[b] - s[a] for s in self._s)
        with np.errstate(divide="ignore", invalid="ignore"):
            vx = sxx - sx * sx / n
            vxy = sxy - sx * sy / n
            vy = syy - sy * sy / n
            sse = vy - np.where(vx > 0, vxy * vxy / vx, 0.0)
        return np.where((n > 2) & (sse > self.noise), sse, 0.0)


def _segment_least_squares(x, y, free, left, right, required) -> Segmentation:
    n = x.size
    ls = _LeastSquares(x, y)

    def prefix_sq(line):
        return np.concatenate([[0.0], np.cumsum(_line_dev(x, y, line) ** 2)])

    left_cost = prefix_sq(left) if left is not None else None  # cost of run 0:j is [j]
    right_pre = prefix_sq(right) if right is not None else None  # run j:n is [n] - [j]

    if n + 1 <= DP_CANDIDATES:
        cand = np.arange(n + 1)
    else:
        cand = np.unique(
            np.concatenate(
                [np.rint(np.linspace(0, n, DP_CANDIDATES)).astype(np.int64), required]
            )
        )
    k = cand.size
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    # a tiny charge per non-empty run makes the DP prefer fewer segments when they tie
    cost = np.where(ii < jj, ls.cost(cand[ii], cand[jj]) + ls.noise, np.inf)
    np.fill_diagonal(cost, 0.0)  # an empty run: lets the DP use fewer segments
    if left is not None:
        d = left_cost[cand]
    else:
        d = np.full(k, np.inf)
        d[0] = 0.0
    back = []
    for _ in range(free):
        total = d[:, None] + cost
        arg = np.argmin(total, axis=0)
        back.append(arg)
        d = total[arg, np.arange(k)]
    if right is not None:
        final = d + (right_pre[n] - right_pre[cand])
    else:
        final = np.where(np.arange(k) == k - 1, d, np.inf)
    j = int(np.argmin(final))
    bounds = [j]
    for arg in reversed(back):
        j = int(arg[j])
        bounds.append(j)
    bounds = cand[np.asarray(bounds[::-1])]  # free segment m covers bounds[m]:bounds[m+1]
    free_starts = [int(a) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    starts = ([0] if left is not None else []) + free_starts
    if right is not None:
        starts.append(int(bounds[-1]))
    kinds = _fixed_tuple(len(starts), left, right)

    def run_cost(s_idx, a, b):
        line = kinds[s_idx]
        if line is None:
            return ls.cost(a, b)
        pre = left_cost if s_idx == 0 and left is not None else right_pre
        return pre[b] - pre[a]

    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], n)
    for _ in range(20):  # coordinate descent on the full grid
        moved = False
        for s in range(1, starts.size):
            a, c = starts[s - 1], ends[s]
            lo_b = a + 1 if kinds[s - 1] is None else a
            hi_b = c - 1 if kinds[s] is None else c
            if hi_b < lo_b:
                continue
            cand_b = np.arange(lo_b, hi_b + 1)
            tot = run_cost(s - 1, a, cand_b) + run_cost(s, cand_b, c)
            best = int(cand_b[np.argmin(tot)])
            if best != starts[s] and tot.min() < (
                run_cost(s - 1, a, starts[s]) + run_cost(s, starts[s], c)
            ):
                starts[s] = best
                ends[s - 1] = best
                moved = True
        if not moved:
            break
    total_cost = float(sum(run_cost(s, starts[s], ends[s]) for s in range(starts.size)))
    return Segmentation(starts=starts, fixed=kinds, cost=total_cost)
