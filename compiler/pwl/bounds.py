"""How small the mean squared error of an N-segment PWL approximation can be, and what it is.

The epilogue's segments are independent lines (no continuity constraint), so the question is the
classical one of least-squares approximation by a discontinuous piecewise-linear function with
``N`` free breakpoints (the asymptotic answer is derived below rather than cited). The error is
the mean over the calibrated range ``[lo, hi]`` (uniform weight), the metric ``nmx pwl`` reports
as "mse".

Two answers:

:func:`asymptotic_mse` (the closed form, asymptotically exact as ``N -> inf``)
    On a segment of width ``h`` centred at ``c`` the function is ``f(c) + f'(c) u + f''(c) u^2 / 2
    + O(u^3)``; the least-squares line removes the constant and linear parts, and what is left of
    ``u^2`` on ``[-h/2, h/2]`` is ``u^2 - h^2/12`` (the Legendre polynomial ``P2``), whose mean
    square is ``h^4/80 - h^4/144 = h^4/180``. So the segment's mean squared error is
    ``f''(c)^2 h^4 / 720`` and its integrated squared error ``f''(c)^2 h^5 / 720``. With ``N``
    segments distributed with density ``rho`` (``h(x) = 1 / (N rho(x))``, ``integral rho = 1``)
    the integrated error is ``integral f''^2 / (720 N^4 rho^4) dx``; minimising over ``rho`` with a
    Lagrange multiplier gives ``rho ∝ |f''|^(2/5)`` (every segment then contributes the same error)
    and the minimum ``I^5 / (720 N^4)`` with ``I = integral_lo^hi |f''(x)|^(2/5) dx``, hence::

        MSE*(N) = I^5 / (720 (hi - lo) N^4)

    (Hölder's inequality shows that no density does better, to this order.) It is exact for
    quadratics (every ``N``) and is approached by the true optimum as ``N`` grows; at finite ``N``
    the true optimum can lie on either side of it, by the higher-order terms.

:func:`optimal_mse` (the true optimum, bracketed)
    Dynamic programming over breakpoints on a fine grid of cell edges (placed with density
    ``|f''|^(2/5)`` mixed half and half with uniform), with each segment's least-squares line and
    its integrated squared error computed *exactly* (continuous moments of ``1, x, f, x f, f^2``
    by 8-point Gauss-Legendre per cell). Breakpoints restricted to the edges give an achievable
    error (``upper``). For ``lower``, every breakpoint lies in some cell; the segment on each side
    contains the part of its interval that stops at the cell's edge, and a least-squares error can
    only shrink on a sub-interval, so dropping the cell that holds each breakpoint gives a cost no
    larger than that of *any* continuous placement: ``lower <= optimum <= upper``, the gap
    shrinking with the cell width. Nothing here is asymptotic; the only approximations are
    floating-point rounding and the quadrature (the tests check the costs against an
    independent quadrature to 1e-7 relative, far inside the bracket).

``python -m compiler.pwl.bounds`` prints both next to what :func:`compiler.pwl.fit_pwl` reaches,
over symmetric ranges, and the smallest segment count that meets an MSE target (issue #4: 1e-6).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compiler.pwl.errors import PwlError, PwlRangeError, SegmentBudgetError
from compiler.pwl.fit import MAX_SEGMENTS, fit_pwl, get_function
from compiler.pwl.functions import PwlFunction

__all__ = [
    "DEFAULT_CELLS",
    "TARGET_MSE",
    "OptimalMse",
    "asymptotic_mse",
    "asymptotic_segments",
    "curvature_integral",
    "optimal_mse",
    "second_derivative",
]

#: Issue #4's target for sigmoid and tanh at 16 segments.
TARGET_MSE = 1e-6
#: Cells of the grid of :func:`optimal_mse` (its cost matrix has ``(cells + 1)^2`` entries).
DEFAULT_CELLS = 2048
#: Panels of the composite Gauss-Legendre rule for ``integral |f''|^(2/5)``.
_PANELS = 4096
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)
#: Relative step of the finite-difference second derivative.
_FD_STEP = 1e-3


def _checked(fn: str | PwlFunction, lo: float, hi: float) -> tuple[PwlFunction, float, float]:
    f = get_function(fn)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise PwlRangeError(f"{f.name}: range [{lo}, {hi}] must be finite with lo < hi")
    if not f.in_domain(lo, hi):
        raise PwlRangeError(f"{f.name}: range [{lo:g}, {hi:g}] leaves its domain {f.domain}")
    if f.kinks:
        raise PwlError(
            f"{f.name}: the MSE bounds need a smooth function (a second derivative everywhere); "
            f"{f.name} has kinks at {', '.join(f'{k:g}' for k in f.kinks)}. Supported: the "
            "functions of compiler.pwl.FUNCTIONS without kinks (e.g. tanh, sigmoid, gelu, exp)"
        )
    return f, lo, hi


def _check_segments(name: str, segments) -> int:
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise SegmentBudgetError(f"{name}: segments must be a positive integer, got {segments!r}")
    return int(segments)


def second_derivative(fn: str | PwlFunction, x) -> np.ndarray:
    """``f''(x)`` by the 5-point central difference of the function's float64 reference.

    The step is ``1e-3 * max(1, |x|)``, shrunk to stay inside a finite lower domain bound. The
    truncation error is ``h^4 f^(6) / 90`` (~1e-14 relative) and the rounding error about
    ``5 eps |f| / h^2`` (~1e-9 of ``|f|``); ``tests/test_pwl_bounds.py`` checks it against the
    closed forms of tanh, sigmoid, gelu and exp.
    """
    f = get_function(fn)
    x = np.asarray(x, dtype=np.float64)
    h = _FD_STEP * np.maximum(1.0, np.abs(x))
    dlo = f.domain[0]
    if math.isfinite(dlo):
        h = np.minimum(h, 0.4 * (x - dlo))
    fm2, fm1, f0, fp1, fp2 = (f(x + k * h) for k in (-2.0, -1.0, 0.0, 1.0, 2.0))
    return (-fm2 + 16.0 * fm1 - 30.0 * f0 + 16.0 * fp1 - fp2) / (12.0 * h * h)


def _panel_integrals(f: PwlFunction, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Panel edges and ``integral |f''|^(2/5)`` over each panel (8-point Gauss-Legendre)."""
    edges = np.linspace(lo, hi, _PANELS + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    x = mid[:, None] + half[:, None] * _NODES[None, :]
    g = np.abs(second_derivative(f, x)) ** 0.4
    return edges, half * (g @ _WEIGHTS)


def curvature_integral(fn: str | PwlFunction, lo: float, hi: float) -> float:
    """``I = integral_lo^hi |f''(x)|^(2/5) dx`` (composite 8-point Gauss-Legendre, 4096 panels)."""
    f, lo, hi = _checked(fn, lo, hi)
    return float(np.sum(_panel_integrals(f, lo, hi)[1]))


def asymptotic_mse(fn: str | PwlFunction, lo: float, hi: float, segments: int) -> float:
    """Asymptotically optimal MSE of ``segments`` free lines on ``[lo, hi]``.

    ``I^5 / (720 (hi - lo) N^4)`` with ``I = integral |f''|^(2/5)``; derivation in the module
    docstring. Not a strict lower bound at finite ``N``: see :func:`optimal_mse` for one.

    Raises
    ------
    UnknownFunctionError, PwlRangeError, PwlError, SegmentBudgetError
        Unknown function, bad range, a function with kinks, or a non-positive segment count.
    """
    f, lo, hi = _checked(fn, lo, hi)
    n = _check_segments(f.name, segments)
    return curvature_integral(f, lo, hi) ** 5 / (720.0 * (hi - lo) * n**4)


def asymptotic_segments(fn: str | PwlFunction, lo: float, hi: float, target: float) -> int:
    """Smallest ``N`` with ``asymptotic_mse(fn, lo, hi, N) <= target``."""
    f, lo, hi = _checked(fn, lo, hi)
    if not (math.isfinite(target) and target > 0):
        raise PwlError(f"{f.name}: target MSE must be positive and finite, got {target!r}")
    need = curvature_integral(f, lo, hi) ** 5 / (720.0 * (hi - lo) * target)
    n = max(1, math.ceil(need**0.25))
    while n > 1 and need / (n - 1) ** 4 <= 1.0:  # guard the root against rounding
        n -= 1
    while need / n**4 > 1.0:
        n += 1
    return n


@dataclass(frozen=True)
class OptimalMse:
    """The least MSE of ``segments`` free lines on a range, bracketed.

    Attributes
    ----------
    segments : int
        Number of lines (a solution may leave some empty: more segments never hurt).
    lower : float
        No placement of ``segments - 1`` breakpoints anywhere in the range does better.
    upper : float
        Reached by the least-squares lines on ``breakpoints``.
    breakpoints : tuple of float
        The breakpoints of the ``upper`` solution (cell edges).
    """

    segments: int
    lower: float
    upper: float
    breakpoints: tuple[float, ...]


def _cell_edges(f: PwlFunction, lo: float, hi: float, cells: int) -> np.ndarray:
    """``cells + 1`` edges at the quantiles of ``(|f''|^(2/5) / I + 1 / (hi - lo)) / 2``."""
    panel_edges, panel_int = _panel_integrals(f, lo, hi)
    cum = np.concatenate([[0.0], np.cumsum(panel_int)])
    total = cum[-1]
    mix = 0.5 * (panel_edges - lo) / (hi - lo)
    if total > 0:
        mix = mix + 0.5 * cum / total
    else:
        mix = 2.0 * mix
    edges = np.interp(np.linspace(0.0, 1.0, cells + 1), mix, panel_edges)
    edges[0], edges[-1] = lo, hi
    return edges


def _segment_costs(f: PwlFunction, edges: np.ndarray) -> np.ndarray:
    """``U[p, q]``: integrated squared error of the least-squares line on ``[edges[p], edges[q]]``.

    ``inf`` below the diagonal (a segment cannot end before it starts), 0 on it.
    """
    k = edges.size - 1
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    x = mid[:, None] + half[:, None] * _NODES[None, :]
    y = f(x)
    xc = x - 0.5 * (edges[0] + edges[-1])
    yc = y - float(np.mean(y))
    w = (half[:, None] * _WEIGHTS[None, :]).astype(np.longdouble)
    xc, yc = xc.astype(np.longdouble), yc.astype(np.longdouble)
    zero = np.zeros(1, dtype=np.longdouble)
    pre = [
        np.concatenate([zero, np.cumsum(np.sum(w * m, axis=1))])
        for m in (np.ones_like(xc), xc, yc, xc * xc, xc * yc, yc * yc)
    ]
    out = np.full((k + 1, k + 1), np.inf)
    cols = np.arange(k + 1)
    for start in range(0, k + 1, 256):
        rows = np.arange(start, min(start + 256, k + 1))
        n, sx, sy, sxx, sxy, syy = (s[None, :] - s[rows, None] for s in pre)
        with np.errstate(divide="ignore", invalid="ignore"):
            vx = sxx - sx * sx / n
            sse = (syy - sy * sy / n) - (sxy - sx * sy / n) ** 2 / vx
        upper = cols[None, :] > rows[:, None]
        out[rows] = np.where(upper, np.maximum(sse.astype(np.float64), 0.0), np.inf)
        out[rows, rows] = 0.0
    return out


def optimal_mse(
    fn: str | PwlFunction, lo: float, hi: float, segments: int, *, cells: int = DEFAULT_CELLS
) -> list[OptimalMse]:
    """The least MSE of 1, 2, ..., ``segments`` free lines on ``[lo, hi]``, each bracketed.

    Parameters
    ----------
    fn : str or PwlFunction
        A smooth function of :data:`compiler.pwl.FUNCTIONS` (or a function object).
    lo, hi : float
        The range; the MSE is the mean over it with uniform weight.
    segments : int
        Largest segment count (1..``MAX_SEGMENTS``).
    cells : int
        Cells of the breakpoint grid (2..8192); the bracket narrows as it grows, the cost matrix
        takes ``8 (cells + 1)^2`` bytes.

    Returns
    -------
    list of OptimalMse
        Entry ``n - 1`` for ``n`` segments (method in the module docstring).
    """
    f, lo, hi = _checked(fn, lo, hi)
    n_max = _check_segments(f.name, segments)
    if n_max > MAX_SEGMENTS:
        raise SegmentBudgetError(f"{f.name}: {n_max} segments; supported: 1..{MAX_SEGMENTS}")
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or not (
        2 <= cells <= 8192
    ):
        raise PwlError(f"{f.name}: cells {cells!r} must be an integer in 2..8192")
    edges = _cell_edges(f, lo, hi, int(cells))
    k = edges.size - 1
    cost = _segment_costs(f, edges)
    drop = cost[1:, :k].copy()  # drop[j, j']: from the cell after breakpoint cell j to edge j'
    np.fill_diagonal(drop, 0.0)
    length = hi - lo

    up = cost[0].copy()  # best cost of [edges[0], edges[q]] with n segments
    low = cost[0, :k].copy()  # same with the last breakpoint's cell j dropped (j = index)
    back: list[np.ndarray] = []
    results = []
    for n in range(1, n_max + 1):
        if n > 1:
            total = up[:, None] + cost
            arg = np.argmin(total, axis=0)
            back.append(arg)
            up = total[arg, np.arange(k + 1)]
        if n == 1:
            lower = cost[0, k]
        else:
            lower = float(np.min(low + cost[1:, k]))
            low = np.min(low[:, None] + drop, axis=0)
        bps = []
        q = k
        for arg in reversed(back):
            q = int(arg[q])
            bps.append(float(edges[q]))
        bps = sorted(set(b for b in bps if lo < b < hi))
        results.append(OptimalMse(n, float(lower) / length, float(up[k]) / length, tuple(bps)))
    return results


# ----------------------------------------------------------------------------- the sweep

_SWEEP_RANGES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0)
_SWEEP_FUNCTIONS = ("tanh", "sigmoid", "gelu")


