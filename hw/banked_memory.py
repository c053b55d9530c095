# amaranth: UnusedElaboratable=no
"""A banked SRAM shared by several clients: the mechanism behind the scratchpad and accumulator.

``depth`` rows of ``width`` bits in ``banks`` banks of consecutive rows (bank = row //
(depth / banks)); every bank is one ``lib.memory.Memory`` with one synchronous read port and
one write port (simple dual port: one block RAM column). Clients are streams (docs/isa.md,
RTL contract):

* a **read client** sends requests ``{addr}`` and gets, in order, responses ``{data}``. A
  request moves when its bank grants it; the data leaves the bank ``read_latency`` cycles later
  (the RAM's read, then its output register: 2; plus ``request_stages``) and goes into the
  client's own response queue (``response_depth`` rows), so the client's response stream may be
  held not ready for any time: a request is accepted only while the queue has room for it
  (credit). Latency: a request accepted in cycle ``t`` is on the response stream in
  ``t + read_latency + 1`` (``t + 3`` without request stages).
* a **write client** sends ``{addr, data[, mask]}``; the row is written at the end of the cycle
  its bank grants it (``mask``: one bit per ``granularity`` bits, when the memory has one), or
  ``request_stages`` cycles later with request stages.
* optionally one **exclusive port** (:func:`exclusive_signature`), fixed timing for a
  read-modify-write pipeline: its read (data ``read_latency`` cycles later) and its write are
  granted in the cycle they are asserted, before any stream client of that bank. A read returns
  the row as written up to and including the writes granted in the cycle of the read (the read
  is transparent to a write granted in the same cycle); writes in the ``read_latency - 1``
  cycles after it (one, plus one per request stage) are the pipeline's own to forward.

With ``request_stages`` every bank's arbitration ends in flip-flops: the granted read
address and enable, and the granted write address, data and enable (mask), are registered, and
those registers drive the RAM's pins (on ECP5 ``scripts/ecp5_pack_outreg.py`` gives each block
RAM its own copy of a register that feeds several), so no arbiter or multiplexer output has to
cross the die to a block RAM in the cycle it is formed. With two stages no logic sits between
the first rank (the arbiters' outputs) and the second (its per-RAM copies), so the placer can
put the long wire there, from flip-flop to flip-flop (it decides which hop is long: on ECP5 it
has put the first rank by the RAMs, docs/fpga.md); and each element of a read client's
row takes its bank choice from a flip-flop of its own, so no select fans out to a whole row's
multiplexers. Reads and writes are delayed alike, so
what a read returns is what it returned without the stages: every write granted up to and
including the read's own grant cycle, by any client.

The read data of every bank is registered once more after the RAM, with no logic in between and
no reset: on an FPGA that register is the block RAM's own output register
(``scripts/ecp5_pack_outreg.py`` moves it there on ECP5, across Yosys's read-during-write
bypass), so a block RAM's slow clock-to-output never meets logic in the same cycle.

Each bank arbitrates its read port among the read clients that address it, and its write port
among the write clients, round robin (the client after the last one granted goes first), so
different banks serve different clients in the same cycle and no client starves. Bank conflicts
change timing only: every client's requests are served in its own order.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.target import kept_flip_flop

__all__ = [
    "READ_LATENCY",
    "RESPONSE_DEPTH",
    "BankedMemory",
    "exclusive_signature",
    "read_signature",
    "write_layout",
]

#: Rows each read client's response queue holds without request stages: with the
#: two-cycle SRAM latency (read, output register) this keeps one response per cycle flowing
#: while the client is ready (one more per request stage: ``BankedMemory.response_depth``).
RESPONSE_DEPTH = 4
#: Cycles from a read's grant to its data leaving the bank (the RAM's read, its output register)
#: without request stages; one more per stage (``BankedMemory.read_latency``).
READ_LATENCY = 2


def read_signature(addr_bits: int, data_shape) -> wiring.Signature:
    """A read client, from the client's side: ``req`` (Out) ``{addr}``, ``resp`` (In) ``{data}``."""
    return wiring.Signature({
        "req": Out(stream.Signature(data.StructLayout({"addr": unsigned(addr_bits)}))),
        "resp": In(stream.Signature(data.StructLayout({"data": data_shape}))),
    })


def write_layout(addr_bits: int, data_shape, mask_bits: int = 0) -> data.StructLayout:
    """Payload of a write request stream: ``{addr, data}`` plus ``mask`` when ``mask_bits``."""
    members = {"addr": unsigned(addr_bits), "data": data_shape}
    if mask_bits:
        members["mask"] = unsigned(mask_bits)
    return data.StructLayout(members)


