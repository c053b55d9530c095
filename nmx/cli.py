"""``nmx``: one command line for the toolkit; the Makefile wraps its subcommands.

Each subcommand lives in its own module under :mod:`nmx.commands`, imported only when used, and
provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from hw.errors import NmxError

#: subcommand -> (module under nmx.commands, one-line help shown by ``nmx --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "rtl": ("rtl", "generate Verilog for a config preset"),
    "sim": ("sim", "run a zoo network on the simulated accelerator and check it"),
    "asm": ("asm", "assemble microcode text into a program binary"),
    "disasm": ("disasm", "disassemble a program binary"),
    "run-golden": ("run_golden", "run a program on the golden ISA model and cycle model"),
    "pwl": ("pwl", "fit a piecewise-linear approximation and report its error"),
    "convert": ("convert", "convert a zoo model and report its accuracy"),
    "zoo": ("zoo", "model zoo: shipped weights, targets across training seeds"),
    "ops": ("ops", "list the PyTorch ops the converter lowers, and the PWL functions"),
    "bench": ("bench", "benchmarks: golden-model speed, RTL cycles"),
    "compile": ("compile", "compile zoo models into bundles (program, DRAM image, manifest)"),
    "run": ("run", "run a compiled bundle on the golden model"),
}


def _load(name: str):
    return importlib.import_module(f"nmx.commands.{COMMANDS[name][0]}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser; only the module of the chosen subcommand is imported."""
    parser = argparse.ArgumentParser(prog="nmx", description="NeuralMatrix accelerator toolkit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        if name == chosen:
            mod = _load(name)
            p = sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=COMMANDS[name][1], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except NmxError as e:
        print(f"nmx {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output closed early, e.g. `nmx ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
