"""Whole-program RTL cycles of zoo models: run 0 (the first test batch, as ``nmx sim``) of each
model compiled at batch 1, on the Verilated accelerator (fast C++ harness, default DRAM latency)
and on the golden model; prints the RTL's CYCLES and ARRAY_MACS, the cycle model's total and
whether the final DRAM images are equal, one JSON line per model.

A quick before/after measurement of a back-end change without the per-node profile and the
32-sample accuracy checks of ``nmx sim``::

    nice -n 10 .venv/bin/python scripts/zoo_rtl_cycles.py --models mlp,resnet --config default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import torch

    from compiler.backend import compile as compile_bundle
    from compiler.convert import convert
    from compiler.zoo import MODEL_NAMES, load
    from hw.config import preset
    from sim.cycle_model import estimate_cycles
    from sim.golden import GoldenModel
    from sim.network import _hidden, _inputs, _machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES),
                    help="comma-separated zoo models (default: all)")
    ap.add_argument("--config", default="default", help="config preset (default: default)")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}")
    torch.set_num_threads(1)
    cfg = preset(args.config)
    machine = _machine("rtl", cfg)
    ok = True
    try:
        for name in names:
            zm = load(name)
            cm = convert(zm.model, zm.example_inputs, zm.calibration)
            node, _backbone, _mask = _hidden(zm, cm)
            keep = (node.name,) if node is not None else ()
            bundle = compile_bundle(cm, cfg, batch=1, name=name, keep=keep)
            inputs, _n = _inputs(zm, 32)  # run 0 is the first run of `nmx sim`'s 32 samples
            stacked, _orig = cm.to_samples(inputs)
            image = bundle.image_for(bundle.quantize_inputs([s[0:1] for s in stacked]))
            gold = GoldenModel(cfg).run(bundle.program, image)
            run = machine.run(bundle.program, image)
            same = (run.code == int(gold.status.code)
                    and bytes(run.dram.data) == bytes(gold.dram.data))
            ok &= same
            print(json.dumps({
                "model": name, "config": args.config, "instructions": len(bundle.program),
                "rtl_cycles": int(run.counters["CYCLES"]),
                "array_macs": int(run.counters["ARRAY_MACS"]),
                "model_cycles": estimate_cycles(gold.trace, cfg).total_cycles,
                "bit_exact": same}), flush=True)
    finally:
        machine.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