def exclusive_signature(addr_bits: int, data_shape) -> wiring.Signature:
    """The fixed-timing port, from the client's side.

    ``read_en``/``read_addr`` in cycle ``t`` -> ``read_data`` in ``t + L`` with
    ``L = BankedMemory.read_latency`` (2, plus ``request_stages``): the row as written by
    every write asserted up to and including ``t`` (transparent to the write in ``t``), not by
    those in ``t + 1 .. t + L - 1``. ``write_en``/``write_addr``/``write_data`` asserted in
    cycle ``w`` write at the end of cycle ``w + request_stages``.
    """
    return wiring.Signature({
        "read_en": Out(1),
        "read_addr": Out(unsigned(addr_bits)),
        "read_data": In(data_shape),
        "write_en": Out(1),
        "write_addr": Out(unsigned(addr_bits)),
        "write_data": Out(data_shape),
    })


def _log2(n: int) -> int:
    return n.bit_length() - 1


def round_robin(m: Module, requests: list, name: str) -> list[Signal]:
    """Grant one of ``requests`` (1-bit values), starting after the last one granted.

    Returns one grant signal per request (at most one high). The pointer moves on a grant only.
    """
    n = len(requests)
    grants = [Signal(name=f"{name}_grant{i}") for i in range(n)]
    if n == 1:
        m.d.comb += grants[0].eq(requests[0])
        return grants
    last = Signal(range(n), name=f"{name}_last")
    # an If chain rather than a Switch: the last pointer value is the final Else, so every
    # encoding is covered (no incomplete case statement in the Verilog)
    for p in range(n):
        with (m.If(last == p) if p == 0 else m.Elif(last == p) if p < n - 1 else m.Else()):
            order = [(p + 1 + j) % n for j in range(n)]
            taken = Const(0, 1)
            for i in order:
                m.d.comb += grants[i].eq(requests[i] & ~taken)
                taken = taken | requests[i]
    for i in range(n):
        with m.If(grants[i]):
            m.d.sync += last.eq(i)
    return grants


