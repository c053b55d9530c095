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

Two options for a wide queue whose reader is far away (the epilogue's result queue, which feeds
the compute unit across the die; both off by default, as the systolic array uses the queue):

``slices``
    The RAM as that many column slices, each read at its own copy of the read pointer and
    written at its own copy of the write pointer (the read copies are flip-flops synthesis
    keeps apart, :func:`hw.target.kept_flip_flop`): one pointer drives the read, and one the
    write-enable decode, of a bounded group of LUT-RAM cells that the placer can keep
    together, not all of them (with one shared write pointer Yosys merged the slices'
    identical decodes into LUTs that drive slices placed apart). The read copies are loaded
    with the pointer's next value and have no reset, so in the one cycle after a reset the
    read data may be another slot's; ``r.valid`` is low in that cycle. Each write copy is a
    counter of its own with a reset (Yosys does not merge them: their next values differ in
    their inputs), so a push in the first cycle after a reset writes slot 0 in every slice.
``output_ring``
    The RAM's read ends in a :class:`hw.dma.StreamRing` (two entries, its read pointer copied
    per slice as well): ``r.valid`` and the two entries are flip-flops the placer can keep
    beside the RAM, the reader's ``r.ready`` moves only the ring's pointers, and the RAM's pop
    depends on the ring's fill level alone. One cycle more from push to ``r.valid``
    (:attr:`latency`). The credits cover the ring: ``depth`` entries in the RAM and the ring
    together. The RAM then holds at most ``depth - 1`` of them (it holds two or more only
    while the ring holds one or more: a ring that is not full takes the RAM's oldest entry in
    every cycle), so its slots stay ``depth`` (at least 2).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.dma import StreamRing
from hw.target import kept_register

__all__ = ["CreditQueue"]


class CreditQueue(wiring.Component):
    """FIFO of ``depth`` entries of ``width`` bits whose writer never overfills it.

    Parameters
    ----------
    width : int
        Bits per entry, at least 1.
    depth : int
        Entries the writer may have queued at once (its credits), at least 1.
    slices : int
        Column slices of the RAM, each read at its own copy of the read pointer (1: one RAM
        and the pointer itself, the default); at most ``width``.
    output_ring : bool
        A two-entry ring after the RAM's read (default off): every output a flip-flop or one
        2:1 multiplexer after flip-flops, :attr:`latency` 2 instead of 1.

    Attributes
    ----------
    w : In(stream.Signature(width, always_ready=True))
        Entries in; ``w.valid`` pushes ``w.payload``. Pushing into a queue that already holds
        ``depth`` entries (and pops none this cycle) breaks the credit contract: the newest
        entry may be lost. Simulation and tests check the contract; the hardware does not.
    r : Out(stream.Signature(width))
        Entries out, oldest first, :attr:`latency` cycles after their push at the earliest.
    """

    def __init__(self, width: int, depth: int, *, slices: int = 1,
                 output_ring: bool = False) -> None:
        for name, value in (("width", width), ("depth", depth), ("slices", slices)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} = {value}: must be at least 1")
        if slices > width:
            raise ValueError(f"slices = {slices}: must be at most width ({width})")
        if not isinstance(output_ring, bool):
            raise TypeError(f"output_ring must be a bool, got {output_ring!r}")
        self._width = width
        self._depth = depth
        self._output_ring = output_ring
        step = -(-width // slices)
        # (the same column split as StreamRing's per-copy slices of its payload)
        self._columns = [(lo, min(width, lo + step)) for lo in range(0, width, step)]
        super().__init__({
            "w": In(stream.Signature(width, always_ready=True)),
            "r": Out(stream.Signature(width)),
        })
        # (Built here, added by elaborate: this file's `amaranth:` comment waives the warning
        # for it when the queue itself is never elaborated.)
        self._storage = [Memory(shape=hi - lo, depth=self.slots, init=[])
                         for lo, hi in self._columns]

    @property
    def width(self) -> int:
        """Bits per entry."""
        return self._width

    @property
    def depth(self) -> int:
        """Entries the writer may have queued at once."""
        return self._depth

    @property
    def slices(self) -> int:
        """Column slices of the RAM (each read at its own copy of the read pointer)."""
        return len(self._columns)

    @property
    def output_ring(self) -> bool:
        """Whether the RAM's read ends in a two-entry ring."""
        return self._output_ring

    @property
    def slots(self) -> int:
        """Entries of the RAM: one more than it ever holds."""
        if self._output_ring:
            return max(2, self._depth)
        return self._depth + 1

    @property
    def latency(self) -> int:
        """Cycles from a push (``w.valid``) to the earliest cycle the entry is valid on ``r``."""
        return 2 if self._output_ring else 1

    def elaborate(self, platform) -> Module:
        m = Module()
        slots = self.slots
        r_ptr = Signal(range(slots))
        count = Signal(range(slots + 1))
        nonempty = Signal()
        if self._output_ring:
            # (a one-field layout: StreamRing slices its payload with `as_value`)
            m.submodules.ring = ring = StreamRing(
                data.StructLayout({"bits": self._width}), rp_copies=self.slices)
            m.d.comb += [
                self.r.valid.eq(ring.o.valid),
                self.r.payload.eq(ring.o.payload.bits),
                ring.o.ready.eq(self.r.ready),
            ]
            out, out_bits = ring.i, ring.i.payload.as_value()
        else:
            out, out_bits = self.r, self.r.payload
        push = self.w.valid
        pop = out.valid & out.ready

        def advance(ptr):
            return Mux(ptr == slots - 1, 0, ptr + 1)

        with m.If(pop):
            m.d.sync += r_ptr.eq(advance(r_ptr))
        m.d.sync += [
            count.eq(count + push - pop),
            # count' != 0, from compares of the registered count only.
            nonempty.eq(push | Mux(pop, count != 1, count != 0)),
        ]

        def r_ptr_copy(name):
            # Equal to `r_ptr` in every cycle after one without a reset (loaded with its next
            # value, no reset): in the cycle after a reset `nonempty` is low, and a ring takes
            # the read into a free entry. Kept flip-flops, one per bit: Yosys would merge plain
            # ones.
            r_next = Mux(pop, advance(r_ptr), r_ptr)[:len(r_ptr)]
            return kept_register(m, r_next, platform, name)

        def write_pointer(name):
            # With slices, one per slice, so that no LUT of one slice's write-enable decode is
            # shared with another's. A plain register with the domain's reset (also one added
            # by a ResetInserter), unlike the read copies: each copy's next value depends on
            # its own output, so Yosys has no identical flip-flops to merge.
            ptr = Signal(range(slots), name=name)
            with m.If(push):
                m.d.sync += ptr.eq(advance(ptr))
            return ptr

        m.d.comb += out.valid.eq(nonempty)
        for k, ((lo, hi), storage) in enumerate(zip(self._columns, self._storage, strict=True)):
            if len(self._columns) == 1:
                m.submodules.storage = storage
                r_addr, w_addr = r_ptr, write_pointer("w_ptr")
            else:
                m.submodules[f"storage{k}"] = storage
                r_addr, w_addr = r_ptr_copy(f"r_ptr_c{k}"), write_pointer(f"w_ptr_c{k}")
            w_port = storage.write_port()
            r_port = storage.read_port(domain="comb")
            m.d.comb += [
                w_port.addr.eq(w_addr),
                w_port.data.eq(self.w.payload[lo:hi]),
                w_port.en.eq(1),
                r_port.addr.eq(r_addr),
                out_bits[lo:hi].eq(r_port.data),
            ]
        return m
