"""docs/isa.md matches hw/isa.py: opcodes, fields (bit positions, widths), enums, status codes."""

from __future__ import annotations

import re
from pathlib import Path

from hw.isa import (
    EpiDest,
    GemmMode,
    MemSpace,
    Opcode,
    ScaleMode,
    SyncTarget,
    TableKind,
    field_specs,
)
from sim.golden import StatusCode

DOC = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text()
ENUMS = (MemSpace, TableKind, GemmMode, EpiDest, ScaleMode, SyncTarget)


def _rows(header: str, text: str = DOC) -> list[list[str]]:
    """Rows of every markdown table whose header line starts with ``header``."""
    rows, active = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith(header):
                active = True
            elif active and not set(cells[0]) <= {"-"}:
                rows.append(cells)
        else:
            active = False
    return rows


def _sections() -> dict[str, tuple[int, str]]:
    """'#### NAME (opcode N)' section -> (N, section text)."""
    out = {}
    parts = re.split(r"^#### ", DOC, flags=re.M)
    for part in parts[1:]:
        m = re.match(r"(\w+) \(opcode (\d+)\)", part)
        if m:
            out[m.group(1)] = (int(m.group(2)), part.split("\n### ")[0])
    return out


def test_opcode_table_matches():
    table = {(int(r[0]), r[1]) for r in _rows("| opcode | name |")}
    assert table == {(op.value, op.name) for op in Opcode}


def test_every_opcode_has_a_field_section_and_no_extra():
    sections = _sections()
    assert set(sections) == {op.name for op in Opcode}
    for name, (value, _) in sections.items():
        assert Opcode[name].value == value


def test_field_tables_match_bit_for_bit():
    for name, (_, text) in _sections().items():
        doc_fields = [(r[0], r[1], int(r[2])) for r in _rows("| field | bits |", text)]
        code_fields = [
            (s.name, f"{s.offset + s.bits - 1}:{s.offset}", s.bits)
            for s in field_specs(Opcode[name])
        ]
        assert doc_fields == code_fields, name


def test_field_kinds_and_minimums_match():
    for name, (_, text) in _sections().items():
        kinds = {r[0]: r[3] for r in _rows("| field | bits |", text)}
        for s in field_specs(Opcode[name]):
            if s.kind == "enum":
                assert kinds[s.name] == s.enum.__name__
            else:
                expect = {"u": "unsigned", "s": "signed", "bool": "bool"}[s.kind]
                if s.minimum:
                    expect += f" >= {s.minimum}"
                assert kinds[s.name] == expect, (name, s.name)


def test_enum_table_matches():
    table = {(r[0], int(r[1]), r[2]) for r in _rows("| enum | value | name |")}
    assert table == {(e.__name__, m.value, m.name) for e in ENUMS for m in e}


def test_status_codes_match():
    table = {(int(r[0]), r[1]) for r in _rows("| code | name |")}
    assert table == {(c.value, c.name) for c in StatusCode}


def test_header_bits_match():
    rows = _rows("| bits | name |")
    assert [(r[0], r[1]) for r in rows] == [
        ("3:0", "opcode"), ("4", "pop_prev"), ("5", "pop_next"), ("6", "push_prev"),
        ("7", "push_next"),
    ]
