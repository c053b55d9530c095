"""``nmx pwl FUNC``: fit a PWL approximation, print its tables and errors, plot it.

``nmx pwl all`` fits every function at its default range and prints one summary row each
(``--markdown`` for the table quoted in ``docs/pwl.md``).
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np

from compiler.pwl import FUNCTIONS, METRICS, PwlError, PwlFit, fit_pwl
from nmx import files

DEFAULT_PNG_DIR = Path("build/pwl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nmx pwl``."""
    parser.add_argument(
        "func", metavar="FUNC", help=f"function name ({', '.join(FUNCTIONS)}) or 'all'"
    )
    parser.add_argument("--lo", type=float, help="range start (default: the function's)")
    parser.add_argument("--hi", type=float, help="range end (default: the function's)")
    parser.add_argument("--segments", type=int, default=16, help="segment budget (default 16)")
    parser.add_argument("--out-bits", type=int, default=8, choices=(8, 32), help="result width")
    parser.add_argument("--in-scale", type=float, help="real value of one input step")
    parser.add_argument("--out-scale", type=float, help="real value of one output step")
    parser.add_argument("--metric", choices=METRICS, default="max", help="objective")
    parser.add_argument("--grid", type=int, default=4096, help="fitting grid points")
    parser.add_argument(
        "--no-asymptotes", action="store_true", help="fit the end segments instead of "
        "making them the function's asymptotes"
    )
    parser.add_argument("--png", type=Path, help="plot path (default build/pwl/FUNC_SEGMENTS.png)")
    parser.add_argument("--no-png", action="store_true", help="do not write the plot")
    parser.add_argument("--json", type=Path, help="also write the fit (tables, errors) as JSON")
    parser.add_argument(
        "--markdown", action="store_true", help="with 'all': print a markdown table"
    )


def _fit(args: argparse.Namespace, name: str, lo, hi) -> PwlFit:
    return fit_pwl(
        name, lo, hi, segments=args.segments, in_scale=args.in_scale, out_scale=args.out_scale,
        out_bits=args.out_bits, grid=args.grid, metric=args.metric,
        asymptotes=not args.no_asymptotes,
    )


def run(args: argparse.Namespace) -> int:
    """Fit, print, plot."""
    if args.func == "all":
        if args.lo is not None or args.hi is not None or args.png or args.json:
            raise PwlError("'nmx pwl all' uses each function's default range and writes no files")
        _print_summary(args, [_fit(args, name, None, None) for name in FUNCTIONS])
        return 0
    if args.png and not args.no_png:
        files.check_writable(args.png, "--png")
    if args.json:
        files.check_writable(args.json, "--json", parents=True)
    fit = _fit(args, args.func, args.lo, args.hi)
    _print_fit(fit)
    if not args.no_png:
        png = args.png or DEFAULT_PNG_DIR / f"{fit.name}_{args.segments}.png"
        plot_fit(fit, png, what="--png" if args.png else "plot")
        print(f"plot: {png}")
    if args.json:
        files.write_json(args.json, fit.to_dict(), "--json", parents=True, indent=1)
        print(f"json: {args.json}")
    return 0


def _print_fit(fit: PwlFit) -> None:
    from rich.console import Console
    from rich.table import Table

    t = fit.table
    console = Console(width=160)
    title = (
        f"{fit.name} on [{fit.lo:g}, {fit.hi:g}]: {fit.segments} segments ({fit.metric}), "
        f"in_scale {fit.in_scale:.6g}, out_scale {fit.out_scale:.6g}, out_bits {fit.out_bits}, "
        f"shift {t.shift}, fitted in {fit.fit_seconds:.3f} s"
    )
    seg_table = Table(title=title)
    cols = ("seg", "kind", "from x", "bp (int)", "slope", "intercept", "k (int16)", "b (int32)")
    for col in cols:
        seg_table.add_column(col, justify="right")
    starts = [-math.inf, *fit.breakpoints.tolist()]
    bp_int = ["-inf", *(str(v) for v in t.breakpoints)]
    for s in range(fit.segments):
        seg_table.add_row(
            str(s), "asymptote" if fit.fixed[s] else "fit", f"{starts[s]:.6g}", bp_int[s],
            f"{fit.slopes[s]:.7g}", f"{fit.intercepts[s]:.7g}", str(t.slopes[s]),
            str(t.intercepts[s]),
        )
    console.print(seg_table)
    e = fit.errors()
    err_table = Table(title=f"errors over {e['points']} integer inputs in [{fit.lo:g}, {fit.hi:g}]")
    for col in ("stage", "max abs", "mean abs", "mse"):
        err_table.add_column(col, justify="right")
    for key, label in (
        ("float", "float PWL"),
        ("fixed", "fixed point (before final rounding)"),
        ("output", f"int{fit.out_bits} output (LSB {fit.out_scale:.3g})"),
    ):
        err_table.add_row(
            label, *(f"{e[key][m]:.3e}" for m in ("max_abs", "mean_abs", "mse"))
        )
    console.print(err_table)


