"""Simulated cycles per CPU second of one fast-path harness library (A/B of build options).

Runs a fixed workload on ``default`` (or ``--config``) through ``nmx.runtime.Device`` on a
``VerilatorTransport`` that loads ``--library`` (default: the library ``build_harness`` builds),
checks the final DRAM image and status against the golden model, and prints the RTL's cycles
divided by the run's CPU time (this process, one core) for each repeat. Workloads:

- ``gemm``: the tiled GEMM of ``nmx bench gemm`` (256x256x256, m=64 on ``default``);
- ``bert``: the BERT bundle of ``make sim`` (compiled with batch 1, as ``nmx sim`` does).

To compare C++ flags on one Verilator output, copy a build's ``obj/`` and ``src/``, run
``make -f Vnmx.mk OPT_FAST=...`` there (with ``sim.verilator.verilator_env()``'s environment),
and pass each resulting library here (docs/simulation.md, "Speed")::

    .venv/bin/python scripts/bench_harness_lib.py --workload gemm --repeat 3
    .venv/bin/python scripts/bench_harness_lib.py --library /tmp/a/lib.so --workload bert
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hw.config import preset  # noqa: E402
from hw.errors import NmxError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default")
    p.add_argument("--library", help="harness library (default: sim.rtl_harness.build_harness)")
    p.add_argument("--workload", choices=("gemm", "bert"), default="gemm")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import bench_rtl

    from nmx.runtime import Device
    from sim.golden import GoldenModel
    from sim.rtl_harness import VerilatorTransport

    cfg = preset(args.config)
    if args.workload == "gemm":
        label, program, image = bench_rtl.gemm_workload(cfg, "256x256x256", 64)
    else:
        label, program, image = bench_rtl.network_workload(cfg, "bert", 1)
    want = GoldenModel(cfg).run(program, image)
    words = program.words()
    mem = -(-image.size // 4096) * 4096 + 16 * len(words)
    rows = []
    for _ in range(args.repeat):
        with VerilatorTransport(cfg, mem_size=mem, library=args.library) as t:
            dev = Device(t, cfg)
            cpu = time.process_time()
            run = dev.execute(words, image.data, timeout=7200)
            cpu = time.process_time() - cpu
        if run.status != want.status or not np.array_equal(run.dram.data, want.dram.data):
            raise NmxError(f"{label}: the RTL differs from the golden model")
        rows.append({"cycles": run.cycles, "cpu_s": round(cpu, 4),
                     "k_cycles_per_cpu_s": round(run.cycles / cpu / 1e3, 1)})
    print(json.dumps({"workload": label, "library": args.library or "build_harness",
                      "runs": rows, "best_k_cycles_per_cpu_s":
                      max(r["k_cycles_per_cpu_s"] for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
