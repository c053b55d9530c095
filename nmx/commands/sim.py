"""``nmx sim``: a zoo network on the simulated accelerator, checked against the golden model,
the integer executor and PyTorch (sim/network.py), or with ``--demo array`` a GEMM larger than the
array streamed through the Verilated systolic array alone and checked against NumPy
(sim/array_demo.py).

``make sim`` runs ``nmx sim --model $(MODEL) --config $(CONFIG) --samples $(SAMPLES)``. The
config is chosen as for ``nmx rtl``: a preset, a JSON file of config fields (or an ``nmx rtl``
sidecar) and ``--set FIELD=VALUE`` overrides. The demo's GEMM defaults to
``(4R x 6R) @ (6R x 3C)`` for an ``R x C`` array: 18 tiles of ``4R`` rows each, streamed back to
back. Exit status 1 on any mismatch or missed binding accuracy target.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from nmx.commands.rtl import add_config_arguments, config_from_args

__all__ = ["DemoRequest", "add_arguments", "request_from_args", "run"]

DEFAULT_MODEL = "bert"
BACKENDS = ("rtl", "golden")
DEFAULT_BACKEND = "rtl"
_DEMO_ONLY = ("m", "k", "n", "seed", "waves")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nmx sim``."""
    add_config_arguments(parser)
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="zoo model to run, or 'all' (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=32,
                        help="test inputs to run (default: %(default)s; the GCN runs its graph "
                             "once)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                        help="machine: rtl (the Verilated accelerator) or golden (the golden "
                             "model, cycle model only) (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("build/sim"),
                        help="report folder: OUT/MODEL/report.json and utilisation.png "
                             "(default: %(default)s)")
    parser.add_argument("--latency", type=int, default=None,
                        help="RTL backend: DRAM read/write latency in cycles (default: the cycle "
                             "model's, sim.cycle_model.CycleParams)")
    parser.add_argument("--backpressure", type=float, default=0.0,
                        help="RTL backend: probability of a DRAM pause per cycle and channel "
                             "(default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="machines simulating at once, one thread each (default: 2 for the "
                             "rtl backend on a machine with 2 or more cores, else 1)")
    parser.add_argument("--demo", choices=("array",), default=None,
                        help="instead of a network: the GEMM demo on the bare array")
    parser.add_argument("--m", type=int, default=None, help="rows of A (default 4 * array rows)")
    parser.add_argument("--k", type=int, default=None,
                        help="columns of A = rows of B (default 6 * array rows)")
    parser.add_argument("--n", type=int, default=None,
                        help="columns of B (default 3 * array cols)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random matrices")
    parser.add_argument(
        "--waves",
        action="store_true",
        help="record a waveform: FST where liblz4-dev is installed, else VCD (the path is printed)",
    )


@dataclass(frozen=True)
class DemoRequest:
    """What ``nmx sim`` runs: the config and the GEMM ``(m x k) @ (k x n)``."""

    config: AcceleratorConfig
    m: int
    k: int
    n: int


def request_from_args(args: argparse.Namespace) -> DemoRequest:
    """The config and GEMM sizes selected by the options of ``nmx sim``.

    Raises
    ------
    ConfigError
        The config options name an unknown preset or field, a bad file or an invalid value.
    NmxError
        A GEMM size is not positive.
    """
    config = config_from_args(args)
    r, c = config.rows, config.cols
    m = 4 * r if args.m is None else args.m
    k = 6 * r if args.k is None else args.k
    n = 3 * c if args.n is None else args.n
    for name, value in (("--m", m), ("--k", k), ("--n", n)):
        if value < 1:
            raise NmxError(f"{name} {value}: GEMM sizes must be positive")
    return DemoRequest(config, m, k, n)


def run(args: argparse.Namespace) -> int:
    """The network run (default) or the array demo (``--demo array``)."""
    if args.demo == "array":
        return run_demo(args)
    given = [f"--{k}" for k in _DEMO_ONLY
             if getattr(args, k) not in (None, False) and not (k == "seed" and args.seed == 0)]
    if given:
        raise NmxError(f"{', '.join(given)} belong to the array demo: add --demo array")
    from compiler.zoo import MODEL_NAMES

    config = config_from_args(args)
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    for name in names:
        if name not in MODEL_NAMES:
            raise NmxError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)} or "
                           "all")
    if args.samples < 1:
        raise NmxError(f"--samples must be >= 1, got {args.samples}")
    if args.jobs is not None and not 1 <= args.jobs <= 64:
        raise NmxError(f"--jobs must be 1 .. 64, got {args.jobs}")
    from sim.network import simulate

    failed = []
    summary = []
    for name in names:
        print(f"nmx sim: {name} on {config.rows}x{config.cols} {config.fingerprint}, "
              f"{args.samples} samples, backend {args.backend}", flush=True)
        sim = simulate(name, config, samples=args.samples, backend=args.backend,
                       out_dir=args.out / name, latency=args.latency,
                       backpressure=args.backpressure, jobs=args.jobs)
        print_simulation(sim, args.out / name)
        summary.append(sim)
        if not sim.ok:
            failed.append(name)
    if len(summary) > 1:
        print_summary(summary)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def print_simulation(sim, out: Path) -> None:
    """The checks, accuracy, targets, per-node table and totals of one network run."""
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 160))
    for what, ok in sim.checks.items():
        con.print(f"{'OK ' if ok else 'MISMATCH'} {what} "
                  f"({sim.runs} run(s) of {sim.samples} sample(s))")
    if sim.mismatch is not None:
        con.print(f"[bold red]{sim.mismatch['text']}[/] (run {sim.mismatch['run']}, "
                  f"against the {sim.mismatch['against']})")
        return
    a = sim.accuracy
    line = (f"accuracy: float {100 * a['float']:.2f} %, hardware {100 * a['hardware']:.2f} %; "
            f"agreement {100 * a['agreement']:.2f} % (decisive samples "
            f"{100 * a['agreement_decisive']:.2f} %); output cosine {a['output_cosine']:.5f}")
    if "token_cos_mean" in a:
        line += (f"; token cosine mean {a['token_cos_mean']:.5f}, worst "
                 f"{a['token_cos_worst']:.5f} ({a['tokens']} tokens)")
    con.print(line)
    t = Table(title="zoo targets on the hardware's outputs")
    for col in ("target", "measured", "required", "status"):
        t.add_column(col)
    for c in sim.targets:
        status = "met" if c["met"] else ("missed" if c["binding"] else "missed (not binding)")
        t.add_row(c["target"], f"{c['measured']:.5f}", f"{c['comparison']} {c['threshold']}",
                  status)
    con.print(t)
    rtl = bool(sim.nodes) and sim.nodes[0]["rtl_cycles"] is not None
    src = "RTL counters" if rtl else "no RTL counters on the golden backend: cycle model only"
    t = Table(title=f"{sim.model}: per-node runs (each node its own program, cold on-chip "
                    f"state; {src})")
    cols = ["node", "module", "instr", "graph MACs"]
    cols += (["cycles", "array MACs", "util %", "stalls (RTL)", "model cycles", "model err %"]
             if rtl else ["model cycles", "model util %", "model stalls"])
    for col in cols:
        t.add_column(col, justify="left" if col in ("node", "module") or "stalls" in col
                     else "right")
    for x in sim.nodes:
        base = [x["node"], x["module"], str(x["instructions"]), f"{x['graph_macs']:,}"]
        if rtl:
            err = "" if x["model_error"] is None else f"{100 * x['model_error']:+.1f}"
            t.add_row(*base, f"{x['rtl_cycles']:,}", f"{x['array_macs']:,}",
                      _pct(x["utilisation"]), x["stalls"], f"{x['model_cycles']:,}", err)
        else:
            t.add_row(*base, f"{x['model_cycles']:,}", _pct(x["utilisation_model"]),
                      x["model_stalls"])
    con.print(t)
    tot = sim.totals
    con.print(f"per-node runs summed: model {tot['per_node_model_cycles']:,} cycles"
              + (f", RTL {tot['per_node_rtl_cycles']:,}" if "per_node_rtl_cycles" in tot
                 else ""))
    if "rtl_cycles" in tot:
        con.print(f"whole-program run (RTL counters, run 0): {tot['rtl_cycles']:,} cycles, "
                  f"{tot['array_macs']:,} array MACs, utilisation "
                  f"{100 * tot['utilisation']:.1f} %; cycle model {tot['model_cycles']:,} "
                  f"({100 * tot['model_error']:+.2f} %)")
    else:
        con.print(f"whole-program run (cycle model, run 0): {tot['model_cycles']:,} cycles, "
                  f"utilisation {100 * tot['utilisation_model']:.1f} %, "
                  f"{tot['instructions']:,} instructions")
    tm = sim.timing
    speed = tm.get("simulated_cycles_per_second")
    con.print(f"wall time {tm['total']:.1f} s (convert {tm['convert']:.1f}, compile "
              f"{tm['compile']:.1f}, machine set-up/build {tm['machine_setup']:.1f}, runs "
              f"{tm['runs']:.1f}, per-node profile {tm.get('profile', 0):.1f}; "
              f"{tm['jobs']} machine(s) in parallel, the golden check "
              f"{tm['golden_check'] + tm.get('profile_golden', 0):.1f} beside them)")
    if speed:
        con.print(f"simulated {tm['simulated_cycles']:,} cycles in {tm['machine_run']:.1f} s of "
                  f"machine runs: {speed:,.0f} cycles/s per machine, "
                  f"{tm['simulated_cycles_per_wall_second']:,.0f} cycles per wall second")
    con.print(f"report: {out / 'report.json'}, {out / 'utilisation.png'}")
    con.print("OK" if sim.ok else "FAILED: a binding target missed")


