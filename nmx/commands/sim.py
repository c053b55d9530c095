"""``nmx sim``: a GEMM larger than the array, run on the Verilated RTL and checked against NumPy.

``make sim`` runs ``nmx sim --config default``. The config is chosen as for ``nmx rtl``: a preset,
a JSON file of config fields (or an ``nmx rtl`` sidecar) and ``--set FIELD=VALUE`` overrides. The
GEMM defaults to ``(4R x 6R) @ (6R x 3C)`` for an ``R x C`` array: 18 tiles of ``4R`` rows each,
streamed back to back (sim/array_demo.py).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from nmx.commands.rtl import add_config_arguments, config_from_args

__all__ = ["DemoRequest", "add_arguments", "request_from_args", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nmx sim``."""
    add_config_arguments(parser)
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
    """Build (or reuse) the Verilated array, run the GEMM, print the check and cycle figures."""
    from sim.array_demo import run_array_demo
    from sim.cycle_model import gemm_cycles

    req = request_from_args(args)
    config, m, k, n = req.config, req.m, req.k, req.n
    r, c = config.rows, config.cols
    chosen = " ".join([repr(args.config), *(f"--set {o}" for o in args.overrides)])
    print(f"nmx sim: config {chosen} ({r}x{c} array, fingerprint {config.fingerprint}); "
          f"building/running the Verilated RTL...", flush=True)
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
