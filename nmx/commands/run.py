"""``nmx run DIR --input FILE.npy|.pt [--backend golden|rtl]``: run a compiled bundle.

The input file holds the sample-stacked tensor (leading dim = the bundle's batch) of the
network's only input (``.pt``: a tensor, or a list/tuple of tensors for several inputs).
Prints the status, the cycle model's summary (golden) or the RTL's counters and simulation
speed (rtl: the Verilated accelerator through ``sim.rtl_harness``, ``--latency``,
``--backpressure``, ``--seed`` set its DRAM model) and the outputs; ``-o FILE.npy`` saves the
first output (real values), ``--int`` prints the integer outputs instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hw.errors import NmxError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nmx run``."""
    parser.add_argument("bundle", type=Path, help="bundle directory written by nmx compile")
    parser.add_argument("--input", required=True, action="append", type=Path,
                        help="input tensor file (.npy or .pt), repeat for several inputs")
    parser.add_argument("--backend", default="golden", choices=("golden", "rtl"),
                        help="golden model (default) or the Verilated accelerator")
    parser.add_argument("--latency", type=int, default=0,
                        help="rtl: DRAM read/write latency in cycles (default 0)")
    parser.add_argument("--backpressure", type=float, default=0.0,
                        help="rtl: probability of an AXI pause per channel and cycle (default 0)")
    parser.add_argument("--seed", type=int, default=1, help="rtl: backpressure seed")
    parser.add_argument("-o", "--output", type=Path, help="save the first output (.npy)")
    parser.add_argument("--int", action="store_true", help="print the integer outputs")


def _read(path: Path):
    import numpy as np
    import torch

    if not path.is_file():
        raise NmxError(f"input file {str(path)!r} not found")
    if path.suffix == ".npy":
        return [torch.from_numpy(np.load(path))]
    if path.suffix == ".pt":
        v = torch.load(path, weights_only=True)
        return list(v) if isinstance(v, (list, tuple)) else [v]
    raise NmxError(f"input file {str(path)!r}: expected .npy or .pt")


def run(args: argparse.Namespace) -> int:
    """Run the bundle and print its outputs."""
    import numpy as np
    import torch

    from compiler.backend import Bundle
    from sim.cycle_model import estimate_cycles

    bundle = Bundle.load(args.bundle)
    inputs = [t for p in args.input for t in _read(p)]
    if args.backend == "rtl":
        if args.latency < 0 or not 0 <= args.backpressure < 1:
            raise NmxError(f"--latency {args.latency} must be >= 0 and --backpressure "
                           f"{args.backpressure} in [0, 1)")
        res = bundle.run(inputs, backend="rtl", latency=args.latency,
                         backpressure=args.backpressure, seed=args.seed)
        run = res.run
        print(f"status: {run.status}")
        busy = {k: v for k, v in run.counters.items() if v}
        print(f"RTL counters: {busy}")
        print(f"simulated {run.cycles} cycles in {run.wall_s:.2f} s "
              f"({run.cycles / max(run.wall_s, 1e-9) / 1e3:.1f} k cycles/s)")
    else:
        res = bundle.run(inputs, backend=args.backend)
        print(f"status: {res.run.status}")
        print(estimate_cycles(res.run.trace, bundle.config).summary())
    outs = res.int_outputs if args.int else res.outputs
    with np.printoptions(linewidth=120, threshold=2000, precision=4):
        for spec, o in zip(bundle.manifest["outputs"], outs, strict=True):
            print(f"output {spec['source']} {tuple(o.shape)}:")
            print(o.numpy() if isinstance(o, torch.Tensor) else o)
    if args.output:
        np.save(args.output, res.outputs[0].numpy())
    return 0
