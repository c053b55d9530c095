# amaranth: UnusedElaboratable=no
"""Register slices on a unit's memory writes that hold the unit's token until the writes landed.

A unit that writes shared memories and then pushes a dependency token (the load unit: LOAD rows
into the scratchpad and accumulator, LOADT entries into the bias/scale SRAM and the segment
tables, then ``l2c``) must not let the token overtake a write: the consumer (an EPI's
FN_UNLOADED check and table reads, a GEMM's bias or operand reads) may act on the token in the
cycle after it is counted. Without slices, a write that the memory accepts in cycle ``t`` is
followed by the token in ``t + 1`` at the earliest. A slice between the unit and the memory
(:class:`hw.dma.StreamRing`: ``ready`` towards the unit and ``valid`` towards the memory from
flip-flops; a memory's grant moves only its read pointer and fill level, not the enables of its
two payload entries) cuts the combinational loop from the unit's write request through the memory's
arbitration back into the unit's state, but a write may then still sit in the slice when the
unit thinks it is done. :class:`WriteFence` closes that gap: while any slice holds a write, the
token does not pass (``push_out.valid`` and ``push_in.ready`` are low), so the token still
follows the last write's acceptance by the memory by at least one cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import StreamRing
from hw.unit_ports import TOKEN_SIGNATURE

__all__ = ["WriteFence"]


class WriteFence(wiring.Component):
    """A :class:`~hw.dma.StreamRing` on each named write stream; a token passes only when all
    of them are empty.

    Parameters
    ----------
    writes : dict[str, shape-like]
        Name -> payload shape of each write stream (at least one).

    Ports
    -----
    <name>_in : In(stream.Signature(shape))
        From the unit; ``ready`` is a flip-flop (the slice's spare entry is free).
    <name>_out : Out(stream.Signature(shape))
        To the memory; ``valid`` from flip-flops, ``payload`` one two-way multiplexer behind
        them. Order kept, one write per cycle.
    push_in : In(TOKEN_SIGNATURE)
        The unit's token.
    push_out : Out(TOKEN_SIGNATURE)
        To the token counter: ``valid = push_in.valid`` and ``push_in.ready = push_out.ready``
        while every slice is empty, both low otherwise.
    pending : Out(1)
        Some slice holds a write (from the fill levels' flip-flops; part of the unit's "busy").
    """

    def __init__(self, writes: dict) -> None:
        if not isinstance(writes, dict) or not writes:
            raise ValueError(f"writes must be a non-empty dict of name -> shape, got {writes!r}")
        for name in writes:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"write stream name {name!r} is not an identifier")
        self._names = tuple(writes)
        members = {}
        for name, shape in writes.items():
            members[f"{name}_in"] = In(stream.Signature(shape))
            members[f"{name}_out"] = Out(stream.Signature(shape))
        members["push_in"] = In(TOKEN_SIGNATURE)
        members["push_out"] = Out(TOKEN_SIGNATURE)
        members["pending"] = Out(1)
        super().__init__(members)
        self._slices = {name: StreamRing(shape) for name, shape in writes.items()}

    @property
    def names(self) -> tuple[str, ...]:
        """The write streams, in the order given."""
        return self._names

    def elaborate(self, platform) -> Module:
        m = Module()
        holds = []
        for name, skid in self._slices.items():
            m.submodules[f"{name}_slice"] = skid
            wiring.connect(m, wiring.flipped(getattr(self, f"{name}_in")), skid.i)
            wiring.connect(m, skid.o, wiring.flipped(getattr(self, f"{name}_out")))
            holds.append(skid.o.valid)  # the ring's fill level is not zero
        pending = Cat(*holds).any()
        m.d.comb += [
            self.pending.eq(pending),
            self.push_out.valid.eq(self.push_in.valid & ~pending),
            self.push_in.ready.eq(self.push_out.ready & ~pending),
        ]
        return m
