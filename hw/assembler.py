"""Assembler and disassembler: the readable text form of programs (``.nmasm``).

Syntax, one instruction per line::

    ; comment (also '#')
    .equ NAME expression            ; a named constant, usable in later expressions
    mnemonic field=value field=value ... flag flag

``mnemonic`` is an opcode name (case-insensitive, e.g. ``gemm``). ``value`` is an integer
expression (decimal, ``0x`` hex, ``0b`` binary, ``.equ`` names, ``+ - * // % << >> & |`` and
parentheses) or, for enum fields, the member name (``mode=ACCUMULATE``). Bare words after the
mnemonic are dependency flags (``pop_prev``, ``pop_next``, ``push_prev``, ``push_next``). Count
fields (those whose minimum is 1: ``m``, ``k_tiles``, ``outer``, ``length``, ``pix``, ...) must be
given: an unset count silently becoming 1 would be a wrong program. Other fields left out are 0,
or the first enum member (``mode=OVERWRITE``, ``mem=SPAD``, ...). Fields may be
separated by spaces or commas. A ``.equ`` name defined twice, or a field or flag given twice on
one line, is an error naming the line.

The disassembler prints every field of every instruction in bit order, so
``assemble(disassemble(b)) == b`` for every valid program ``b``.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path

from hw.errors import NmxError
from hw.isa import (
    DEP_FLAGS,
    INSTRUCTION_CLASSES,
    IsaError,
    Opcode,
    Program,
    encode,
    field_specs,
)

__all__ = [
    "AsmError",
    "assemble",
    "assemble_file",
    "disassemble",
    "format_instruction",
    "read_equates",
]


class AsmError(NmxError, ValueError):
    """A syntax or value error in assembler text; names the source, line and field."""


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _eval(expr: str, names: dict[str, int]) -> int:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse expression {expr!r}") from None

    def ev(node) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"undefined name {node.id!r}")
            return names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            num, den = ev(node.left), ev(node.right)
            if den == 0 or num % den:
                raise ValueError(f"{ast.unparse(node)!r} is not an exact integer division")
            return num // den
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression {ast.unparse(node)!r} in {expr!r}")

    return ev(tree.body)


def _strip(line: str) -> str:
    for mark in (";", "#"):
        pos = line.find(mark)
        if pos >= 0:
            line = line[:pos]
    return line.strip()


def _tokens(text: str) -> list[str]:
    """Split on spaces/commas, but keep ``name = expr`` (with spaces in expr) together."""
    text = re.sub(r"\s*=\s*", "=", text)
    out: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and (ch.isspace() or ch == ","):
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def assemble(text: str, *, source: str = "<text>") -> Program:
    """Assemble program text; errors raise AsmError naming ``source``, the line and the field."""
    names: dict[str, int] = {}
    equ_lines: dict[str, int] = {}
    instructions = []
    mnemonics = {op.name.lower(): op for op in Opcode}
    for lineno, line in enumerate(text.splitlines(), start=1):
        body = _strip(line)
        if not body:
            continue
        where = f"{source}:{lineno}"
        if body.startswith("."):
            parts = body.split(None, 2)
            if parts[0] != ".equ" or len(parts) != 3 or not _NAME.match(parts[1]):
                raise AsmError(f"{where}: expected '.equ NAME expression', got {body!r}")
            if parts[1] in names:
                raise AsmError(
                    f"{where}: .equ {parts[1]} defined again (first defined on line "
                    f"{equ_lines[parts[1]]})"
                )
            equ_lines[parts[1]] = lineno
            try:
                names[parts[1]] = _eval(parts[2], names)
            except ValueError as e:
                raise AsmError(f"{where}: .equ {parts[1]}: {e}") from None
            continue
        toks = _tokens(body)
        mnem = toks[0].lower()
        if mnem not in mnemonics:
            raise AsmError(
                f"{where}: unknown mnemonic {toks[0]!r}; known: {', '.join(sorted(mnemonics))}"
            )
        op = mnemonics[mnem]
        specs = {s.name: s for s in field_specs(op)}
        kwargs: dict[str, object] = {}
        for tok in toks[1:]:
            if "=" not in tok:
                if tok.lower() in DEP_FLAGS:
                    if tok.lower() in kwargs:
                        raise AsmError(f"{where}: {mnem}: flag {tok.lower()!r} given twice")
                    kwargs[tok.lower()] = True
                    continue
                raise AsmError(
                    f"{where}: {mnem}: {tok!r} is neither field=value nor a dependency flag "
                    f"({', '.join(DEP_FLAGS)})"
                )
            name, value = tok.split("=", 1)
            name = name.lower()
            if name not in specs:
                raise AsmError(
                    f"{where}: {mnem}: unknown field {name!r}; fields: {', '.join(specs)}"
                )
            if name in kwargs:
                raise AsmError(f"{where}: {mnem}: field {name!r} given twice")
            spec = specs[name]
            if spec.kind == "enum":
                member = spec.enum.__members__.get(value.upper())
                if member is None:
                    raise AsmError(
                        f"{where}: {mnem}: field {name!r}: {value!r} is not one of "
                        f"{', '.join(spec.enum.__members__)}"
                    )
                kwargs[name] = member
                continue
            try:
                v = _eval(value, names)
            except ValueError as e:
                raise AsmError(f"{where}: {mnem}: field {name!r}: {e}") from None
            if spec.kind == "bool":
                if v not in (0, 1):
                    raise AsmError(f"{where}: {mnem}: field {name!r}: expected 0 or 1, got {v}")
                v = bool(v)
            kwargs[name] = v
        ins = INSTRUCTION_CLASSES[op](**kwargs)
        try:
            encode(ins)
        except IsaError as e:
            raise AsmError(f"{where}: {mnem}: {e}") from None
        missing = [n for n, spec in specs.items() if spec.minimum >= 1 and n not in kwargs]
        if missing:
            raise AsmError(
                f"{where}: {mnem}: missing count field(s) {', '.join(missing)} (count fields "
                "have no default)"
            )
        instructions.append(ins)
    return Program(instructions)


def _read_source(path) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise AsmError(f"cannot read {str(p)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise AsmError(
            f"{p}:{line}: not assembler text (byte {e.start} is not UTF-8; "
            "is this a binary file?)"
        ) from None


def assemble_file(path) -> Program:
    """Assemble the file at ``path``."""
    return assemble(_read_source(path), source=str(path))


def read_equates(path) -> dict[str, int]:
    """The ``.equ`` constants defined in an assembler file (e.g. for a DRAM-image builder)."""
    names: dict[str, int] = {}
    for lineno, line in enumerate(_read_source(path).splitlines(), start=1):
        body = _strip(line)
        if body.startswith(".equ"):
            parts = body.split(None, 2)
            if len(parts) > 1 and parts[1] in names:
                raise AsmError(f"{path}:{lineno}: .equ {parts[1]} defined again")
            try:
                names[parts[1]] = _eval(parts[2], names)
            except (ValueError, IndexError) as e:
                raise AsmError(f"{path}:{lineno}: {e}") from None
    return names


def format_instruction(ins) -> str:
    """One instruction in canonical text form (every field, then the set dependency flags)."""
    parts = [ins.OPCODE.name.lower()]
    for spec in field_specs(ins.OPCODE):
        v = getattr(ins, spec.name)
        if spec.kind == "enum":
            parts.append(f"{spec.name}={v.name}")
        elif spec.kind == "bool":
            parts.append(f"{spec.name}={int(v)}")
        elif spec.name in ("offset", "value"):
            parts.append(f"{spec.name}={v:#x}")
        else:
            parts.append(f"{spec.name}={v}")
    parts.extend(f for f in DEP_FLAGS if getattr(ins, f))
    return " ".join(parts)


def disassemble(program: Program | bytes) -> str:
    """Text form of a program (file bytes or :class:`Program`); malformed input raises IsaError.

    For file bytes the first line is a comment naming the config the file was built for.
    """
    lines = []
    if not isinstance(program, Program):
        blob = bytes(program)
        header = Program.read_header(blob)
        program = Program.from_bytes(blob)
        lines.append(f"; program for config {header.stamp}, {header.count} instructions")
    lines += [
        f"{format_instruction(ins):<100s} ; word {i}" for i, ins in enumerate(program.instructions)
    ]
    return "\n".join(lines) + "\n"
