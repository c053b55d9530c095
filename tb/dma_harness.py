"""Test top levels for the DMA blocks: each exposes one full AXI4 port ``axi`` (for one
cocotbext-axi ``AxiRam``) and the block's streams as top-level ports."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axi4_signature
from hw.dma import AxiReadEngine, AxiWriteEngine

__all__ = ["DmaEnginesHarness", "connect_halves"]


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
        self._rd = AxiReadEngine(addr_bits=addr_bits, data_bits=data_bits,
                                 max_outstanding=max_outstanding)
        self._wr = AxiWriteEngine(addr_bits=addr_bits, data_bits=data_bits,
                                  max_outstanding=max_outstanding)
        super().__init__({
            "axi": Out(axi4_signature(addr_bits, data_bits, 4)),
            "rd_req": In(self._rd.req.signature.flip()),
            "rd_data": Out(self._rd.data.signature),
            "rd_busy": Out(1),
            "wr_req": In(self._wr.req.signature.flip()),
            "wr_data": In(self._wr.data.signature.flip()),
            "wr_error": Out(1),
            "wr_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rd = rd = self._rd
        m.submodules.wr = wr = self._wr
        wiring.connect(m, wiring.flipped(self.rd_req), rd.req)
        wiring.connect(m, rd.data, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_req), wr.req)
        wiring.connect(m, wiring.flipped(self.wr_data), wr.data)
        m.d.comb += [self.rd_busy.eq(rd.busy), self.wr_busy.eq(wr.busy),
                     self.wr_error.eq(wr.error)]
        connect_halves(m, self.axi, read=rd.axi, write=wr.axi)
        return m
