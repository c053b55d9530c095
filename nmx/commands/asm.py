"""``nmx asm FILE -o OUT``: assemble microcode text into a program binary for one config."""

from __future__ import annotations

from hw.assembler import assemble_file
from hw.errors import NmxError
from nmx import files
from nmx.commands.rtl import add_config_arguments, config_from_args


def add_arguments(parser) -> None:
    """Register the command's arguments."""
    parser.add_argument("source", help="assembler text (.nmasm)")
    parser.add_argument("-o", "--output", required=True, help="program binary to write")
    add_config_arguments(parser)


def run(args) -> int:
    """Assemble ``args.source`` into ``args.output``, stamped with the chosen config."""
    cfg = config_from_args(args)
    program = assemble_file(args.source)
    if not len(program):
        raise NmxError(f"{args.source}: no instructions (an empty program)")
    files.write_bytes(args.output, program.to_bytes(cfg), "-o")
    print(
        f"{args.source}: {len(program)} instructions -> {args.output} "
        f"(config {cfg.stamp})"
    )
    return 0
