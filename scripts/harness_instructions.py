"""Executed instructions per simulated cycle of one fast-path harness library (callgrind).

A load-independent speed figure for A/B comparisons of harness libraries on a shared machine:
runs one workload under ``valgrind --tool=callgrind``, counting only inside
``NmxHarness::cycle()`` (the harness's clock loop and the whole Verilated model under it), and
prints the instructions divided by the RTL cycles. The workload (program words, DRAM image and
the golden model's result) is prepared natively and cached in ``build/harness_instructions/``,
so the valgrind run only executes the program; it is checked against the golden model (status
and the whole final DRAM image). Workloads on ``default`` (or ``--config``):

- ``gemm128``: the tiled GEMM of ``nmx bench gemm``, 128x128x128, m=64;
- ``gemm``: the same, 256x256x256, m=64 (``bench_harness_lib.py``'s);
- ``mlp``: the MLP bundle, batch 16 (``bench_rtl.py --workload network``'s);
- ``bert``: the BERT bundle, batch 1 (``bench_harness_lib.py --workload bert``'s; about 1.8 M
  cycles, slow under valgrind: ``--max-cycles`` runs only its first cycles, unchecked).

Example (docs/simulation.md, "Speed")::

    nice -n 10 .venv/bin/python scripts/harness_instructions.py --library LIB --workload gemm128
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hw.config import preset  # noqa: E402
from hw.errors import NmxError  # noqa: E402

WORKLOADS = ("gemm128", "gemm", "mlp", "bert")
_CACHE = Path(__file__).resolve().parents[1] / "build" / "harness_instructions"
_TOGGLE = "NmxHarness::cycle()"


def _prepare(config: str, workload: str) -> Path:
    """The workload's file (words, image, golden status and DRAM digest), written once."""
    path = _CACHE / f"{config}_{workload}.npz"
    if path.is_file():
        return path
    import bench_rtl

    from sim.golden import GoldenModel

    cfg = preset(config)
    if workload == "gemm128":
        _, program, image = bench_rtl.gemm_workload(cfg, "128x128x128", 64)
    elif workload == "gemm":
        _, program, image = bench_rtl.gemm_workload(cfg, "256x256x256", 64)
    elif workload == "mlp":
        _, program, image = bench_rtl.network_workload(cfg, "mlp", 16)
    else:
        _, program, image = bench_rtl.network_workload(cfg, "bert", 1)
    want = GoldenModel(cfg).run(program, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, words=np.array([int(w) for w in program.words()], dtype=object),
             image=np.asarray(image.data, dtype=np.uint8), status=str(want.status),
             digest=hashlib.sha256(np.asarray(want.dram.data).tobytes()).hexdigest())
    tmp.replace(path)
    return path


def _run_prefix(config: str, workload_file: Path, library: str, max_cycles: int) -> int:
    """Run the first ``max_cycles`` cycles of the prepared workload on ``library`` (unchecked)."""
    from nmx.runtime import Device
    from nmx.runtime.device import PROGRAM_ALIGN, _program_bytes
    from sim.rtl_harness import VerilatorTransport

    cfg = preset(config)
    saved = np.load(workload_file, allow_pickle=True)
    words = [int(w) for w in saved["words"]]
    data = saved["image"]
    prog_addr = -(-data.size // PROGRAM_ALIGN) * PROGRAM_ALIGN
    mem = -(-data.size // 4096) * 4096 + 16 * len(words)
    with VerilatorTransport(cfg, mem_size=mem, library=library) as t:
        t.write_mem(0, data.tobytes())
        t.write_mem(prog_addr, _program_bytes(words))
        Device(t, cfg).run(prog_addr, len(words), data.size, irq=True)
        done = t.run_until_irq(max_cycles)
        print(json.dumps({"cycles": t.cycles, "finished": done}))
    return 0


def _run(config: str, workload_file: Path, library: str) -> int:
    """Run the prepared workload once on ``library`` (what valgrind executes)."""
    from nmx.runtime import Device
    from sim.rtl_harness import VerilatorTransport

    cfg = preset(config)
    saved = np.load(workload_file, allow_pickle=True)
    words = [int(w) for w in saved["words"]]
    data = saved["image"]
    mem = -(-data.size // 4096) * 4096 + 16 * len(words)
    with VerilatorTransport(cfg, mem_size=mem, library=library) as t:
        run = Device(t, cfg).execute(words, data, timeout=36000)
    digest = hashlib.sha256(np.asarray(run.dram.data).tobytes()).hexdigest()
    if str(run.status) != str(saved["status"]) or digest != str(saved["digest"]):
        raise NmxError(f"{workload_file.name}: the RTL differs from the golden model")
    print(json.dumps({"cycles": run.cycles}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default")
    p.add_argument("--library", required=True, help="harness library (lib*.so)")
    p.add_argument("--workload", choices=WORKLOADS, default="gemm128")
    p.add_argument("--keep", type=Path, help="also copy callgrind's output file here "
                   "(for callgrind_annotate)")
    p.add_argument("--valgrind-arg", action="append", default=[],
                   help="extra valgrind option, e.g. --dump-instr=yes (repeatable)")
    p.add_argument("--max-cycles", type=int, help="run only the workload's first cycles "
                   "(from the start; not checked against the golden model)")
    p.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run is not None:
        if args.max_cycles:
            return _run_prefix(args.config, args.run, args.library, args.max_cycles)
        return _run(args.config, args.run, args.library)
    workload_file = _prepare(args.config, args.workload)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
               f"--toggle-collect={_TOGGLE}", f"--callgrind-out-file={out}",
               *args.valgrind_arg,
               sys.executable, __file__, "--config", args.config, "--library", args.library,
               "--run", str(workload_file),
               *(["--max-cycles", str(args.max_cycles)] if args.max_cycles else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            return 1
        cycles = json.loads(done.stdout.strip().splitlines()[-1])["cycles"]
        totals = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
        if args.keep is not None:
            shutil.copyfile(out, args.keep)
        if totals is None or int(totals.group(1)) == 0:
            raise NmxError(f"callgrind counted nothing inside {_TOGGLE} (inlined? symbols?)")
    instructions = int(totals.group(1))
    print(json.dumps({"workload": args.workload, "max_cycles": args.max_cycles,
                      "library": args.library, "cycles": cycles,
                      "instructions": instructions,
                      "instructions_per_cycle": round(instructions / cycles, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