def _print_summary(args: argparse.Namespace, fits: list[PwlFit]) -> None:
    head = [
        "function", "range", "segs", "shift", "float max", "float mse", "fixed max", "fixed mse",
        f"int{args.out_bits} max", "LSB", "fit s",
    ]
    rows = []
    for fit in fits:
        e = fit.errors()
        rows.append([
            fit.name, f"[{fit.lo:g}, {fit.hi:g}]", str(fit.segments), str(fit.table.shift),
            f"{e['float']['max_abs']:.2e}", f"{e['float']['mse']:.2e}",
            f"{e['fixed']['max_abs']:.2e}", f"{e['fixed']['mse']:.2e}",
            f"{e['output']['max_abs']:.2e}", f"{fit.out_scale:.2e}", f"{fit.fit_seconds:.2f}",
        ])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(" --- " for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.segments}-segment PWL fits ({args.metric}), default ranges")
    for col in head:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


def _plot_range(fit: PwlFit) -> tuple[float, float]:
    """The fitting range widened by 10 % each side (within the domain) to show the tails."""
    pad = 0.1 * (fit.hi - fit.lo)
    dlo = fit.function.domain[0]
    lo = max(fit.lo - pad, dlo if not fit.function.domain_open else fit.lo - 0.5 * (fit.lo - dlo))
    return lo, fit.hi + pad


def plot_fit(fit: PwlFit, path: Path, what: str = "plot") -> None:
    """Write a PNG: the function, the float PWL and the hardware output; below, their errors.

    Missing folders of ``path`` are created; failing to write raises a one-line NmxError that
    names the file as ``what``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = _plot_range(fit)
    x_int = np.unique(np.rint(np.linspace(lo, hi, 4001) / fit.in_scale).astype(np.int64))
    x = x_int * fit.in_scale
    y = fit.function(x)
    fig, (ax, ax_err) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    ax.plot(x, y, color="black", lw=2.5, label=fit.name)
    ax.plot(x, fit.eval_float(x), color="tab:orange", lw=1.2, label="float PWL")
    ax.plot(x, fit.eval_int(x_int) * fit.out_scale, color="tab:blue", lw=0.8, alpha=0.7,
            label=f"hardware int{fit.out_bits} output")
    for bp in fit.breakpoints:
        ax.axvline(bp, color="grey", lw=0.5, ls=":")
        ax_err.axvline(bp, color="grey", lw=0.5, ls=":")
    for edge in (fit.lo, fit.hi):
        ax.axvline(edge, color="tab:red", lw=0.8, ls="--")
        ax_err.axvline(edge, color="tab:red", lw=0.8, ls="--")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize=8)
    e = fit.errors()
    ax.set_title(
        f"{fit.name}: {fit.segments} segments on [{fit.lo:g}, {fit.hi:g}] ({fit.metric}); "
        f"fixed-point max |err| {e['fixed']['max_abs']:.2e}, mse {e['fixed']['mse']:.2e}",
        fontsize=9,
    )
    fixed_err = fit.eval_fixed(x_int) - y
    ax_err.plot(x, fit.eval_float(x) - y, color="tab:orange", lw=1.0, label="float PWL")
    ax_err.plot(x, fixed_err, color="tab:green", lw=0.8, ls="--",
                label="fixed point (before final rounding)")
    inside = (x >= fit.lo) & (x <= fit.hi)
    span = np.max(np.abs(fixed_err[inside]))
    ax_err.set_ylim(-1.5 * span - 1e-12, 1.5 * span + 1e-12)
    ax_err.set_xlabel("x (dashed red: fitting range; dotted: breakpoints)")
    ax_err.set_ylabel("PWL - f")
    ax_err.legend(loc="best", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    files.write_bytes(path, png.getvalue(), what, parents=True)