def _fit_mse(name: str, lo: float, hi: float, n: int, **kw) -> float:
    """The fit's MSE as ``nmx pwl`` reports it: hardware PWL before the final rounding."""
    fit = fit_pwl(name, lo, hi, segments=n, metric="mse", **kw)
    return fit.errors()["fixed"]["mse"]


def _fit_segments(name: str, lo: float, hi: float, target: float, start: int) -> int | None:
    """Smallest segment count at which ``fit_pwl`` (``metric="mse"``) meets ``target``."""
    f = get_function(name)
    least = 1 + (f.left is not None) + (f.right is not None)
    n = max(start, least)
    if _fit_mse(name, lo, hi, n) <= target:
        while n > least and _fit_mse(name, lo, hi, n - 1) <= target:
            n -= 1
        return n
    while n < MAX_SEGMENTS:
        n += 1
        if _fit_mse(name, lo, hi, n) <= target:
            return n
    return None


def _optimal_segments(opt: Sequence[OptimalMse], target: float) -> str:
    """Smallest ``N`` meeting ``target``: exact if the bracket decides it, else ``"a-b"``."""
    surely = next((o.segments for o in opt if o.upper <= target), None)
    maybe = next((o.segments for o in opt if o.lower <= target), None)
    if surely is None:
        return f">{opt[-1].segments}" if maybe is None else f">={maybe}"
    return str(surely) if maybe == surely else f"{maybe}-{surely}"


