"""MSE bounds of PWL approximations (compiler.pwl.bounds): formula, bracketed optimum, the fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.pwl import (
    FUNCTIONS,
    PwlError,
    PwlFunction,
    PwlRangeError,
    SegmentBudgetError,
    fit_pwl,
)
from compiler.pwl.bounds import (
    TARGET_MSE,
    _cell_edges,
    asymptotic_mse,
    asymptotic_segments,
    curvature_integral,
    main,
    optimal_mse,
    second_derivative,
)
from hw.errors import NmxError

SQUARE = PwlFunction("square", lambda x: x * x, torch.square, (0.0, 3.0), "f'' = 2 everywhere")


def _sigmoid2(x):
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _gelu2(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) * (2.0 - x * x)


CLOSED_FORMS = {
    "tanh": lambda x: -2.0 * np.tanh(x) * (1.0 - np.tanh(x) ** 2),
    "sigmoid": _sigmoid2,
    "exp": np.exp,
    "gelu": _gelu2,
}


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)


def _sse(f, u: float, v: float) -> float:
    """Integrated squared error of the least-squares line on [u, v], computed independently.

    Composite 20-point Gauss-Legendre on 64 panels of ``r = f - chord`` in ``t = x - (u + v)/2``
    (small moments, harmless cancellation); the moments of 1, t, t^2 are exact.
    """
    if v <= u:
        return 0.0
    c, fu, fv = 0.5 * (u + v), float(f(u)), float(f(v))
    edges = np.linspace(u, v, 65)
    half = 0.5 * np.diff(edges)[:, None]
    x = (0.5 * (edges[1:] + edges[:-1]))[:, None] + half * _GL_NODES[None, :]
    w = (half * _GL_WEIGHTS[None, :]).ravel()
    x = x.ravel()
    r = f(x) - (fu + (fv - fu) * (x - u) / (v - u))
    t = x - c
    n, half_width = v - u, 0.5 * (v - u)
    a = np.array([[n, 0.0], [0.0, 2.0 * half_width**3 / 3.0]])
    rhs = np.array([w @ r, w @ (t * r)])
    return max(float(w @ (r * r) - np.linalg.solve(a, rhs) @ rhs), 0.0)


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_second_derivative_matches_closed_form(name):
    lo, hi = FUNCTIONS[name].default_range
    x = np.linspace(lo, hi, 2001)
    np.testing.assert_allclose(second_derivative(name, x), CLOSED_FORMS[name](x), rtol=1e-6,
                               atol=1e-8)


def test_curvature_integral_against_closed_form():
    # |tanh''| is even and ~2|x| at 0: with x = 8 s^5 the integrand of 2 * integral_0^8 is smooth
    s, w = np.polynomial.legendre.leggauss(200)
    s, w = 0.5 * (s + 1.0), 0.5 * w
    x = 8.0 * s**5
    exact = 2.0 * float(w @ (40.0 * s**4 * np.abs(CLOSED_FORMS["tanh"](x)) ** 0.4))
    assert curvature_integral("tanh", -8.0, 8.0) == pytest.approx(exact, rel=1e-6)


def test_formula_reproduces_the_lead_s_numbers():
    # I^5 / (720 (b - a) N^4) for tanh at N = 16, as computed independently for issue #4
    for a, mse in ((8.0, 1.33e-6), (3.0, 1.78e-6), (2.0, 9.9e-7), (10.0, 1.07e-6)):
        assert asymptotic_mse("tanh", -a, a, 16) == pytest.approx(mse, rel=6e-3)


def test_quadratic_formula_and_optimum_are_exact():
    # f'' = 2: equal widths h = 3 / N, each leaving 4 h^4 / 720 -- the formula is exact at every N
    for n in (1, 2, 4, 8):
        exact = 4.0 * (3.0 / n) ** 4 / 720.0
        assert asymptotic_mse(SQUARE, 0.0, 3.0, n) == pytest.approx(exact, rel=1e-9)
    opt = optimal_mse(SQUARE, 0.0, 3.0, 8, cells=512)  # 512 cells: the equal widths are edges
    for o in opt:
        exact = 4.0 * (3.0 / o.segments) ** 4 / 720.0
        assert o.lower <= exact <= o.upper * (1 + 1e-12)
        if 512 % o.segments == 0:
            assert o.upper == pytest.approx(exact, rel=1e-9)
    assert opt[3].breakpoints == pytest.approx((0.75, 1.5, 2.25))


def test_asymptotic_segments_is_the_smallest_n():
    for name, lo, hi in (("tanh", -8.0, 8.0), ("sigmoid", -8.0, 8.0), ("gelu", -3.0, 3.0)):
        n = asymptotic_segments(name, lo, hi, TARGET_MSE)
        assert asymptotic_mse(name, lo, hi, n) <= TARGET_MSE
        assert n == 1 or asymptotic_mse(name, lo, hi, n - 1) > TARGET_MSE
    assert asymptotic_segments("tanh", -8.0, 8.0, TARGET_MSE) == 18


def test_bracket_against_brute_force():
    """Upper and lower bound by exhaustive search on the same cells, and a continuous optimum."""
    lo, hi, n, cells = 0.25, 3.0, 3, 12
    f = FUNCTIONS["tanh"]
    opt = optimal_mse(f, lo, hi, n, cells=cells)[-1]
    g = _cell_edges(f, lo, hi, cells)
    k = cells
    sse = {(p, q): _sse(f, g[p], g[q]) for p in range(k + 1) for q in range(p, k + 1)}
    upper = min(sse[0, p] + sse[p, q] + sse[q, k]
                for p, q in itertools.combinations_with_replacement(range(k + 1), 2))
    # each breakpoint lies in a cell j; the cell itself is left out of both neighbours
    lower = min(sse[0, j1] + (sse[j1 + 1, j2] if j2 > j1 else 0.0) + sse[j2 + 1, k]
                for j1, j2 in itertools.combinations_with_replacement(range(k), 2))
    length = hi - lo
    assert opt.upper == pytest.approx(upper / length, rel=1e-7)
    assert opt.lower == pytest.approx(lower / length, rel=1e-7)
    # the upper solution's own error, recomputed
    b1, b2 = opt.breakpoints
    assert (_sse(f, lo, b1) + _sse(f, b1, b2) + _sse(f, b2, hi)) / length == pytest.approx(
        opt.upper, rel=1e-7)
    # the continuous optimum (coordinate search from the grid optimum) lies inside the bracket
    best, step = [b1, b2], g[1] - g[0]
    cost = (_sse(f, lo, best[0]) + _sse(f, best[0], best[1]) + _sse(f, best[1], hi)) / length
    while step > 1e-4:
        moved = False
        for i, d in itertools.product(range(2), (-step, step)):
            trial = list(best)
            trial[i] += d
            if not lo < trial[0] < trial[1] < hi:
                continue
            c = (_sse(f, lo, trial[0]) + _sse(f, trial[0], trial[1]) + _sse(f, trial[1], hi))
            if c / length < cost:
                best, cost, moved = trial, c / length, True
        if not moved:
            step /= 2
    assert opt.lower <= cost <= opt.upper


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["tanh", "sigmoid", "exp", "gelu"]),
    lo=st.floats(-6.0, 2.0),
    width=st.floats(0.1, 8.0),
    cells=st.integers(8, 96),
)
def test_bracket_properties(name, lo, width, cells):
    """lower <= upper, both non-increasing in N, and the upper solution really reaches upper."""
    hi = lo + width
    opt = optimal_mse(name, lo, hi, 6, cells=cells)
    for o in opt:
        assert 0.0 <= o.lower <= o.upper * (1 + 1e-9) + 1e-18
    for a, b in itertools.pairwise(opt):
        assert b.upper <= a.upper * (1 + 1e-9) + 1e-18
        assert b.lower <= a.lower * (1 + 1e-9) + 1e-18
    f = FUNCTIONS[name]
    edges = [lo, *opt[-1].breakpoints, hi]
    sse = sum(_sse(f, u, v) for u, v in itertools.pairwise(edges))
    assert sse / width == pytest.approx(opt[-1].upper, rel=1e-6, abs=1e-16)


def test_nested_grids_narrow_the_bracket():
    coarse, mid, fine = (optimal_mse("tanh", -8.0, 8.0, 16, cells=c)[-1] for c in (256, 512, 1024))
    assert coarse.lower <= mid.lower <= fine.lower <= fine.upper <= mid.upper <= coarse.upper
    assert fine.upper - fine.lower < 0.5 * (coarse.upper - coarse.lower)


def test_formula_is_approached_as_n_grows():
    """exp (f'' never 0): within 1 % at 16 segments; tanh (f'' = 0 at 0): a few % at 32."""
    exp16 = optimal_mse("exp", -4.0, 0.0, 16, cells=1024)[-1]
    assert exp16.lower <= asymptotic_mse("exp", -4.0, 0.0, 16) <= 1.01 * exp16.upper
    tanh = optimal_mse("tanh", -8.0, 8.0, 32, cells=1024)
    ratio16 = tanh[15].upper / asymptotic_mse("tanh", -8.0, 8.0, 16)
    ratio32 = tanh[31].upper / asymptotic_mse("tanh", -8.0, 8.0, 32)
    assert 0.95 < ratio16 < 1.0 and 0.95 < ratio32 < 1.0


def test_formula_overestimates_near_a_zero_of_the_second_derivative():
    """x^3 (f'' = 6x): the optimum is 10 % below the formula at N = 16, approaching it slowly."""
    cube = PwlFunction("cube", lambda x: x**3, lambda x: x**3, (-1.0, 1.0), "f'' = 6x")
    opt = optimal_mse(cube, -1.0, 1.0, 32, cells=1024)
    ratio16 = opt[15].upper / asymptotic_mse(cube, -1.0, 1.0, 16)
    ratio32 = opt[31].upper / asymptotic_mse(cube, -1.0, 1.0, 32)
    assert 0.88 < ratio16 < 0.92 < ratio32 < 0.96


@pytest.mark.parametrize("name, a", [("tanh", 2.0), ("tanh", 8.0), ("sigmoid", 4.0),
                                     ("tanh", 0.5)])
def test_fit_never_beats_the_optimum(name, a):
    """fit_pwl's MSE at 16 segments is at least the proven lower bound.

    Against the asymptotic formula, the *true* optimum at N = 16 is below it by up to 10 % for
    tanh and sigmoid over the sweep's ranges (on [-0.5, 0.5]..[-4, 4]: optimum / formula = 0.90,
    the lower bound 0.87), and by up to 22 % for gelu ([-4, 4]: 0.78), see docs/pwl.md: so the
    formula is allowed a 15 % margin here (tanh and sigmoid only), and the proven bound none (the
    1e-3 covers the fit's MSE being a mean over integer inputs, the bound an integral).
    """
    opt = optimal_mse(name, -a, a, 16, cells=1024)[-1]
    formula = asymptotic_mse(name, -a, a, 16)
    for asymptotes in (True, False):
        fit = fit_pwl(name, -a, a, segments=16, metric="mse", asymptotes=asymptotes)
        mse = fit.errors()["fixed"]["mse"]
        assert mse >= opt.lower * (1 - 1e-3)
        assert mse >= 0.85 * formula
    # and without the asymptote constraint the fit is within 1 % of the optimum
    assert mse <= 1.01 * opt.upper


def test_tanh_16_segments_cannot_meet_the_target_on_minus8_8():
    opt = optimal_mse("tanh", -8.0, 8.0, 18, cells=1024)
    assert opt[15].lower > TARGET_MSE  # no 16-segment PWL anywhere
    assert opt[16].upper <= TARGET_MSE  # 17 free segments suffice
    narrow = optimal_mse("tanh", -2.0, 2.0, 16, cells=1024)[-1]
    assert narrow.upper <= TARGET_MSE  # on [-2, 2], 16 do


@pytest.mark.parametrize("call, err", [
    (lambda: asymptotic_mse("relu", -1.0, 1.0, 4), PwlError),
    (lambda: asymptotic_mse("hardswish", -8.0, 8.0, 4), PwlError),
    (lambda: asymptotic_mse("tanh", 1.0, -1.0, 4), PwlRangeError),
    (lambda: asymptotic_mse("log", -1.0, 1.0, 4), PwlRangeError),
    (lambda: asymptotic_mse("tanh", -1.0, 1.0, 0), SegmentBudgetError),
    (lambda: asymptotic_segments("tanh", -1.0, 1.0, 0.0), PwlError),
    (lambda: optimal_mse("tanh", -1.0, 1.0, 65), SegmentBudgetError),
    (lambda: optimal_mse("tanh", -1.0, 1.0, 4, cells=1), PwlError),
    (lambda: optimal_mse("nope", -1.0, 1.0, 4), PwlError),
])
def test_bad_input_raises_nmx_errors(call, err):
    with pytest.raises(err) as info:
        call()
    assert isinstance(info.value, NmxError)


def test_sweep_command_prints_a_table(capsys):
    assert main(["--functions", "sigmoid", "--ranges", "1", "2", "--markdown", "--cells",
                 "256"]) == 0
    out = capsys.readouterr().out
    assert "| sigmoid | [-1, 1] |" in out
    assert out.count("\n| sigmoid |") == 2
    assert main(["--functions", "relu", "--ranges", "1"]) == 2
