"""Assembler and disassembler: round trips, syntax, errors, and the nmx asm/disasm commands."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from hw.assembler import AsmError, assemble, disassemble, read_equates
from hw.config import preset
from hw.isa import Epi, EpiDest, Gemm, GemmMode, Halt, IsaError, Load, Program
from nmx.cli import main
from tests.isa_strategies import programs

CFG = preset("default")


@given(programs())
@settings(max_examples=150, deadline=None)
def test_assemble_disassemble_roundtrip(prog):
    blob = prog.to_bytes(CFG)
    assert assemble(disassemble(blob)).to_bytes(CFG) == blob


def test_syntax_equ_expressions_defaults_and_flags():
    text = """
    ; a comment
    .equ ROWS 4
    .equ BASE 0x100          # another comment
    load mem=ACC, dst=ROWS*2, outer = (ROWS + 1), inner=1, offset=BASE+16, length=4 push_next
    gemm mode=accumulate m=ROWS k_tiles=2 n_tiles=1 pop_prev push_next
    epi dest=SCALE m=1 n_tiles=1 col=3 out_shift=15
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
        ("store rows=1 tiles=1 length=1 push_next", r"store: field 'push_next'"),
        ("gemm m=2 k_tiles=1", r"src.nmasm:1: gemm: missing count field\(s\) n_tiles"),
        ("load length=3", r"load: missing count field\(s\) outer, inner"),
        (".equ 9x 3", r"expected '.equ NAME expression'"),
        ("gemm transpose=2", r"field 'transpose': expected 0 or 1"),
        ("gemm m=__import__('os')", r"field 'm': unsupported expression"),
        (".equ A 1\nhalt\n.equ A 2", r"src.nmasm:3: .equ A defined again \(first defined on li"),
        ("gemm pop_prev pop_prev", r"src.nmasm:1: gemm: flag 'pop_prev' given twice"),
    ],
)
def test_errors_name_line_and_field(text, message):
    with pytest.raises(AsmError, match=message):
        assemble(text, source="src.nmasm")


def test_disassemble_malformed_binary_names_word():
    blob = bytearray(Program([Halt(), Halt()]).to_bytes(CFG))
    blob[32 + 16] = 0x0E
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
    assert f"; program for config {CFG.stamp}, 2 instructions" in text
    assert assemble(text.split("\n", 1)[1]).to_bytes(CFG) == out.read_bytes()
    src.write_text("gemm m=0\n")
    assert main(["asm", str(src), "-o", str(out)]) == 2
    assert "p.nmasm:1: gemm: field 'm'" in capsys.readouterr().err
    out.write_bytes(out.read_bytes()[:-1])
    assert main(["disasm", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_cli_asm_stamps_the_chosen_config(tmp_path, capsys):
    src = tmp_path / "p.nmasm"
    src.write_text("halt\n")
    out = tmp_path / "p.bin"
    assert main(["asm", str(src), "-o", str(out), "--config", "tiny", "--set", "rows=8"]) == 0
    cfg = preset("tiny").replace(rows=8)
    assert Program.read_header(out.read_bytes()).stamp == cfg.stamp
    assert f"(config {cfg.stamp})" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    binary = tmp_path / "p.bin"
    binary.write_bytes(Program([Halt()]).to_bytes(CFG) + bytes([0xFF, 0xFE]))
    src = tmp_path / "p.nmasm"
    src.write_bytes(b"halt\n; caf\xe9\n")  # Latin-1, not UTF-8
    cases = [
        (["asm", str(binary), "-o", str(tmp_path / "x")], "not assembler text"),
        (["asm", str(src), "-o", str(tmp_path / "x")], "p.nmasm:2: not assembler text"),
        (["disasm", str(tmp_path / "q.bin")], "cannot read"),
    ]
    good = tmp_path / "good.bin"
    good.write_bytes(Program([Halt()]).to_bytes(CFG))
    cases.append((["disasm", str(good), "-o", str(tmp_path / "no" / "x")], "cannot write"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
