"""hw.registers: the register map's rules, and docs/architecture.md's copy of its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.registers import (
    COUNTERS,
    DOC_BEGIN,
    DOC_END,
    REGISTERS,
    Field,
    Register,
    RunState,
    by_name,
    decode_fields,
    markdown_table,
    word_offsets,
)
from sim.golden import StatusCode

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_docs_hold_the_generated_table():
    text = DOC.read_text()
    assert text.count(DOC_BEGIN) == 1 and text.count(DOC_END) == 1, "markers missing"
    between = text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0]
    assert between == "\n" + markdown_table(), (
        "docs/architecture.md's register table differs from hw.registers.markdown_table(); "
        "paste the function's output between the markers"
    )


def test_words_are_unique_and_aligned():
    offsets = [o for o, _, _ in word_offsets()]
    assert len(offsets) == len(set(offsets))
    assert all(o % 4 == 0 for o in offsets)
    assert max(offsets) < 4096, "the map fits the 12-bit AXI4-Lite address space"
    assert [r.offset for r in REGISTERS] == sorted(r.offset for r in REGISTERS)


def test_brief_registers_and_counters_exist():
    for name in ("CTRL", "STATUS", "STATUS_OFFSET", "PROG_ADDR", "PROG_LEN", "DRAM_LIMIT"):
        by_name(name)
    assert by_name("PROG_ADDR").width == by_name("DRAM_LIMIT").width == 64
    ctrl = by_name("CTRL")
    assert {f.name for f in ctrl.fields} == {"start", "soft_reset", "irq_enable"}
    names = [n for n, _ in COUNTERS]
    for q in ("L2C", "C2L", "C2S", "S2C"):
        assert f"STALL_{q}" in names
    for unit in ("LOAD", "COMPUTE", "STORE"):
        assert f"BUSY_{unit}" in names and f"RETIRED_{unit}" in names
    assert {"CYCLES", "ARRAY_MACS", "STALL_AXI_READ", "STALL_AXI_WRITE"} <= set(names)
    assert all(by_name(n).counter and by_name(n).width == 64 for n in names)


def test_status_code_field_holds_every_status_code():
    code = by_name("STATUS").field("code")
    assert max(StatusCode) < (1 << code.width)
    value = (StatusCode.FN_UNLOADED << code.lsb) | RunState.DONE
    assert decode_fields("STATUS", value) == {"state": RunState.DONE, "code": 11}


def test_bad_definitions_are_refused():
    with pytest.raises(ValueError, match="width 48"):
        Register("X", 0, 48, (), "x")
    with pytest.raises(ValueError, match="not aligned"):
        Register("X", 4, 64, (), "x")
    with pytest.raises(ValueError, match="overlap"):
        Register("X", 0, 32, (Field("a", 0, 4, "RW", 0, ""), Field("b", 3, 2, "RW", 0, "")), "x")
    with pytest.raises(ValueError, match="access"):
        Register("X", 0, 32, (Field("a", 0, 4, "WO", 0, ""),), "x")
    with pytest.raises(KeyError, match="no register 'NOPE'"):
        by_name("NOPE")
    with pytest.raises(KeyError, match="no field 'go'"):
        by_name("CTRL").field("go")
