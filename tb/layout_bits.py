"""Pack and unpack ``lib.data`` layouts to and from the flat integers of Verilog ports.

cocotb sees an Amaranth stream payload as one bit vector; these follow the layout's own field
offsets, so a testbench never hard-codes a bit position.
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack"]


def pack(shape, value) -> int:
    """Bits of ``value`` for ``shape``: an int (raw bits, any sign), a dict for a struct, a
    sequence for an array."""
    if isinstance(value, int):
        return value & ((1 << Shape.cast(shape).width) - 1)
    if isinstance(shape, data.ArrayLayout):
        w = Shape.cast(shape.elem_shape).width
        return sum(pack(shape.elem_shape, v) << (w * i) for i, v in enumerate(value))
    if isinstance(shape, data.StructLayout):
        raw = 0
        for name, v in value.items():
            field = shape[name]
            raw |= pack(field.shape, v) << field.offset
        return raw
    raise TypeError(f"cannot pack {value!r} as {shape!r}")


def unpack(shape, raw: int):
    """Inverse of :func:`pack`: ints (signed where the shape is), lists and dicts."""
    if isinstance(shape, data.ArrayLayout):
        w = Shape.cast(shape.elem_shape).width
        return [unpack(shape.elem_shape, (raw >> (w * i)) & ((1 << w) - 1))
                for i in range(shape.length)]
    if isinstance(shape, data.StructLayout):
        out = {}
        for name, field in shape:
            w = Shape.cast(field.shape).width
            out[name] = unpack(field.shape, (raw >> field.offset) & ((1 << w) - 1))
        return out
    s = Shape.cast(shape)
    raw &= (1 << s.width) - 1
    if s.signed and raw >> (s.width - 1):
        return raw - (1 << s.width)
    return raw
