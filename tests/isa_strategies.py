"""Hypothesis strategies for instructions and programs (shared by the ISA and assembler tests)."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from hw.isa import ALLOWED_DEPS, DEP_FLAGS, INSTRUCTION_CLASSES, Instruction, Program, field_specs


def _field(spec):
    if spec.kind == "enum":
        return st.sampled_from(list(spec.enum))
    if spec.kind == "bool":
        return st.booleans()
    lo, hi = spec.value_range
    return st.integers(lo, hi)


@st.composite
def instructions(draw, opcodes=None) -> Instruction:
    """Any valid instruction (optionally restricted to ``opcodes``)."""
    op = draw(st.sampled_from(list(opcodes or INSTRUCTION_CLASSES)))
    cls = INSTRUCTION_CLASSES[op]
    ins = cls(**{s.name: draw(_field(s)) for s in field_specs(op)})
    flags = {f: f in ALLOWED_DEPS[ins.unit] and draw(st.booleans()) for f in DEP_FLAGS}
    return dataclasses.replace(ins, **flags)


def programs(max_size: int = 20):
    """Programs of valid instructions."""
    return st.lists(instructions(), max_size=max_size).map(Program)