def print_summary(sims) -> None:
    """One line per model."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="nmx sim: all models")
    for col in ("model", "bit-exact", "cycles/run", "model err %", "util %", "cycles/s",
                "float acc", "hw acc", "agreement", "ok"):
        t.add_column(col)
    for s in sims:
        tot, a = s.totals, s.accuracy
        cyc = tot.get("rtl_cycles", tot.get("model_cycles"))
        t.add_row(s.model, str(all(s.checks.values()) and s.mismatch is None),
                  f"{cyc:,}" if cyc else "",
                  f"{100 * tot['model_error']:+.2f}" if "model_error" in tot else "",
                  _pct(tot.get("utilisation", tot.get("utilisation_model"))),
                  f"{s.timing.get('simulated_cycles_per_second', 0):,.0f}",
                  _pct(a.get("float")), _pct(a.get("hardware")), _pct(a.get("agreement")),
                  "yes" if s.ok else "NO")
    Console(width=160).print(t)


def run_demo(args: argparse.Namespace) -> int:
    """Build (or reuse) the Verilated array, run the GEMM, print the check and cycle figures."""
    from sim.array_demo import run_array_demo
    from sim.cycle_model import gemm_cycles

    req = request_from_args(args)
    config, m, k, n = req.config, req.m, req.k, req.n
    r, c = config.rows, config.cols
    chosen = " ".join([repr(args.config), *(f"--set {o}" for o in args.overrides)])
    print(f"nmx sim --demo array: config {chosen} ({r}x{c} array, fingerprint "
          f"{config.fingerprint}); building/running the Verilated RTL...", flush=True)
    result = run_array_demo(config, m=m, k=k, n=n, seed=args.seed, waves=args.waves or None)
    t, mt = result.tiling, result.metrics
    peak = result.peak
    useful = m * k * n
    print(f"GEMM        ({m} x {k}) @ ({k} x {n}) int8 -> int32, seed {args.seed}")
    print(f"tiles       {t.tiles} = {t.k_tiles} K-tiles x {t.n_tiles} N-tiles of {r}x{c} weights, "
          f"{m} operand rows each, streamed back to back")
    print(f"mismatches  {result.mismatches} of {m * n} elements vs NumPy "
          f"(max |error| {result.max_abs_error})")
    print(f"cycles      {mt['total_cycles']} from the first weight beat to the last result "
          f"({mt['operand_rows']} operand rows)")
    print(f"MACs/cycle  {mt['array_macs'] / mt['total_cycles']:.2f} end to end "
          f"({100 * mt['array_macs'] / mt['total_cycles'] / peak:.1f} % of the {peak} peak; "
          f"{useful / mt['total_cycles']:.2f} useful, without tile padding)")
    modelled = gemm_cycles(config, m, t.k_tiles, t.n_tiles)
    print(f"cycle model {modelled} cycles by sim.cycle_model.gemm_cycles for the same GEMM "
          f"({'equal' if modelled == mt['total_cycles'] else 'DIFFERENT: recalibrate it'})")
    if mt["streaming_cycles"]:
        steady = mt["streaming_rows"] / mt["streaming_cycles"]
        print(f"steady      {steady * peak:.2f} MACs/cycle while streaming "
              f"({100 * steady:.1f} % of peak: {mt['streaming_rows']} rows in "
              f"{mt['streaming_cycles']} cycles)")
    print(f"simulation  {mt['sim_cycles']} cycles in {mt['sim_seconds']:.2f} s under cocotb "
          f"({mt['sim_cycles'] / max(mt['sim_seconds'], 1e-9):.0f} cycles/s); "
          f"{result.wall_seconds:.1f} s wall including any Verilator build")
    print(f"run folder  {result.run_dir}")
    if result.mismatches:
        print("FAILED: the RTL's result differs from NumPy")
        return 1
    print("OK: bit-exact")
    return 0
