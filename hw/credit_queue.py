# amaranth: UnusedElaboratable=no
"""A first-in first-out queue for a writer that guarantees room by credit.

Pipelines that never stall (the systolic array, the epilogue) send a finished row into a queue
without asking whether it has room: credits taken when the row entered the pipeline guarantee
it. A general FIFO (``amaranth.lib.fifo.SyncFIFO``) still gates its RAM's write enable with its
fill level, which on an FPGA is a compare plus a fan-out to every LUT-RAM block of a wide queue
(the array's 8 x 32-bit result queue is 64 of them): that path limited the array to 115 MHz on
ECP5. Here the RAM writes the input at the write pointer *every* cycle (its write enable is a
constant) and only the pointer depends on ``w.valid``: a cycle without a push writes into the
free slot the next push overwrites. One slot more than the credits keeps the slot under the
write pointer free even when the queue holds ``depth`` rows, so nothing queued is overwritten.

The read side is a ``lib.stream`` source with a combinational RAM read at the registered read
pointer (LUT RAM, as ``SyncFIFO``) and a registered ``valid``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CreditQueue"]


class CreditQueue(wiring.Component):
    """FIFO of ``depth`` entries of ``width`` bits whose writer never overfills it.

    Parameters
    ----------
    width : int
        Bits per entry, at least 1.
    depth : int
        Entries the writer may have queued at once (its credits), at least 1.

    Attributes
    ----------
    w : In(stream.Signature(width, always_ready=True))
        Entries in; ``w.valid`` pushes ``w.payload``. Pushing into a queue that already holds
        ``depth`` entries (and pops none this cycle) breaks the credit contract: the newest
        entry may be lost. Simulation and tests check the contract; the hardware does not.
    r : Out(stream.Signature(width))
        Entries out, oldest first.
    """

    def __init__(self, width: int, depth: int) -> None:
        for name, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} = {value}: must be at least 1")
        self._width = width
        self._depth = depth
        super().__init__({
            "w": In(stream.Signature(width, always_ready=True)),
            "r": Out(stream.Signature(width)),
        })
        # (Built here, added by elaborate: this file's `amaranth:` comment waives the warning
        # for it when the queue itself is never elaborated.)
        self._storage = Memory(shape=width, depth=depth + 1, init=[])

    @property
    def width(self) -> int:
        """Bits per entry."""
        return self._width

    @property
    def depth(self) -> int:
        """Entries the writer may have queued at once."""
        return self._depth

    def elaborate(self, platform) -> Module:
        m = Module()
        slots = self._depth + 1
        m.submodules.storage = storage = self._storage
        w_port = storage.write_port()
        r_port = storage.read_port(domain="comb")
        w_ptr = Signal(range(slots))
        r_ptr = Signal(range(slots))
        count = Signal(range(slots + 1))
        nonempty = Signal()
        push = self.w.valid
        pop = self.r.valid & self.r.ready

        def advance(ptr):
            return Mux(ptr == slots - 1, 0, ptr + 1)

        m.d.comb += [
            w_port.addr.eq(w_ptr),
            w_port.data.eq(self.w.payload),
            w_port.en.eq(1),
            r_port.addr.eq(r_ptr),
            self.r.payload.eq(r_port.data),
            self.r.valid.eq(nonempty),
        ]
        with m.If(push):
            m.d.sync += w_ptr.eq(advance(w_ptr))
        with m.If(pop):
            m.d.sync += r_ptr.eq(advance(r_ptr))
        m.d.sync += [
            count.eq(count + push - pop),
            # count' != 0, from compares of the registered count only.
            nonempty.eq(push | Mux(pop, count != 1, count != 0)),
        ]
        return m
