"""``nmx compile --model NAME|all [--config ...] [--batch B] -o DIR [--report]``.

Converts zoo models (``compiler.convert`` defaults) and compiles each into a bundle directory
(``DIR/NAME`` for ``all``, else ``DIR``): program, DRAM image, manifest. ``--report`` runs the
bundle on the golden model with the sample inputs, checks it against the integer executor bit for
bit, and prints the per-node table (cycle model), writing ``report.json``, ``utilisation.png``
and the inputs it used (``sample_inputs.pt``, for ``nmx run``) into the bundle directory.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hw.errors import NmxError
from nmx.commands.rtl import add_config_arguments, config_from_args

__all__ = ["add_arguments", "run", "sample_inputs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nmx compile``."""
    parser.add_argument("--model", required=True, help="zoo model name, or 'all'")
    add_config_arguments(parser)
    parser.add_argument("--batch", type=int, default=1,
                        help="samples per run (stacks of the model's example inputs)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="bundle directory")
    parser.add_argument("--report", action="store_true",
                        help="run on the golden model, check bit-exactness, print the report")


def sample_inputs(zm, cm, batch: int):
    """``batch`` samples of the zoo model's evaluation inputs (GCN: noisy copies)."""
    import torch

    if zm.task == "node-classification":
        g = torch.Generator().manual_seed(batch)
        base = cm.to_samples(zm.example_inputs)[0]
        return [torch.cat([s] + [s + 0.05 * torch.randn(s.shape, generator=g)
                                 for _ in range(batch - 1)]) for s in base]
    b0 = cm.example_shapes[0][0]
    n = batch * b0
    if zm.eval_inputs[0].shape[0] < n:
        raise NmxError(f"{zm.name}: {n} evaluation inputs needed, {zm.eval_inputs[0].shape[0]} "
                       "available")
    return cm.to_samples(tuple(t[:n] for t in zm.eval_inputs))[0]


def _one(name: str, config, batch: int, out: Path, report: bool) -> None:
    import torch

    from compiler.backend import compile as compile_bundle
    from compiler.convert import convert
    from compiler.zoo import load

    torch.set_num_threads(1)
    zm = load(name)
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    t0 = time.perf_counter()
    bundle = compile_bundle(cm, config, batch=batch, name=name)
    seconds = time.perf_counter() - t0
    bundle.save(out)
    m = bundle.manifest
    print(f"{name}: {m['instructions']} instructions, DRAM {m['dram_bytes']:,} bytes, compiled in "
          f"{seconds:.2f} s -> {out}")
    if not report:
        return
    from compiler.backend.report import build_report

    samples = sample_inputs(zm, cm, batch)
    torch.save(list(samples), out / "sample_inputs.pt")
    ref = cm.run_samples(samples, "int")
    res = bundle.run(samples)
    same = all(torch.equal(a, b) for a, b in zip(res.outputs, ref, strict=True))
    if not same:
        raise NmxError(f"{name}: the golden model's outputs differ from the integer executor")
    print(f"{name}: golden model {res.run.status}; outputs equal the integer executor bit for "
          "bit")
    rep = build_report(bundle, res.run)
    rep.print()
    rep.save_json(out / "report.json")
    rep.plot(out / "utilisation.png")


def run(args: argparse.Namespace) -> int:
    """Compile the chosen model(s)."""
    from compiler.zoo import MODEL_NAMES

    config = config_from_args(args)
    if args.batch < 1:
        raise NmxError(f"--batch must be >= 1, got {args.batch}")
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    for name in names:
        if name not in MODEL_NAMES:
            raise NmxError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)} or "
                           "all")
        out = args.output / name if args.model == "all" else args.output
        _one(name, config, args.batch, out, args.report)
    return 0
