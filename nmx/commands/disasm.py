"""``nmx disasm PROGRAM``: print a program binary in assembler text form."""

from __future__ import annotations

from hw.assembler import disassemble
from nmx import files


def add_arguments(parser) -> None:
    """Register the command's arguments."""
    parser.add_argument("program", help="program binary (from `nmx asm`)")
    parser.add_argument("-o", "--output", help="write the text here instead of stdout")


def run(args) -> int:
    """Disassemble ``args.program``."""
    text = disassemble(files.read_bytes(args.program, "program"))
    if args.output:
        files.write_text(args.output, text, "-o")
    else:
        print(text, end="")
    return 0
