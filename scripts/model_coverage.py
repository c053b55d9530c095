"""Coverage of real architectures: convert each one and print the table.

    .venv/bin/python scripts/model_coverage.py                 # every architecture, table sizes
    .venv/bin/python scripts/model_coverage.py --size tiny     # toy sizes (what `make test` runs)
    .venv/bin/python scripts/model_coverage.py resnet18 bert-sdpa --json build/coverage.json

Columns: model, family, converts, the int-vs-float cosine on held-out random inputs (worst
sample's logit cosine for classifiers and graph networks, mean per-token cosine of the final
hidden states over unpadded tokens for encoders) with the default precision policy
(``convert(..., wide="auto")``), the same conversion with every GEMM operand int8, how many
tensors the policy holds at 16 bits, the float model's own cosine when one int8
step of noise is added to its input (how much the random-weight network amplifies a
quantisation-sized perturbation), the ops that block conversion, conversion time and GEMM node
count. Models are built from their configs with random weights (nothing is
downloaded): see compiler/coverage/architectures.py. docs/coverage.md holds the last table.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.coverage.architectures import ARCHITECTURES, SIZES  # noqa: E402
from compiler.coverage.measure import measure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*",
                   help=f"architectures (default: all): {', '.join(ARCHITECTURES)}")
    p.add_argument("--size", choices=SIZES, default="table")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in ARCHITECTURES]
    if unknown:
        p.error(f"unknown architecture(s) {', '.join(unknown)}; known: {', '.join(ARCHITECTURES)}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.json is not None and not args.json.parent.is_dir():
        p.error(f"--json: folder {args.json.parent} does not exist")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    print("| model | family | converts | int vs float cosine | all-int8 cosine | 16-bit tensors | "
          "16-bit weights | float under 1-step noise | blocking ops | seconds | nodes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.names or list(ARCHITECTURES):
        r = measure(name, args.size)
        rows.append(r)
        cos = "" if r.cosine is None else f"{r.cosine:.4f}"
        sens = "" if r.sensitivity is None else f"{r.sensitivity:.4f}"
        int8 = cos if r.int8_cosine is None else f"{r.int8_cosine:.4f}"
        print(f"| {r.name} | {r.family} | {'yes' if r.converts else 'no'} | {cos} | {int8} | "
              f"{r.wide} | {r.wide_weights} | {sens} | {r.blocking} | {r.seconds:.1f} | "
              f"{r.nodes} |", flush=True)
    ok = sum(r.converts for r in rows)
    good = sum(r.converts and r.cosine is not None and r.cosine >= 0.99 for r in rows)
    print(f"\n{ok}/{len(rows)} convert; {good}/{len(rows)} convert with cosine >= 0.99")
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
