"""Test top levels for the DMA blocks: each exposes one full AXI4 port ``axi`` (for one
cocotbext-axi ``AxiRam``) and the block's streams as top-level ports."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axi4_signature
from hw.dma import AxiReadEngine, AxiWriteEngine

__all__ = ["DmaEnginesHarness", "LoadUnitHarness", "StoreUnitHarness", "connect_halves"]


def connect_halves(m, full, read=None, write=None) -> None:
    """Wire a read half and/or a write half (manager ports) to the full manager port ``full``;
    an absent half is tied idle."""
    for half, members in ((read, ("ar", "r")), (write, ("aw", "w", "b"))):
        for name, member in full.signature.members.items():
            if not name.startswith(members):
                continue
            if half is None:
                if member.flow == wiring.Out:
                    m.d.comb += getattr(full, name).eq(0)
                continue
            if member.flow == wiring.Out:
                m.d.comb += getattr(full, name).eq(getattr(half, name))
            else:
                m.d.comb += getattr(half, name).eq(getattr(full, name))


class DmaEnginesHarness(wiring.Component):
    """An :class:`~hw.dma.AxiReadEngine` and an :class:`~hw.dma.AxiWriteEngine` on one AXI4
    port; ports ``rd_req``, ``rd_data``, ``rd_busy``, ``wr_req``, ``wr_data``, ``wr_error``,
    ``wr_busy`` are the engines' own."""

    def __init__(self, addr_bits: int, data_bits: int, max_outstanding: int = 4) -> None:
        self._rd = AxiReadEngine(
            addr_bits=addr_bits, data_bits=data_bits, max_outstanding=max_outstanding
        )
        self._wr = AxiWriteEngine(
            addr_bits=addr_bits, data_bits=data_bits, max_outstanding=max_outstanding
        )
        super().__init__(
            {
                "axi": Out(axi4_signature(addr_bits, data_bits, 4)),
                "rd_req": In(self._rd.req.signature.flip()),
                "rd_data": Out(self._rd.data.signature),
                "rd_busy": Out(1),
                "wr_req": In(self._wr.req.signature.flip()),
                "wr_data": In(self._wr.data.signature.flip()),
                "wr_error": Out(1),
                "wr_busy": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.rd = rd = self._rd
        m.submodules.wr = wr = self._wr
        wiring.connect(m, wiring.flipped(self.rd_req), rd.req)
        wiring.connect(m, rd.data, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_req), wr.req)
        wiring.connect(m, wiring.flipped(self.wr_data), wr.data)
        m.d.comb += [self.rd_busy.eq(rd.busy), self.wr_busy.eq(wr.busy), self.wr_error.eq(wr.error)]
        connect_halves(m, self.axi, read=rd.axi, write=wr.axi)
        return m


class LoadUnitHarness(wiring.Component):
    """A :class:`~hw.load_unit.LoadUnit` on a full AXI4 port ``axi`` (write half idle); every
    other port of the unit is a top-level port of the same name (the testbench models the
    memories and the token counters)."""

    def __init__(self, config) -> None:
        from hw.load_unit import LoadUnit

        self._unit = LoadUnit(config)
        members = {"axi": Out(axi4_signature(config.addr_bits, config.dma_data_bits, 4))}
        for name, member in self._unit.signature.members.items():
            if name != "axi":
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in unit.signature.members.items():
            if name == "axi":
                continue
            _pass_through(m, getattr(self, name), getattr(unit, name), member)
        connect_halves(m, self.axi, read=unit.axi)
        return m


def _pass_through(m, outer, inner, member) -> None:
    """Wire a top-level port to the identical port of a sub-component."""
    if member.is_port:
        if member.flow == wiring.Out:
            m.d.comb += outer.eq(inner)
        else:
            m.d.comb += inner.eq(outer)
        return
    # An In member's .signature is already flipped: its members carry their effective flows.
    for name, sub in member.signature.members.items():
        _pass_through(m, getattr(outer, name), getattr(inner, name), sub)


class StoreUnitHarness(wiring.Component):
    """A :class:`~hw.store_unit.StoreUnit` on a full AXI4 port ``axi`` (read half idle); its
    other ports are top-level ports of the same name."""

    def __init__(self, config) -> None:
        from hw.store_unit import StoreUnit

        self._unit = StoreUnit(config)
        members = {"axi": Out(axi4_signature(config.addr_bits, config.dma_data_bits, 4))}
        for name, member in self._unit.signature.members.items():
            if name != "axi":
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in unit.signature.members.items():
            if name != "axi":
                _pass_through(m, getattr(self, name), getattr(unit, name), member)
        connect_halves(m, self.axi, write=unit.axi)
        return m