class BankedMemory(wiring.Component):
    """Banked SRAM with round-robin stream clients and an optional exclusive port.

    Parameters
    ----------
    depth : int
        Rows (a power of two).
    data_shape : ShapeCastable
        Shape of one row (e.g. ``ArrayLayout(signed(8), lanes)``); stored as its raw bits.
    banks : int
        Banks of consecutive rows (a power of two dividing ``depth``).
    read_clients, write_clients : tuple of str
        Names of the stream clients; each becomes a port ``<name>`` (read:
        ``In(read_signature(...))``; write: ``In(stream.Signature(write_layout(...)))``).
    granularity : int or None
        Bits per write-mask bit (write payloads then carry ``mask``); None: whole-row writes.
    exclusive : str or None
        Name of the exclusive port (``In(exclusive_signature(...))``), if any.
    request_stages : int
        Register stages between every bank's arbiters and its RAM's pins (see module docs):
        every access that many cycles later, reads and writes alike. 0: the arbiters drive the
        pins; 1: the granted requests are registered; 2: registered twice, with no logic
        between the two ranks.
    """

    def __init__(self, *, depth: int, data_shape, banks: int, read_clients, write_clients,
                 granularity: int | None = None, exclusive: str | None = None,
                 request_stages: int = 0) -> None:
        if isinstance(request_stages, bool) or not isinstance(request_stages, int):
            raise TypeError(f"request_stages must be an int, got {request_stages!r}")
        if request_stages < 0:
            raise ValueError(f"request_stages = {request_stages!r}: must be >= 0")
        for pname, v in (("depth", depth), ("banks", banks)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{pname} must be an int, got {v!r}")
            if v < 1 or v & (v - 1):
                raise ValueError(f"{pname} = {v!r}: must be a power of two >= 1")
        if depth % banks or depth // banks < 2:
            raise ValueError(f"banks = {banks!r}: must divide depth = {depth} into banks of >= 2")
        read_clients, write_clients = tuple(read_clients), tuple(write_clients)
        names = [*read_clients, *write_clients, *([exclusive] if exclusive else [])]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"client names must be distinct non-empty strings, got {names!r}")
        width = Shape.cast(data_shape).width
        if granularity is not None and (granularity < 1 or width % granularity):
            raise ValueError(f"granularity = {granularity!r}: must divide the row width {width}")
        self._depth, self._banks, self._width = depth, banks, width
        self._data_shape = data_shape
        self._granularity = granularity
        self._read_clients, self._write_clients = read_clients, write_clients
        self._exclusive = exclusive
        self._request_stages = request_stages
        self._addr_bits = max(1, _log2(depth))
        mask_bits = width // granularity if granularity else 0
        members = {}
        for n in read_clients:
            members[n] = In(read_signature(self._addr_bits, data_shape))
        for n in write_clients:
            members[n] = In(stream.Signature(write_layout(self._addr_bits, data_shape, mask_bits)))
        if exclusive:
            members[exclusive] = In(exclusive_signature(self._addr_bits, data_shape))
        super().__init__(members)
        self._mems = [
            Memory(shape=unsigned(width), depth=depth // banks, init=[]) for _ in range(banks)
        ]
        self._wports = [mem.write_port(granularity=granularity) for mem in self._mems]
        self._rports = [
            mem.read_port(transparent_for=(wp,))
            for mem, wp in zip(self._mems, self._wports, strict=True)
        ]
        self._queues = {n: SyncFIFO(width=width, depth=self.response_depth)
                        for n in read_clients}

    @property
    def depth(self) -> int:
        """Rows."""
        return self._depth

    @property
    def banks(self) -> int:
        """Banks of consecutive rows."""
        return self._banks

    @property
    def request_stages(self) -> int:
        """Register stages between the banks' arbiters and their RAMs (module docs)."""
        return self._request_stages

    @property
    def read_latency(self) -> int:
        """Cycles from a read's grant to its data leaving the bank (the exclusive port's
        ``read_en`` in ``t`` -> ``read_data`` in ``t + read_latency``)."""
        return READ_LATENCY + self._request_stages

    @property
    def response_depth(self) -> int:
        """Rows of each read client's response queue: its credits, one response per cycle to a
        client that is always ready (``read_latency`` reads in flight and one row in the
        queue)."""
        return RESPONSE_DEPTH + self._request_stages

    @property
    def addr_bits(self) -> int:
        """Width of a row address."""
        return self._addr_bits

    @property
    def memories(self) -> list[Memory]:
        """The bank memories, bank 0 first (for simulation back doors and resource counts)."""
        return list(self._mems)

    def bank_of(self, addr):
        """Bank of row ``addr`` (a Python int or an Amaranth value)."""
        shift = _log2(self._depth // self._banks)
        return addr >> shift

    def elaborate(self, platform) -> Module:
        m = Module()
        banks = self._banks
        row_bits = _log2(self._depth // banks)
        bank_bits = _log2(banks)
        for b, mem in enumerate(self._mems):
            m.submodules[f"bank{b}"] = mem
        # The output register of each bank (reset-less: the RAM's own register on an FPGA).
        bank_data = []
        for b in range(banks):
            q = Signal(self._width, name=f"bank{b}_data", reset_less=True)
            m.d.sync += q.eq(self._rports[b].data)
            bank_data.append(q)

        def split(addr):
            return (addr[row_bits:] if bank_bits else Const(0, 1)), addr[:row_bits]

        excl = getattr(self, self._exclusive) if self._exclusive else None
        lat, depth = self.read_latency, self.response_depth

        def to_pins(value, name):
            """``value`` onto a RAM pin through the request stages (reset-less registers); the
            last one is ``name`` (one copy per block RAM on ECP5), the first ones
            ``name_stage<k>``."""
            stages = self._request_stages
            for k in range(1, stages + 1):
                q = Signal(len(value), name=name if k == stages else f"{name}_stage{k}",
                           reset_less=True)
                m.d.sync += q.eq(value)
                value = q
            return value

        slices = (self._data_shape.length if isinstance(self._data_shape, data.ArrayLayout)
                  else 1)
        slice_bits = self._width // slices

        def select_bank(bank_pipe, name):
            """The read data of the bank in ``bank_pipe[-1]``. With request stages, each
            slice (an element of an array row) takes its choice from its own flip-flop, loaded
            with ``bank_pipe[-2]``, so no select drives the whole row's multiplexers across the
            die."""
            parts = []
            for s in range(slices):
                lo = s * slice_bits
                pick = bank_data[0][lo:lo + slice_bits]
                for b in range(1, banks):
                    if self._request_stages:
                        sel = kept_flip_flop(m, bank_pipe[-2] == b, platform,
                                             f"{name}_bank{b}_s{s}")
                    else:
                        sel = bank_pipe[-1] == b
                    pick = Mux(sel, bank_data[b][lo:lo + slice_bits], pick)
                parts.append(pick)
            return Cat(*parts)

        # ---- reads
        clients = [getattr(self, n) for n in self._read_clients]
        credit_ok, pending, pending_bank = [], [], []
        for n, port in zip(self._read_clients, clients, strict=True):
            q = self._queues[n]
            m.submodules[f"resp_{n}"] = q
            # reads granted 1 .. lat cycles ago, and their banks
            pend = [Signal(name=f"{n}_pending{i}") for i in range(1, lat + 1)]
            pbank = [Signal(range(max(banks, 2)), name=f"{n}_pending_bank{i}")
                     for i in range(1, lat + 1)]
            # The credit (`level + pending < depth`) is registered, formed a cycle
            # ahead: the sum moves by this cycle's grant and this cycle's read, so the banks'
            # request and grant logic starts at a flip-flop, not at an add and a compare. The
            # two compares of the sum come from flip-flops; the grant and the read only pick.
            ok = Signal(name=f"{n}_credit_ok", init=1)
            for i in range(1, lat):
                m.d.sync += [pend[i].eq(pend[i - 1]), pbank[i].eq(pbank[i - 1])]
            credit_ok.append(ok)
            pending.append(pend)
            pending_bank.append(pbank)
            m.d.comb += [
                port.resp.valid.eq(q.r_rdy),
                port.resp.payload.data.eq(q.r_data),
                q.r_en.eq(port.resp.ready),
            ]
        excl_read_bank = [Signal(range(max(banks, 2)), name=f"excl_read_bank{i}")
                          for i in range(1, lat + 1)]
        for i in range(1, lat):
            m.d.sync += excl_read_bank[i].eq(excl_read_bank[i - 1])
        accepted = [Const(0, 1)] * len(clients)
        for b in range(banks):
            rp = self._rports[b]
            excl_here = Const(0, 1)
            if excl is not None:
                eb, _ = split(excl.read_addr)
                excl_here = excl.read_en & (eb == b)
            reqs = []
            for port, ok in zip(clients, credit_ok, strict=True):
                pb, _ = split(port.req.payload.addr)
                reqs.append(port.req.valid & ok & (pb == b) & ~excl_here)
            grants = round_robin(m, reqs, f"rd{b}") if reqs else []
            addr = excl.read_addr[:row_bits] if excl is not None else Const(0, row_bits)
            for g, port in zip(grants, clients, strict=True):
                addr = Mux(g, port.req.payload.addr[:row_bits], addr)
            en = excl_here
            for g in grants:
                en = en | g
            m.d.comb += [rp.addr.eq(to_pins(addr, f"bank{b}_read_addr")),
                         rp.en.eq(to_pins(en, f"bank{b}_read_en"))]
            for i, g in enumerate(grants):
                accepted[i] = accepted[i] | g
                with m.If(g):
                    m.d.sync += pending_bank[i][0].eq(b)
            if excl is not None:
                with m.If(excl_here):
                    m.d.sync += excl_read_bank[0].eq(b)
        for i, port in enumerate(clients):
            m.d.comb += port.req.ready.eq(accepted[i])
            m.d.sync += pending[i][0].eq(accepted[i])
            q = self._queues[self._read_clients[i]]
            pend = pending[i]
            outstanding = q.level
            for p in pend:
                outstanding = outstanding + p
            took = q.r_en & q.r_rdy
            m.d.sync += credit_ok[i].eq(Mux(
                accepted[i] == took, outstanding < depth,
                Mux(accepted[i], outstanding < depth - 1, 1)))
            m.d.comb += [q.w_en.eq(pending[i][-1]),
                         q.w_data.eq(select_bank(pending_bank[i], self._read_clients[i]))]
        if excl is not None:
            m.d.comb += excl.read_data.eq(select_bank(excl_read_bank, self._exclusive))

        # ---- writes
        wclients = [getattr(self, n) for n in self._write_clients]
        full_mask = (1 << (self._width // self._granularity)) - 1 if self._granularity else 1
        waccepted = [Const(0, 1)] * len(wclients)
        for b in range(banks):
            wp = self._wports[b]
            excl_here = Const(0, 1)
            if excl is not None:
                eb, _ = split(excl.write_addr)
                excl_here = excl.write_en & (eb == b)
            reqs = []
            for port in wclients:
                pb, _ = split(port.payload.addr)
                reqs.append(port.valid & (pb == b) & ~excl_here)
            grants = round_robin(m, reqs, f"wr{b}") if reqs else []
            addr = excl.write_addr[:row_bits] if excl is not None else Const(0, row_bits)
            wdata = Value.cast(excl.write_data) if excl is not None else Const(0, self._width)
            en = Mux(excl_here, full_mask, 0)
            for g, port in zip(grants, wclients, strict=True):
                addr = Mux(g, port.payload.addr[:row_bits], addr)
                wdata = Mux(g, Value.cast(port.payload.data), wdata)
                mask = port.payload.mask if self._granularity else Const(1, 1)
                en = Mux(g, mask, en)
            m.d.comb += [wp.addr.eq(to_pins(addr, f"bank{b}_write_addr")),
                         wp.data.eq(to_pins(wdata, f"bank{b}_write_data")),
                         wp.en.eq(to_pins(en, f"bank{b}_write_en"))]
            for i, g in enumerate(grants):
                waccepted[i] = waccepted[i] | g
        for i, port in enumerate(wclients):
            m.d.comb += port.ready.eq(waccepted[i])
        return m
