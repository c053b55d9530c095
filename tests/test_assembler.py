"""Assembler and disassembler: round trips, syntax, errors, and the nmx asm/disasm commands."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from hw.assembler import AsmError, assemble, disassemble, read_equates
from hw.isa import Epi, EpiDest, Gemm, GemmMode, Halt, IsaError, Load, Program
from nmx.cli import main
from tests.isa_strategies import programs


@given(programs())
@settings(max_examples=150, deadline=None)
def test_assemble_disassemble_roundtrip(prog):
    blob = prog.to_bytes()
    assert assemble(disassemble(blob)).to_bytes() == blob


def test_syntax_equ_expressions_defaults_and_flags():
    text = """
    ; a comment
    .equ ROWS 4
    .equ BASE 0x100          # another comment
    load mem=ACC, dst=ROWS*2, outer = (ROWS + 1), offset=BASE+16, length=4 push_next
    gemm mode=accumulate m=ROWS k_tiles=2 pop_prev push_next
    epi dest=SCALE m=1 col=3 out_shift=15
    halt
    """
    prog = assemble(text)
    load, gemm, epi, halt = prog.instructions
    assert isinstance(load, Load) and load.dst == 8 and load.outer == 5
    assert load.offset == 0x110 and load.push_next and load.inner == 1 and load.y0 == 0
    assert gemm == Gemm(mode=GemmMode.ACCUMULATE, m=4, k_tiles=2, pop_prev=True, push_next=True)
    assert epi == Epi(dest=EpiDest.SCALE, m=1, col=3, out_shift=15)
    assert halt == Halt()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frob x=1", r"src.nmasm:1: unknown mnemonic 'frob'"),
        ("halt\ngemm m=0", r"src.nmasm:2: gemm: field 'm': value 0 outside 1..4095"),
        ("gemm q=1", r"src.nmasm:1: gemm: unknown field 'q'"),
        ("gemm mode=SIDEWAYS", r"field 'mode': 'SIDEWAYS' is not one of"),
        ("gemm m=FOO", r"field 'm': undefined name 'FOO'"),
        ("gemm m=1 m=2", r"field 'm' given twice"),
        ("gemm wait", r"'wait' is neither field=value nor a dependency flag"),
        ("store push_next", r"store: field 'push_next'"),
        (".equ 9x 3", r"expected '.equ NAME expression'"),
        ("gemm transpose=2", r"field 'transpose': expected 0 or 1"),
        ("gemm m=__import__('os')", r"field 'm': unsupported expression"),
    ],
)
def test_errors_name_line_and_field(text, message):
    with pytest.raises(AsmError, match=message):
        assemble(text, source="src.nmasm")


def test_disassemble_malformed_binary_names_word():
    blob = bytearray(Program([Halt(), Halt()]).to_bytes())
    blob[16 + 16] = 0x0E
    with pytest.raises(IsaError, match=r"word 1: field 'opcode': illegal opcode 14"):
        disassemble(bytes(blob))


def test_read_equates(tmp_path):
    p = tmp_path / "a.nmasm"
    p.write_text(".equ A 3\n.equ B A*2 ; six\nhalt\n")
    assert read_equates(p) == {"A": 3, "B": 6}


def test_cli_asm_disasm(tmp_path, capsys):
    src = tmp_path / "p.nmasm"
    src.write_text("gemm m=3 k_tiles=2 n_tiles=2 pop_prev\nhalt\n")
    out = tmp_path / "p.bin"
    assert main(["asm", str(src), "-o", str(out)]) == 0
    assert main(["disasm", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gemm mode=OVERWRITE transpose=0" in text and "pop_prev" in text
    assert assemble(text.split("\n", 1)[1]).to_bytes() == out.read_bytes()
    src.write_text("gemm m=0\n")
    assert main(["asm", str(src), "-o", str(out)]) == 2
    assert "p.nmasm:1: gemm: field 'm'" in capsys.readouterr().err
    out.write_bytes(out.read_bytes()[:-1])
    assert main(["disasm", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
