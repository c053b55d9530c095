"""The ISA definition: encode/decode round trips, malformed words, and the Amaranth layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.config import preset
from hw.isa import (
    DEP_FLAGS,
    HEADER_BITS,
    INSTRUCTION_CLASSES,
    WORD_BITS,
    WORD_LAYOUT,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    IsaError,
    Load,
    Opcode,
    Program,
    Setbase,
    Store,
    body_layout,
    decode,
    encode,
    field_specs,
)
from tests.isa_strategies import instructions, programs

CFG = preset("default")


@given(instructions())
@settings(max_examples=400, deadline=None)
def test_decode_encode_roundtrip(ins):
    word = encode(ins)
    assert 0 <= word < (1 << WORD_BITS)
    assert decode(word) == ins


@given(st.integers(0, (1 << WORD_BITS) - 1))
@settings(max_examples=400, deadline=None)
def test_decode_any_word_is_an_instruction_or_an_isa_error(word):
    try:
        ins = decode(word, offset=7)
    except IsaError as e:
        assert e.word == 7 and e.field is not None
        assert "word 7" in str(e)
    else:
        assert encode(ins) == word


@given(programs())
@settings(max_examples=100, deadline=None)
def test_program_file_roundtrip(prog):
    assert Program.from_bytes(prog.to_bytes(CFG), CFG) == prog


@given(instructions())
@settings(deadline=None)
def test_amaranth_layout_matches_python_encoding(ins):
    """The RTL decoder's lib.data layout places every field where the encoder puts it."""
    body = body_layout(ins.OPCODE)
    assert body.size == WORD_BITS - HEADER_BITS
    init = {}
    for spec in field_specs(ins.OPCODE):
        v = getattr(ins, spec.name)
        init[spec.name] = int(v) if spec.kind == "bool" else v
    header = {"opcode": ins.OPCODE, **{f: int(getattr(ins, f)) for f in DEP_FLAGS}}
    const = WORD_LAYOUT.const({"header": header, "body": {ins.OPCODE.name.lower(): init}})
    assert const.as_value().value == encode(ins)


def test_every_opcode_has_a_class_and_fits():
    assert set(INSTRUCTION_CLASSES) == set(Opcode)
    for op in Opcode:
        specs = field_specs(op)
        assert sum(s.bits for s in specs) + HEADER_BITS <= WORD_BITS
        offsets = [s.offset for s in specs]
        assert offsets == sorted(offsets)


@pytest.mark.parametrize("raw", [0, 10, 15])
def test_illegal_opcode(raw):
    with pytest.raises(IsaError, match=r"word 3: field 'opcode': illegal opcode"):
        decode(raw, offset=3)


def test_illegal_enum_value_names_the_field():
    word = encode(Epi(dest=EpiDest.SPAD))
    spec = next(s for s in field_specs(Opcode.EPI) if s.name == "dest")
    word |= 3 << spec.offset
    with pytest.raises(IsaError, match=r"word 5: field 'dest': illegal EpiDest value 3"):
        decode(word, offset=5)


def test_every_gemm_mode_is_legal():
    """ISA v3 made GemmMode 3 (ACCUMULATE_BIAS) legal: all four 2-bit values decode."""
    for mode in GemmMode:
        assert decode(encode(Gemm(mode=mode))).mode is mode
    assert [m.value for m in GemmMode] == [0, 1, 2, 3]


def test_reserved_bits_must_be_zero():
    with pytest.raises(IsaError, match="field 'reserved'"):
        decode(encode(Halt()) | (1 << 100), offset=0)


def test_below_minimum_is_rejected():
    word = encode(Load())  # outer = inner = length = 1
    spec = next(s for s in field_specs(Opcode.LOAD) if s.name == "length")
    word &= ~(((1 << spec.bits) - 1) << spec.offset)
    with pytest.raises(IsaError, match="field 'length': value 0 below the minimum 1"):
        decode(word, offset=2)


def test_dependency_flag_not_allowed_for_unit():
    with pytest.raises(IsaError, match="field 'push_next'"):
        encode(Store(push_next=True))
    with pytest.raises(IsaError, match="field 'pop_prev'"):
        decode(encode(Setbase()) | (1 << 4), offset=1)


def test_encode_range_errors_name_the_field():
    with pytest.raises(IsaError, match="field 'm': value 4096 outside 1..4095"):
        encode(Gemm(m=4096))
    with pytest.raises(IsaError, match="field 'y0'"):
        encode(Load(y0=1 << 13))
    with pytest.raises(IsaError, match=r"word 1: field 'k_tiles'"):
        Program([Halt(), Gemm(k_tiles=0)]).to_bytes(CFG)


def test_truncated_and_malformed_program_files():
    blob = Program([Gemm(), Halt()]).to_bytes(CFG)
    with pytest.raises(IsaError, match=r"word 1: field 'reserved': truncated: 13 of 16"):
        Program.from_bytes(blob[:-3])
    cut = Program([Halt(), Gemm()]).to_bytes(CFG)[: 32 + 16 + 9]  # GEMM cut inside field m
    with pytest.raises(IsaError, match=r"word 1: field 'm': truncated: 9 of 16 bytes"):
        Program.from_bytes(cut)
    with pytest.raises(IsaError, match="magic"):
        Program.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(IsaError, match="shorter than"):
        Program.from_bytes(blob[:5])
    with pytest.raises(IsaError, match="announces 2 instructions but the file holds 1"):
        Program.from_bytes(blob[:-16])
    bad = bytearray(blob)
    bad[32 + 16] = 0  # second word's opcode -> 0
    with pytest.raises(IsaError, match=r"word 1: field 'opcode'"):
        Program.from_bytes(bytes(bad))


def test_words_tell_equal_instructions_of_different_field_types_apart():
    # Gemm(m=True) == Gemm(m=1) as dataclasses, but a bool is not an integer field value
    assert Gemm(m=True) == Gemm(m=1)
    for prog, word in ((Program([Gemm(m=1), Gemm(m=True), Halt()]), 1),
                       (Program([Gemm(m=True), Halt()]), 0)):
        with pytest.raises(IsaError, match=rf"word {word}: field 'm': expected an integer"):
            prog.words()
        with pytest.raises(IsaError, match=rf"word {word}: field 'm'"):  # not cached as valid
            prog.to_bytes(CFG)
    # dependency flags take 0/1 or a bool: equal values, equal words, whatever the order
    a, b = Gemm(pop_prev=1), Gemm(pop_prev=True)
    assert Program([a, b, Halt()]).words()[:2] == [encode(b), encode(b)]
    assert Program([b, a, Halt()]).words()[:2] == [encode(a), encode(a)]


def test_words_are_computed_once_per_program_and_returned_as_a_copy():
    prog = Program([Gemm(m=3), Gemm(m=3), Gemm(m=4), Halt()])
    first = prog.words()
    assert first == [encode(i) for i in prog.instructions]
    first.append(0)
    again = prog.words()
    assert again == first[:-1] and again is not first
    assert prog == Program(prog.instructions) and "_words" not in repr(prog)
