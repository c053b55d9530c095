"""Conversion time and peak memory of a BERT-base-sized encoder (transformers ``BertModel``).

    .venv/bin/python scripts/conversion_time.py            # 12 layers, hidden 768, sequence 128
    .venv/bin/python scripts/conversion_time.py --layers 2 --seq 32

Random weights (nothing is downloaded), one torch thread, inputs with padding as a tokenizer
gives them; prints the wall time of ``compiler.convert`` (capture + lowering, float self-check,
calibration, quantisation and PWL fits) with its breakdown, and the process's peak resident
memory. The CPU time is the one to compare with a one-core budget on a shared machine: the wall
time includes waiting for the core.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler import convert  # noqa: E402
from compiler.coverage.architectures import padded_batch  # noqa: E402
from compiler.thirdparty import import_transformers  # noqa: E402


class _LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--calibration", type=int, default=4, help="calibration sequences")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for name in ("layers", "hidden", "seq", "calibration", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.hidden % 64:
        p.error("--hidden must be a multiple of 64 (heads of 64)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tf = import_transformers()
    cfg = tf.BertConfig(num_hidden_layers=args.layers, hidden_size=args.hidden,
                        num_attention_heads=args.hidden // 64,
                        intermediate_size=4 * args.hidden)
    torch.manual_seed(0)
    model = _LastHidden(tf.BertModel(cfg)).eval()
    gen = torch.Generator().manual_seed(1)
    cal = [padded_batch(cfg.vocab_size, [args.seq - 7 * i], args.seq, gen)
           for i in range(args.calibration)]
    t0, c0 = time.perf_counter(), time.process_time()
    cm = convert(model, cal[0], cal)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"BertModel {args.layers} layers, hidden {args.hidden}, sequence {args.seq}, "
          f"{args.calibration} calibration sequences, {args.threads} thread(s)")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in cm.timings.items())
    print(f"convert: {seconds:.1f} s wall ({parts}), {cpu:.1f} s CPU; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"GEMM nodes: {len(cm.graph.nodes)}; peak resident memory: {peak:.0f} MiB")
    from compiler.report import precision_summary

    print(precision_summary(cm))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
