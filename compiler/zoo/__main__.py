"""``python -m compiler.zoo [NAME ...]``: load (training on first use) and summarise zoo models."""

from __future__ import annotations

import argparse
import sys
import time

from compiler.zoo import MODEL_NAMES, ZooError, load


def main(argv: list[str] | None = None) -> int:
    """Print per model: float test accuracy, training wall/CPU time, load time, checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m compiler.zoo", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"default: {' '.join(MODEL_NAMES)}"
    )
    args = parser.parse_args(argv)
    print(
        f"{'model':<10} {'float acc':>9} {'train s':>8} {'cpu s':>7} {'load s':>7}  "
        "checkpoint / description"
    )
    for name in args.names or MODEL_NAMES:
        start = time.perf_counter()
        try:
            zm = load(name)
        except ZooError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        seconds = time.perf_counter() - start
        print(
            f"{name:<10} {100 * zm.float_accuracy:>8.2f}% {zm.train_seconds:>8.1f} "
            f"{zm.train_cpu_seconds:>7.1f} {seconds:>7.2f}  {zm.checkpoint.name}\n"
            f"{'':<46}{zm.description}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
