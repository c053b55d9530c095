"""Simulated cycles per second of the fast RTL path (sim/rtl_harness.py) and of the cocotb path,
on the same workloads, in the same run.

Workloads (on ``--config``, default ``default``):

- ``gemm``: the double-buffered tiled GEMM of ``nmx bench gemm`` (``--shape``, ``--m``);
- ``network``: a zoo model compiled into a bundle (``--model``, ``--batch``) with its evaluation
  inputs written into the image.

Each runs on the golden model (the reference), on the Verilated accelerator in the C++ harness
(``nmx.runtime.Device`` + ``VerilatorTransport``, no backpressure, zero latency) and under
cocotb (``tb.accelerator_tb.directed_program``: cocotbext-axi ``AxiSlave`` and
``AxiLiteMaster``, no backpressure). Both RTL runs must equal the golden model (status and the
whole final DRAM image). The figures are the RTL's ``CYCLES`` counter divided by the time of the
run from start to DONE (wall clock and this process's CPU time, one core); builds are timed
separately. ``--no-cocotb`` skips the cocotb path.

    .venv/bin/python scripts/bench_rtl.py                       # both workloads on default
    .venv/bin/python scripts/bench_rtl.py --config tiny --workload gemm --shape 64x64x64 --m 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.config import AcceleratorConfig, preset  # noqa: E402
from hw.errors import NmxError  # noqa: E402
from hw.isa import Program  # noqa: E402
from hw.rtl import TOPS, write_rtl  # noqa: E402
from nmx.runtime import Device  # noqa: E402
from sim.dram_image import DramImage  # noqa: E402
from sim.golden import GoldenModel  # noqa: E402
from sim.rtl_harness import VerilatorTransport, build_harness  # noqa: E402
from sim.verilator import REPO_ROOT, run_cocotb  # noqa: E402

OUT = REPO_ROOT / "build" / "bench_rtl"


def gemm_workload(cfg: AcceleratorConfig, shape: str, m: int):
    from nmx.commands.bench import tiled_gemm

    M, K, N = (int(x) for x in shape.lower().split("x"))
    program, image, _ = tiled_gemm(cfg, M, K, N, m)
    return f"GEMM {shape} (m={m})", program, image


def network_workload(cfg: AcceleratorConfig, model: str, batch: int):
    import torch

    from compiler.backend import compile as compile_bundle
    from compiler.convert import convert
    from compiler.zoo import load
    from nmx.commands.compile import sample_inputs

    torch.set_num_threads(1)
    zm = load(model)
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    bundle = compile_bundle(cm, cfg, batch=batch, name=model)
    image = bundle.image_for(bundle.quantize_inputs(sample_inputs(zm, cm, batch)))
    return f"{model} bundle (batch {batch})", bundle.program, image


def run_fast(cfg, program: Program, image: DramImage) -> dict:
    words = program.words()
    mem = -(-image.size // 4096) * 4096 + 16 * len(words)
    with VerilatorTransport(cfg, mem_size=mem) as t:
        dev = Device(t, cfg)
        cpu = time.process_time()
        run = dev.execute(words, image.data)
        cpu = time.process_time() - cpu
    return {"status": run.status, "dram": run.dram.data, "cycles": run.cycles,
            "wall_s": run.wall_s, "cpu_s": cpu}


def run_cocotb_path(cfg, program: Program, image: DramImage, tag: str) -> dict:
    d = OUT / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "program.bin").write_bytes(program.to_bytes(cfg))
    stamped = DramImage.zeros(image.size, cfg)
    stamped.data[:] = image.data
    stamped.save(d / "image.dram")
    params = {"config": cfg.to_dict(), "seed": 1, "backpressure": 0.0,
              "program": str(d / "program.bin"), "dram": str(d / "image.dram"),
              "max_cycles": 50_000_000}
    top = TOPS["accelerator"]
    res = run_cocotb(sources=[write_rtl(cfg, REPO_ROOT / "build" / "tb")], toplevel=top,
                     test_module="tb.accelerator_tb", name=cfg.artifact_stem(top),
                     env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
                     testcase="directed_program")
    run_dir = res.results_file.parent
    counters = json.loads((run_dir / "counters.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text())
    return {"cycles": counters["CYCLES"], "wall_s": timing["run_wall_s"],
            "cpu_s": timing["run_cpu_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default", help="config preset (default: default)")
    p.add_argument("--workload", nargs="+", choices=("gemm", "network"),
                   default=["gemm", "network"])
    p.add_argument("--shape", default="256x256x256", help="gemm: MxKxN")
    p.add_argument("--m", type=int, default=64, help="gemm: operand rows per block")
    p.add_argument("--model", default="mlp", help="network: zoo model")
    p.add_argument("--batch", type=int, default=16, help="network: samples per run")
    p.add_argument("--no-cocotb", action="store_true", help="skip the cocotb path")
    args = p.parse_args(argv)
    cfg = preset(args.config)

    t0 = time.perf_counter()
    lib = build_harness(cfg)
    print(f"fast-path library: {lib} ({time.perf_counter() - t0:.1f} s, cached when unchanged)")
    rows = []
    for w in args.workload:
        if w == "gemm":
            label, program, image = gemm_workload(cfg, args.shape, args.m)
        else:
            label, program, image = network_workload(cfg, args.model, args.batch)
        want = GoldenModel(cfg).run(program, image)
        fast = run_fast(cfg, program, image)
        if fast["status"] != want.status or not np.array_equal(fast["dram"], want.dram.data):
            raise NmxError(f"{label}: the fast RTL path differs from the golden model "
                           f"(status {fast['status']} vs {want.status})")
        row = {"workload": label, "status": str(want.status), "cycles": fast["cycles"],
               "fast_wall_s": fast["wall_s"], "fast_cpu_s": fast["cpu_s"]}
        if not args.no_cocotb:
            slow = run_cocotb_path(cfg, program, image, w)  # asserts bit-exact itself
            row.update(cocotb_cycles=slow["cycles"], cocotb_wall_s=slow["wall_s"],
                       cocotb_cpu_s=slow["cpu_s"])
        rows.append(row)

    load = os.getloadavg()[0]
    print(f"\nconfig {args.config} ({cfg.rows}x{cfg.cols}), load average {load:.1f} on "
          f"{os.cpu_count()} cores; k cycles/s = RTL CYCLES / run time (wall | CPU)")
    head = f"{'workload':34} {'cycles':>9} {'fast wall':>10} {'fast CPU':>9}"
    if not args.no_cocotb:
        head += f" {'cocotb wall':>12} {'cocotb CPU':>11} {'speed-up (CPU)':>15}"
    print(head)
    for r in rows:
        fw = r["cycles"] / r["fast_wall_s"] / 1e3
        fc = r["cycles"] / r["fast_cpu_s"] / 1e3
        line = f"{r['workload']:34} {r['cycles']:>9} {fw:>8.1f} k {fc:>7.1f} k"
        if "cocotb_cycles" in r:
            cw = r["cocotb_cycles"] / r["cocotb_wall_s"] / 1e3
            cc = r["cocotb_cycles"] / r["cocotb_cpu_s"] / 1e3
            line += f" {cw:>10.1f} k {cc:>9.1f} k {fc / cc:>14.1f}x"
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_{args.config}.json").write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
