"""hw.decoder.Decoder against hw.isa.decode, in Amaranth's simulator.

Random words biased towards nearly-legal ones (a legal instruction with one mutation: a flipped
bit, a field at or just below its minimum, an illegal enum value, a reserved bit, a forbidden
flag), plus uniformly random words. Many decoders are simulated side by side so that one settle
checks a batch of words.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.decoder import Decoder, UnitCode, unit_choices
from hw.isa import (
    ALLOWED_DEPS,
    DEP_FLAGS,
    HEADER_BITS,
    INSTRUCTION_CLASSES,
    WORD_BITS,
    IsaError,
    Opcode,
    decode,
    encode,
    field_specs,
)

BATCH = 64


class DecoderBank(wiring.Component):
    """``n`` independent decoders: words in, (illegal, unit) out, for batched simulation."""

    def __init__(self, n: int):
        self._n = n
        super().__init__(
            {
                "words": In(WORD_BITS).array(n),
                "illegal": Out(1).array(n),
                "unit": Out(UnitCode).array(n),
            }
        )
        self.decoders = [Decoder() for _ in range(n)]

    def elaborate(self, platform):
        m = Module()
        for i, dec in enumerate(self.decoders):
            m.submodules[f"dec{i}"] = dec
            m.d.comb += [
                dec.word.eq(self.words[i]),
                self.illegal[i].eq(dec.illegal),
                self.unit[i].eq(dec.unit),
            ]
        return m


def random_legal(rng: random.Random):
    op = rng.choice(list(INSTRUCTION_CLASSES))
    cls = INSTRUCTION_CLASSES[op]
    kwargs = {}
    for s in field_specs(op):
        if s.kind == "enum":
            kwargs[s.name] = rng.choice(list(s.enum))
        elif s.kind == "bool":
            kwargs[s.name] = rng.random() < 0.5
        else:
            lo, hi = s.value_range
            kwargs[s.name] = rng.choice([lo, hi, rng.randint(lo, hi), min(hi, lo + 1)])
    ins = cls(**kwargs)
    flags = {f: f in ALLOWED_DEPS[ins.unit] and rng.random() < 0.5 for f in DEP_FLAGS}
    return dataclasses.replace(ins, **flags)


def nearly_legal_word(rng: random.Random) -> int:
    """A legal word, or one mutation away from one (most mutations make it illegal)."""
    ins = random_legal(rng)
    word = encode(ins)
    specs = field_specs(ins.opcode)
    end = specs[-1].offset + specs[-1].bits if specs else HEADER_BITS
    kind = rng.randrange(8)
    if kind == 0:
        return word
    if kind == 1:
        return word ^ (1 << rng.randrange(WORD_BITS))
    if kind == 2 and end < WORD_BITS:
        return word | (1 << rng.randrange(end, WORD_BITS))
    if kind == 3:
        return word | (1 << (4 + rng.randrange(4)))
    if kind == 4:
        return (word & ~0xF) | rng.randrange(16)
    fields = [s for s in specs if s.kind in ("enum", "u")]
    if not fields:
        return word ^ (1 << rng.randrange(WORD_BITS))
    s = rng.choice(fields)
    mask = ((1 << s.bits) - 1) << s.offset
    if s.kind == "enum":
        raw = rng.randrange(1 << s.bits)
    else:
        raw = rng.choice([0, s.minimum, max(0, s.minimum - 1), (1 << s.bits) - 1])
    return (word & ~mask) | (raw << s.offset)


def reference(word: int) -> tuple[bool, int | None]:
    try:
        ins = decode(word)
    except IsaError:
        return True, None
    return False, ins.unit.value


def run_bank(words: list[int]) -> list[tuple[bool, int]]:
    bank = DecoderBank(BATCH)
    out: list[tuple[bool, int]] = []

    async def bench(ctx):
        for start in range(0, len(words), BATCH):
            chunk = words[start : start + BATCH]
            for i, w in enumerate(chunk):
                ctx.set(bank.words[i], w)
            for i in range(len(chunk)):
                out.append((bool(ctx.get(bank.illegal[i])), ctx.get(bank.unit[i]).value))

    sim = Simulator(bank)
    sim.add_testbench(bench)
    sim.run()
    return out


def check(words: list[int]) -> None:
    got = run_bank(words)
    bad = []
    for w, (illegal, unit) in zip(words, got, strict=True):
        ref_illegal, ref_unit = reference(w)
        if illegal != ref_illegal or (not illegal and unit != ref_unit):
            bad.append(f"{w:#034x}: rtl illegal={illegal} unit={unit}, "
                       f"hw.isa illegal={ref_illegal} unit={ref_unit}")
    assert not bad, f"{len(bad)} of {len(words)} words differ:\n" + "\n".join(bad[:20])


def test_unit_of_sync_follows_its_target():
    field, units = unit_choices(Opcode.SYNC)
    assert field == "target"
    assert {u.name for u in units.values()} == {"LOAD", "COMPUTE", "STORE"}
    assert unit_choices(Opcode.GEMM) == (None, {0: INSTRUCTION_CLASSES[Opcode.GEMM].UNIT})


def test_directed_corner_words():
    words = [0, (1 << WORD_BITS) - 1, 1, 2, 9, 0x19, 0x29, 0x39, 0x1F9]
    for op in Opcode:
        words.append(op.value)
        for bit in range(4, 8):
            words.append(op.value | (1 << bit))
        words.append(op.value | (1 << (WORD_BITS - 1)))
    check(words)


def test_random_nearly_legal_words_match_hw_isa():
    rng = random.Random(8)
    words = [nearly_legal_word(rng) for _ in range(3000)]
    words += [rng.getrandbits(WORD_BITS) for _ in range(200)]
    legal = sum(not reference(w)[0] for w in words)
    assert 0.2 * len(words) < legal < 0.8 * len(words), f"{legal} legal of {len(words)}"
    check(words)


def test_decoded_layout_matches_hw_isa_fields():
    """The ``decoded`` view gives each field the value hw.isa.decode gives it."""
    rng = random.Random(3)
    instrs = [random_legal(rng) for _ in range(60)]
    dec = Decoder()
    failures = []

    async def bench(ctx):
        for ins in instrs:
            ctx.set(dec.word, encode(ins))
            body = getattr(dec.decoded.body, ins.opcode.name.lower())
            for s in field_specs(ins.opcode):
                got = ctx.get(getattr(body, s.name))
                want = getattr(ins, s.name)
                if s.kind == "bool":
                    want = int(want)
                if s.kind != "enum":
                    got = int(got)
                if got != want:
                    failures.append((ins, s.name, got, want))
            header = dec.decoded.header
            assert ctx.get(header.opcode) == ins.opcode
            for f in DEP_FLAGS:
                assert ctx.get(getattr(header, f)) == int(getattr(ins, f))

    sim = Simulator(dec)
    sim.add_testbench(bench)
    sim.run()
    assert not failures, failures[:5]


@pytest.mark.slow
def test_many_random_words_match_hw_isa():
    rng = random.Random(2026)
    check([nearly_legal_word(rng) for _ in range(40_000)])
