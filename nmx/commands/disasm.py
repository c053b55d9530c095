"""``nmx disasm PROGRAM``: print a program binary in assembler text form."""

from __future__ import annotations

from pathlib import Path

from hw.assembler import disassemble
from hw.errors import NmxError


def add_arguments(parser) -> None:
    """Register the command's arguments."""
    parser.add_argument("program", help="program binary (from `nmx asm`)")
    parser.add_argument("-o", "--output", help="write the text here instead of stdout")


def run(args) -> int:
    """Disassemble ``args.program``."""
    try:
        blob = Path(args.program).read_bytes()
    except OSError as e:
        raise NmxError(f"cannot read {args.program!r}: {e.strerror}") from None
    text = disassemble(blob)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as e:
            raise NmxError(f"cannot write {args.output!r}: {e.strerror}") from None
    else:
        print(text, end="")
    return 0
