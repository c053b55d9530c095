"""Calibrate sim/cycle_model.py on the RTL's own cycle counters, and print the model's error.

    python scripts/calibrate_cycle_model.py [--random 120] [--seed 5] [--write]

Measures total cycles (the ``CYCLES`` counter) on the Verilated accelerator under cocotb with
no AXI pauses (tb/accelerator_tb.py's AXI slave model as DRAM) for

* ``nmx bench gemm``'s 256x256x256 program (``default``),
* examples/mlp.nmasm (``default``),
* ``--random`` valid random programs of tb/random_programs.py (``tiny``, seed ``--seed``),

fits :class:`sim.cycle_model.CycleParams` (DRAM and store latency, EPI latency, cycles per
row, per-instruction overhead, EPI/GEMM overlap; the GEMM overhead is the compute unit's measured
+7) by coordinate descent on the squared relative error, and prints the
error distribution of the fitted and of the current constants. ``--write`` stores the fit in
``sim/cycle_calibration.json`` (the model's defaults come from there), with the per-program
figures. Re-run it after an RTL change that moves latencies (e.g. pipeline stages added for
timing): the constants are measured, never assumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_rtl import gemm256_program, run_on_rtl  # noqa: E402

from hw.assembler import assemble_file  # noqa: E402
from hw.config import preset  # noqa: E402
from sim.cycle_model import CALIBRATION_FILE, CycleParams, estimate_cycles  # noqa: E402
from sim.golden import GoldenModel  # noqa: E402

#: Search ranges of the integer constants.
RANGES = {"dram_latency": range(0, 121), "store_latency": range(0, 121),
          "epi_latency": range(0, 121), "row_cycles": range(1, 5), "instr_overhead": range(0, 31)}

#: The GEMM overhead is measured directly (tb/test_compute_unit.py: the compute unit's busy
#: cycles for one GEMM are ``gemm_cycles + 7``), not fitted.
GEMM_EXTRA = 7


def mlp_program(cfg):
    spec = importlib.util.spec_from_file_location("build_mlp_image",
                                                  ROOT / "examples" / "build_mlp_image.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder
    spec.loader.exec_module(builder)
    example = builder.build(seed=0, config=cfg)
    return assemble_file(ROOT / "examples" / "mlp.nmasm"), example.image


MEASUREMENTS = ROOT / "build" / "cycle_calibration_measurements.json"


def measure(n_random: int, seed: int, reuse: bool) -> list[dict]:
    """(label, config, golden trace, RTL cycles) of every calibration program. The RTL's cycles
    are saved in :data:`MEASUREMENTS`; ``reuse`` takes them from there instead of the RTL."""
    from tb.random_programs import make_case
    from tb.test_accelerator import run_random_programs

    saved = json.loads(MEASUREMENTS.read_text()) if reuse else {}
    out = []
    default = preset("default")
    for label, (program, image) in (("gemm 256^3 (nmx bench gemm)", gemm256_program(default)),
                                    ("examples/mlp.nmasm", mlp_program(default))):
        cycles = saved[label] if reuse else run_on_rtl(default, program, image)[
            "counters"]["CYCLES"]
        trace = GoldenModel(default).run(program, image).raise_for_status().trace
        out.append({"label": label, "config": default, "trace": trace, "rtl": cycles})
        print(f"measured {label}: {cycles} cycles", flush=True)
    if n_random:
        tiny = preset("tiny")
        if reuse:
            runs = saved["random"]
        else:
            runs = run_random_programs("tiny", seed, 0, n_random, calm=True,
                                       timeout_s=4 * 3600)["ok_runs"]
        for index, cycles in runs:
            case = make_case(tiny, "tiny", seed, index)
            if case.faults:
                continue
            res = GoldenModel(tiny).run(list(case.words[:case.prog_len]),
                                        case.image[:case.dram_limit])
            out.append({"label": f"random tiny:{seed}:{index}", "config": tiny,
                        "trace": res.trace, "rtl": cycles})
        print(f"measured {len(out) - 2} random programs (tiny, seed {seed})", flush=True)
        saved["random"] = runs
    if not reuse:
        MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
        saved.update({q["label"]: q["rtl"] for q in out[:2]})
        MEASUREMENTS.write_text(json.dumps(saved))
    return out


def errors(programs: list[dict], params: CycleParams) -> np.ndarray:
    """Relative error (model - RTL) / RTL of each program."""
    return np.array([(estimate_cycles(p["trace"], p["config"], params).total_cycles - p["rtl"])
                     / p["rtl"] for p in programs])


def loss(programs: list[dict], params: CycleParams) -> float:
    e = errors(programs, params)
    # the named benchmarks count as much as all random programs together
    w = np.array([1.0 if p["label"].startswith("random") else max(1, len(programs) - 2)
                  for p in programs])
    return float(np.sum(w * e * e) / np.sum(w))


def fit(programs: list[dict], start: CycleParams) -> CycleParams:
    """Coordinate descent over :data:`RANGES` and ``epi_overlap``."""
    best = dataclasses.replace(start, gemm_extra=GEMM_EXTRA, store_latency=start.store_latency
                               if start.store_latency is not None else start.dram_latency)
    best_loss = loss(programs, best)
    for _ in range(4):
        improved = False
        for overlap in (False, True):
            cand = dataclasses.replace(best, epi_overlap=overlap)
            if (value := loss(programs, cand)) < best_loss:
                best, best_loss, improved = cand, value, True
        for name, values in RANGES.items():
            for v in values:
                cand = dataclasses.replace(best, **{name: v})
                if (value := loss(programs, cand)) < best_loss:
                    best, best_loss, improved = cand, value, True
        if not improved:
            break
    return best


def describe(programs: list[dict], params: CycleParams, title: str) -> dict:
    e = errors(programs, params)
    print(f"\n{title}: {params.to_dict()}")
    for p, err in zip(programs, e, strict=True):
        if not p["label"].startswith("random"):
            model = estimate_cycles(p["trace"], p["config"], params).total_cycles
            print(f"  {p['label']:<34s} RTL {p['rtl']:>8d}  model {model:>8d}  "
                  f"error {100 * err:+6.2f} %")
    rnd = np.array([err for p, err in zip(programs, e, strict=True)
                    if p["label"].startswith("random")])
    summary = {}
    if rnd.size:
        a = np.abs(rnd)
        summary = {"n": int(rnd.size), "median_abs": float(np.median(a)),
                   "p90_abs": float(np.percentile(a, 90)), "max_abs": float(a.max()),
                   "within_5pct": float(np.mean(a <= 0.05))}
        print(f"  random programs: {rnd.size}, |error| median {100 * summary['median_abs']:.2f} "
              f"%, p90 {100 * summary['p90_abs']:.2f} %, max {100 * summary['max_abs']:.2f} %, "
              f"within 5 %: {100 * summary['within_5pct']:.0f} %")
        edges = [-1, -0.2, -0.1, -0.05, -0.02, 0.02, 0.05, 0.1, 0.2, 1e9]
        hist, _ = np.histogram(rnd, bins=edges)
        labels = ["< -20%", "-20..-10", "-10..-5", "-5..-2", "-2..+2", "+2..+5", "+5..+10",
                  "+10..+20", "> +20%"]
        print("  error histogram: " + ", ".join(f"{lab} {n}" for lab, n in
                                                 zip(labels, hist, strict=True)))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", type=int, default=120, help="random programs on tiny")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--write", action="store_true", help=f"store the fit in {CALIBRATION_FILE}")
    p.add_argument("--reuse", action="store_true",
                   help=f"refit on the cycles saved by the last measurement ({MEASUREMENTS})")
    args = p.parse_args(argv)
    programs = measure(args.random, args.seed, args.reuse)
    describe(programs, CycleParams.assumed(), "assumed constants")
    describe(programs, CycleParams(), "current constants")
    fitted = fit(programs, CycleParams())
    summary = describe(programs, fitted, "fitted constants")
    if args.write:
        named = {q["label"]: {"rtl": q["rtl"], "model": estimate_cycles(
            q["trace"], q["config"], fitted).total_cycles}
            for q in programs if not q["label"].startswith("random")}
        CALIBRATION_FILE.write_text(json.dumps({
            "params": fitted.to_dict(),
            "measured": datetime.date.today().isoformat(),
            "command": "python scripts/calibrate_cycle_model.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "programs": named, "random": summary,
        }, indent=1) + "\n")
        print(f"\nwrote {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