def sweep_row(name: str, a: float, segments: int, target: float, cells: int) -> dict:
    """One row of the sweep: ``name`` on ``[-a, a]`` (``[-2a, 0]`` for exp)."""
    lo, hi = (-2.0 * a, 0.0) if name == "exp" else (-a, a)
    n_asym = asymptotic_segments(name, lo, hi, target)
    opt = optimal_mse(name, lo, hi, max(segments, n_asym + 3), cells=cells)
    o = opt[segments - 1]
    return {
        "function": name,
        "a": a,
        "range": f"[{lo:g}, {hi:g}]",
        "asymptotic": asymptotic_mse(name, lo, hi, segments),
        "lower": o.lower,
        "upper": o.upper,
        "fit": _fit_mse(name, lo, hi, segments),
        "fit_free": _fit_mse(name, lo, hi, segments, asymptotes=False),
        "n_asymptotic": n_asym,
        "n_optimal": _optimal_segments(opt, target),
        "n_fit": _fit_segments(name, lo, hi, target, n_asym),
    }


_COLUMNS = (
    ("function", "function", None),
    ("range", "range", None),
    ("asymptotic", "MSE* (formula)", "e"),
    ("lower", "optimum >=", "e"),
    ("upper", "optimum <=", "e"),
    ("fit", "fit_pwl", "e"),
    ("fit_free", "fit_pwl, no asymptotes", "e"),
    ("n_asymptotic", "N: formula", None),
    ("n_optimal", "N: optimum", None),
    ("n_fit", "N: fit_pwl", None),
)


