"""Round-robin arbiter that shares one AXI4 read port between several read masters.

Master ``i``'s requests leave with ``arid = {i, arid_i}`` (its index in the top ID bits), and R
beats return to the master named by the top bits of ``rid``, so masters may have bursts
outstanding at the same time and the slave may interleave their responses (AXI allows it across
IDs). The AR choice is held from ``arvalid`` until its handshake (AXI requires a presented request
to stay unchanged), then passes to the next master that asks.

Each master's AR channel enters through a register slice (:class:`hw.dma.StreamSkid`): a
master's ``arready`` is a flip-flop and the choice sees only flip-flops, so no path runs from
one master's request through the choice into another master's state (the dispatcher's fetch and
the load unit sit far apart). A request leaves one cycle after its handshake with the master at
the earliest; one request per cycle still passes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axi4_read_signature
from hw.dma import StreamSkid

__all__ = ["AxiReadArbiter"]

_AR = ("araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot")


class AxiReadArbiter(wiring.Component):
    """Share one AXI4 read port between ``masters`` read masters.

    Parameters
    ----------
    addr_bits, data_bits : int
        The port's address and data widths.
    id_bits : int
        Each master's ID width; the shared port has ``id_bits + ceil(log2(masters))``.
    masters : int
        Number of masters, 2..8.

    Ports
    -----
    inputs[i] : In(axi4_read_signature(addr_bits, data_bits, id_bits))
    out : Out(axi4_read_signature(addr_bits, data_bits, id_bits + select bits))
    """

    def __init__(self, addr_bits: int, data_bits: int, id_bits: int, masters: int):
        if isinstance(masters, bool) or not isinstance(masters, int) or not 2 <= masters <= 8:
            raise ValueError(f"masters must be an integer in 2..8, got {masters!r}")
        self._masters = masters
        self._sel_bits = (masters - 1).bit_length()
        self._id_bits = id_bits
        sig = axi4_read_signature(addr_bits, data_bits, id_bits)
        self._ar_layout = data.StructLayout(
            {name: sig.members[name].shape for name in (*_AR, "arid")})
        super().__init__(
            {
                "inputs": In(axi4_read_signature(addr_bits, data_bits, id_bits)).array(masters),
                "out": Out(axi4_read_signature(addr_bits, data_bits, id_bits + self._sel_bits)),
            }
        )

    @property
    def masters(self) -> int:
        return self._masters

    def elaborate(self, platform):
        m = Module()
        n, out = self._masters, self.out
        # The masters' AR channels, registered.
        ars = []
        for i, inp in enumerate(self.inputs):
            skid = m.submodules[f"ar_slice{i}"] = StreamSkid(self._ar_layout)
            m.d.comb += [skid.i.valid.eq(inp.arvalid), inp.arready.eq(skid.i.ready)]
            m.d.comb += [getattr(skid.i.payload, s).eq(getattr(inp, s)) for s in (*_AR, "arid")]
            ars.append(skid.o)
        grant = Signal(range(n))
        locked = Signal()  # a granted request is on the port and not yet accepted
        choice = Signal(range(n))
        # Round robin: the first requesting master after the last one granted.
        requests = Cat(*(ar.valid for ar in ars))
        m.d.comb += choice.eq(grant)
        for offset in reversed(range(1, n + 1)):
            idx = Signal(range(n), name=f"candidate{offset}")
            m.d.comb += idx.eq((grant + offset) % n)
            with m.If(requests.bit_select(idx, 1)):
                m.d.comb += choice.eq(idx)
        current = Signal(range(n))
        m.d.comb += current.eq(Mux(locked, grant, choice))
        for i, ar in enumerate(ars):
            with m.If(current == i):
                m.d.comb += [getattr(out, s).eq(getattr(ar.payload, s)) for s in _AR]
                m.d.comb += [
                    out.arid.eq(Cat(ar.payload.arid, i)[: len(out.arid)]),
                    out.arvalid.eq(ar.valid),
                    ar.ready.eq(out.arready),
                ]
        with m.If(out.arvalid & out.arready):
            m.d.sync += [locked.eq(0), grant.eq(current)]
        with m.Elif(out.arvalid):
            m.d.sync += [locked.eq(1), grant.eq(current)]

        owner = out.rid[self._id_bits :]
        for i, inp in enumerate(self.inputs):
            m.d.comb += [
                inp.rid.eq(out.rid[: self._id_bits]),
                inp.rdata.eq(out.rdata),
                inp.rresp.eq(out.rresp),
                inp.rlast.eq(out.rlast),
                inp.rvalid.eq(out.rvalid & (owner == i)),
            ]
            with m.If(owner == i):
                m.d.comb += out.rready.eq(inp.rready)
        return m
