"""Instruction decoder: a 128-bit word -> ``hw.isa.WORD_LAYOUT``, its unit, and whether illegal.

Every check is generated from the field table of :mod:`hw.isa` (:func:`hw.isa.field_specs`,
:data:`hw.isa.ALLOWED_DEPS`, the enums), so the decoder rejects exactly the words that
:func:`hw.isa.decode` rejects: illegal opcodes, illegal enum values, fields below their minimum,
non-zero reserved bits, and dependency flags that the instruction's unit does not allow. There is
no second bit map here: a field added to or moved in ``hw/isa.py`` changes the decoder with it.

The decoder is combinational (the dispatcher registers its outputs).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from hw.isa import (
    ALLOWED_DEPS,
    DEP_FLAGS,
    HEADER_BITS,
    INSTRUCTION_CLASSES,
    WORD_BITS,
    WORD_LAYOUT,
    Instruction,
    Opcode,
    Unit,
    field_specs,
)

__all__ = ["Decoder", "UnitCode", "unit_choices"]


class UnitCode(enum.Enum, shape=2):
    """:class:`hw.isa.Unit` as a hardware enum (the dispatcher, or the unit whose queue runs it)."""

    DISPATCH = Unit.DISPATCH.value
    LOAD = Unit.LOAD.value
    COMPUTE = Unit.COMPUTE.value
    STORE = Unit.STORE.value


def unit_choices(opcode: Opcode) -> tuple[str | None, dict[int, Unit]]:
    """How the unit of an ``opcode`` instruction follows from its fields.

    Returns ``(None, {0: unit})`` when the class fixes the unit, else ``(field, {raw: unit})``
    where the unit depends on the enum ``field`` (SYNC's ``target``): derived by asking the
    instruction class itself, for each legal value of that field.
    """
    cls = INSTRUCTION_CLASSES[opcode]
    if cls.unit is Instruction.unit:
        return None, {0: cls.UNIT}
    for spec in field_specs(opcode):
        if spec.kind != "enum":
            continue
        units = {v.value: cls(**{spec.name: v}).unit for v in spec.enum}
        if len(set(units.values())) > 1:
            return spec.name, units
    raise AssertionError(f"{cls.__name__} overrides `unit` but no enum field selects it")


class Decoder(wiring.Component):
    """Combinational decoder of one instruction word.

    Ports
    -----
    word : In(128)
        The raw instruction word (little-endian bit order of docs/isa.md).
    decoded : Out(hw.isa.WORD_LAYOUT)
        The same bits viewed through the ISA's layout (header plus per-opcode bodies).
    illegal : Out(1)
        High when :func:`hw.isa.decode` would raise for this word.
    unit : Out(UnitCode)
        The unit that executes the instruction (meaningful when ``illegal`` is low).
    ok_by_op : Out(16)
        Bit ``v``: the word passes the checks of opcode value ``v`` (0 for a value no opcode
        has), so ``illegal`` is ``~ok_by_op[opcode]``: a pipelined user registers these and
        selects with the registered opcode.
    """

    def __init__(self):
        super().__init__(
            {
                "word": In(WORD_BITS),
                "decoded": Out(WORD_LAYOUT),
                "illegal": Out(1),
                "unit": Out(UnitCode),
                "ok_by_op": Out(16),
            }
        )

    def elaborate(self, platform):
        m = Module()
        word = self.word
        m.d.comb += self.decoded.as_value().eq(word)
        opcode = word[0:4]
        flags = {name: word[4 + i] for i, name in enumerate(DEP_FLAGS)}

        legal_any = 0
        for op in Opcode:
            is_op = opcode == op.value
            ok = 1
            end = HEADER_BITS
            for spec in field_specs(op):
                raw = word[spec.offset : spec.offset + spec.bits]
                end = spec.offset + spec.bits
                if spec.kind == "enum":
                    legal_values = [v.value for v in spec.enum]
                    if len(legal_values) < (1 << spec.bits):
                        member = 0
                        for v in legal_values:
                            member = member | (raw == v)
                        ok = ok & member
                elif spec.kind == "u" and spec.minimum > 0:
                    ok = ok & (raw >= spec.minimum)
            if end < WORD_BITS:
                ok = ok & (word[end:] == 0)

            selector, units = unit_choices(op)
            if selector is None:
                (unit,) = units.values()
                ok = ok & self._flags_allowed(flags, unit)
                with m.If(is_op):
                    m.d.comb += self.unit.eq(UnitCode(unit.value))
            else:
                spec = next(s for s in field_specs(op) if s.name == selector)
                raw = word[spec.offset : spec.offset + spec.bits]
                flags_ok = 0
                for value, unit in units.items():
                    flags_ok = flags_ok | ((raw == value) & self._flags_allowed(flags, unit))
                    with m.If(is_op & (raw == value)):
                        m.d.comb += self.unit.eq(UnitCode(unit.value))
                ok = ok & flags_ok
            legal_any = legal_any | (is_op & ok)
            m.d.comb += self.ok_by_op[op.value].eq(ok)
        m.d.comb += self.illegal.eq(~legal_any)
        return m

    @staticmethod
    def _flags_allowed(flags, unit: Unit):
        ok = 1
        for name, bit in flags.items():
            if name not in ALLOWED_DEPS[unit]:
                ok = ok & ~bit
        return ok