def _cell(row: dict, key: str, fmt: str | None, target: float) -> str:
    v = row[key]
    if v is None:
        return f">{MAX_SEGMENTS}"
    if fmt == "e":
        return f"{v:.3e}" + (" ✓" if v <= target else "")
    return str(v)


def grid_check(name: str, lo: float, hi: float, segments: int) -> list[dict]:
    """``fit_pwl``'s MSE at grids 4096, 16384 and 65536, with and without asymptote ends."""
    return [
        {"grid": g, "asymptotes": asy, "mse": _fit_mse(name, lo, hi, segments, grid=g,
                                                        asymptotes=asy)}
        for g in (4096, 16384, 65536)
        for asy in (True, False)
    ]


def _mse_at(name: str, a: float, segments: int, cells: int, bound: str) -> float:
    return getattr(optimal_mse(name, -a, a, segments, cells=cells)[-1], bound)


def crossing(
    name: str, a_meets: float, a_misses: float, segments: int, target: float, *,
    cells: int = DEFAULT_CELLS, bound: str = "upper", tol: float = 0.01,
) -> tuple[float, float]:
    """Where the optimum's ``bound`` on ``[-a, a]`` crosses ``target``, by bisection on ``a``.

    Starts from a half-width where ``bound <= target`` and one where it is above; returns such a
    pair at most ``tol`` apart, ``(a_meets, a_misses)``.
    """
    if bound not in ("lower", "upper"):
        raise PwlError(f"bound {bound!r} unknown; supported: lower, upper")
    if _mse_at(name, a_meets, segments, cells, bound) > target or (
        _mse_at(name, a_misses, segments, cells, bound) <= target
    ):
        raise PwlError(
            f"{name}: [{a_meets:g}, {a_misses:g}] does not bracket MSE {target:g} ({bound} bound)"
        )
    while abs(a_misses - a_meets) > tol:
        mid = 0.5 * (a_meets + a_misses)
        if _mse_at(name, mid, segments, cells, bound) <= target:
            a_meets = mid
        else:
            a_misses = mid
    return a_meets, a_misses


