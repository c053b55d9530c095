"""Where a coverage-table CNN's int-vs-float error comes from (compiler/coverage/diagnose.py).

    .venv/bin/python scripts/coverage_diagnosis.py mobilenet_v2 efficientnet_b0 --top 10
    .venv/bin/python scripts/coverage_diagnosis.py mobilenet_v2 --sides 64,128,224

For each architecture (table size, random weights as in scripts/model_coverage.py): the float
model's own cosine under one int8 step of input noise, the output cosine with one quantisation
source at a time (inputs, weights, activations; fake-quant; 16-bit tensors as the default
precision policy chose them), the integer result with the default policy, with every activation
int8 and with every eligible activation 16-bit, and the ``--top`` nodes with the largest
*local* error (the error a node adds to integer inputs it is given, apart from what it
inherits), with their total error.
``--sides`` instead prints only the float model's noise sensitivity at several image sizes
(torchvision CNNs; no conversion). ``--raw-bn`` instead converts each model with the library's
*initial* BatchNorm statistics (mean 0, variance 1; the table estimates them on random inputs)
and prints its int-vs-float cosine (or the conversion error that stops it), its float noise
sensitivity and its logits' RMS.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.convert import convert  # noqa: E402
from compiler.coverage.architectures import (  # noqa: E402
    ARCHITECTURES,
    build,
    torchvision_at,
)
from compiler.coverage.diagnose import error_sources, local_errors  # noqa: E402
from compiler.coverage.measure import float_sensitivity, int_cosine  # noqa: E402
from hw.errors import NmxError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help=f"architectures: {', '.join(ARCHITECTURES)}")
    p.add_argument("--top", type=int, default=8, help="nodes listed per model (default 8)")
    p.add_argument("--sides", help="comma-separated image sizes: only the float noise "
                                   "sensitivity at each (torchvision CNNs)")
    p.add_argument("--raw-bn", action="store_true",
                   help="only: convert with the initial BatchNorm statistics (mean 0, var 1)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in ARCHITECTURES]
    if unknown:
        p.error(f"unknown architecture(s) {', '.join(unknown)}; known: {', '.join(ARCHITECTURES)}")
    if args.top < 0:
        p.error(f"--top must be >= 0, got {args.top}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if args.sides:
        try:
            sides = [int(v) for v in args.sides.split(",")]
        except ValueError:
            p.error(f"--sides must be comma-separated integers, got {args.sides!r}")
        for name in args.names:
            if ARCHITECTURES[name].family != "torchvision":
                p.error(f"--sides: {name} is not a torchvision CNN")
            for side in sides:
                case = torchvision_at(name, side)
                print(f"{name} {side}x{side}: float under 1-step input noise "
                      f"{float_sensitivity(case):.4f}", flush=True)
        return 0
    if args.raw_bn:
        for name in args.names:
            for label, raw in (("estimated", False), ("initial", True)):
                case = build(name)
                bns = [m for m in case.model.modules()
                       if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
                if not bns:
                    p.error(f"--raw-bn: {name} has no BatchNorm")
                if raw:
                    for m in bns:
                        m.reset_running_stats()
                with torch.no_grad():
                    rms = float(case.model(*case.evaluation[0]).pow(2).mean().sqrt())
                facts = (f"float under 1-step input noise {float_sensitivity(case):.4f}, "
                         f"logits RMS {rms:.3g}")
                try:
                    cm = convert(case.model, case.example_inputs, case.calibration)
                except NmxError as e:
                    print(f"{name}, {label} BatchNorm statistics: does not convert "
                          f"({type(e).__name__}: {str(e).split('. ')[0]}), {facts}", flush=True)
                    continue
                print(f"{name}, {label} BatchNorm statistics: int vs float "
                      f"{int_cosine(cm, case):.4f}, {facts}", flush=True)
        return 0
    for name in args.names:
        case = build(name)
        if case.kind != "logits":
            p.error(f"{name}: only classifiers / graph networks (logit outputs) are diagnosed")
        cm = convert(case.model, case.example_inputs, case.calibration)
        sources = error_sources(cm, case)
        print(f"## {name}\n")
        print(f"float under 1-step input noise: {float_sensitivity(case):.4f}")
        for label, v in sources.items():
            print(f"{label}: {v:.4f}")
        if args.top:
            print("\n| node | module | fn | bits | shape | local rel. RMS | total rel. RMS |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            rows = sorted(local_errors(cm, case.evaluation[0]), key=lambda r: -r.local)
            for r in rows[:args.top]:
                print(f"| {r.name} | {r.module} | {r.function} | {r.out_bits} | "
                      f"{'x'.join(map(str, r.shape))} | {r.local:.4f} | {r.total:.4f} |")
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