def _crossings(rows: list[dict], segments: int, target: float, cells: int) -> list[str]:
    """Where, between consecutive sweep ranges, the optimum starts or stops meeting ``target``."""
    lines = []
    for i in range(1, len(rows)):
        r0, r1 = rows[i - 1], rows[i]
        if r0["function"] != r1["function"] or r0["function"] == "exp":
            continue
        for bound in ("upper", "lower"):
            meets0, meets1 = r0[bound] <= target, r1[bound] <= target
            if meets0 == meets1:
                continue
            a_meets, a_misses = (r0["a"], r1["a"]) if meets0 else (r1["a"], r0["a"])
            a_meets, a_misses = crossing(
                r0["function"], a_meets, a_misses, segments, target, cells=cells, bound=bound
            )
            head = f"{r0['function']}, N = {segments}, MSE {target:g}:"
            if bound == "upper":
                lines.append(
                    f"{head} met on [-{a_meets:.3f}, {a_meets:.3f}] (by the grid optimum); the "
                    f"grid optimum misses it on [-{a_misses:.3f}, {a_misses:.3f}]"
                )
            else:
                lines.append(
                    f"{head} no PWL meets it on [-{a_misses:.3f}, {a_misses:.3f}] (lower bound "
                    f"above it); the lower bound allows it on [-{a_meets:.3f}, {a_meets:.3f}]"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compiler.pwl.bounds``: print the sweep table and the grid check."""
    p = argparse.ArgumentParser(prog="python -m compiler.pwl.bounds", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", nargs="+", default=list(_SWEEP_FUNCTIONS),
                   help="smooth functions of compiler.pwl.FUNCTIONS (default: tanh sigmoid gelu)")
    p.add_argument("--ranges", nargs="+", type=float, default=list(_SWEEP_RANGES),
                   help="half-widths a of [-a, a] (exp: [-2a, 0])")
    p.add_argument("--segments", type=int, default=16, help="segment count N (default 16)")
    p.add_argument("--target", type=float, default=TARGET_MSE, help="MSE target (default 1e-6)")
    p.add_argument("--cells", type=int, default=DEFAULT_CELLS,
                   help="cells of the optimum's breakpoint grid (default 2048)")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--crossings", action="store_true", help="also bisect for the half-widths "
                   "where the optimum starts / stops meeting the target")
    args = p.parse_args(argv)
    try:
        rows = [
            sweep_row(name, a, args.segments, args.target, args.cells)
            for name in args.functions
            for a in args.ranges
        ]
        check = grid_check("tanh", -8.0, 8.0, args.segments) if "tanh" in args.functions else []
        notes = _crossings(rows, args.segments, args.target, args.cells) if args.crossings else []
    except PwlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    title = (
        f"MSE over \\[lo, hi] at N = {args.segments} segments; N: smallest segment count with "
        f"MSE <= {args.target:g} (✓: meets it)"
    )
    head = [label for _, label, _ in _COLUMNS]
    body = [[_cell(r, key, fmt, args.target) for key, _, fmt in _COLUMNS] for r in rows]
    check_head = ["grid", "asymptote ends", "tanh [-8, 8] MSE"]
    check_body = [[str(c["grid"]), str(c["asymptotes"]), f"{c['mse']:.4e}"] for c in check]
    if args.markdown:
        for h, b in ((head, body), (check_head, check_body)):
            if not b:
                continue
            print("| " + " | ".join(h) + " |")
            print("|" + "|".join(" --- " for _ in h) + "|")
            for r in b:
                print("| " + " | ".join(r) + " |")
            print()
        print("\n".join(notes))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    table = Table(title=title)
    for col in head:
        table.add_column(col, justify="right")
    for r in body:
        table.add_row(*r)
    console.print(table)
    if check_body:
        t2 = Table(title=f"fit_pwl (metric mse, {args.segments} segments) against its grid")
        for col in check_head:
            t2.add_column(col, justify="right")
        for r in check_body:
            t2.add_row(*r)
        console.print(t2)
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
