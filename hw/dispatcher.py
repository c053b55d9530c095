"""The dispatcher: instruction fetch with prefetch, decode, SETBASE, HALT, queues, run status.

Pipeline (one instruction per cycle at most)::

    AXI4 AR --> DRAM --> R beats --> prefetch buffer --> beat/word gearbox --> Decoder
      (bursts, credit-limited)       (FIFO, 2 bursts)                            |
                                                                      decoded-word register
                                                                                 |
               SETBASE, HALT executed here;  LOAD/LOADT/DMACFG/SYNC(load) --> load queue
               GEMM/EPI/SYNC(compute) --> compute queue;  STORE/SYNC(store) --> store queue

**Fetch.** From ``start`` the fetcher reads words ``0 .. PROG_LEN-1`` from ``PROG_ADDR`` in INCR
bursts that end at :data:`FETCH_CHUNK_BYTES` boundaries (so never cross 4 KiB) and never reach
past the program or ``2**addr_bits``. A burst is requested only when the prefetch buffer has room
for all its beats (credit), so R beats are always accepted (``rready`` is high). After HALT or an
error it requests nothing more and lets the outstanding bursts land.

**Dispatch.** Word ``pc`` is dispatched in order: ``pc == PROG_LEN`` is NO_HALT at ``pc``; a word
at or above ``2**addr_bits``, or from a beat with an error response, is DRAM_RANGE; an illegal
word ILLEGAL_INSTRUCTION; SETBASE with ``value >= 2**addr_bits`` FIELD_RANGE. Other instructions
go to their unit's queue (``instr_fifo_depth`` deep) as ``UnitCommand`` with the base register
named by their ``base`` field resolved now (SETBASE takes effect exactly in program order).

**Errors** (docs/isa.md, ISA v3): the status keeps the error with the lowest word offset ``e``
(the dispatcher's own or a unit's). From the first error on nothing more is dispatched, queued
commands above ``e`` are discarded at the queue's head, ``flush`` tells the units ``e``, and the
run ends when every queue is empty, every unit idle and every AXI transaction complete.
**HALT** ends the run the same way with OK and the HALT's offset.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import AXI_BURST_INCR, AXI_CACHE, axi4_read_signature
from hw.config import AcceleratorConfig
from hw.csr import CODE_BITS, PC_BITS
from hw.decoder import Decoder, UnitCode
from hw.dma import StreamRing
from hw.isa import WORD_BITS, WORD_BYTES, WORD_LAYOUT, Opcode, field_specs
from hw.registers import RunState
from hw.unit_ports import AXI_ID_BITS, ERROR_SIGNATURE, FLUSH_SIGNATURE, unit_command_layout
from sim.golden import StatusCode

__all__ = ["FETCH_CHUNK_BYTES", "UNITS", "Dispatcher", "prefetch_beats"]

#: Fetch bursts end at multiples of this many bytes (a power of two <= 4096).
FETCH_CHUNK_BYTES = 256
#: The queued units, in queue order.
UNITS = ("load", "compute", "store")


def prefetch_beats(config: AcceleratorConfig) -> int:
    """Capacity of the dispatcher's prefetch buffer for ``config``, in bus beats: two full
    fetch bursts (without building a `Dispatcher`, e.g. for a block-RAM budget)."""
    return 2 * (FETCH_CHUNK_BYTES // (config.dma_data_bits // 8))


class Dispatcher(wiring.Component):
    """Instruction fetch, decode and dispatch, and the run's status.

    Parameters
    ----------
    config : AcceleratorConfig
        ``dma_data_bits`` (fetch bus), ``addr_bits``, ``instr_fifo_depth`` (queue depth).

    Ports
    -----
    start : In(1)
        Start a run (ignored while ``state`` is BUSY): pc 0, base registers 0, status cleared.
    started : Out(1)
        One cycle when a start was accepted (the top level clears tokens and counters on it).
    prog_addr, prog_len : In(64), In(32)
        ``PROG_ADDR`` and ``PROG_LEN``, sampled at start.
    axi : Out(axi4_read_signature(addr_bits, dma_data_bits, AXI_ID_BITS))
        The fetch read port (ID 0).
    load_cmd, compute_cmd, store_cmd : Out(stream.Signature(UnitCommand))
        The three instruction queues' outputs.
    load_error, compute_error, store_error : In(ERROR_SIGNATURE)
        The units' error reports.
    flush : Out(FLUSH_SIGNATURE)
        Valid from the first error: units discard instructions above ``flush.pc``.
    units_idle : In(1)
        No unit holds an instruction.
    axi_idle : In(1)
        No AXI transaction is requested or outstanding on the master port.
    state, code, offset : Out(2), Out(4), Out(32)
        ``STATUS.state``, ``STATUS.code``, ``STATUS_OFFSET``.
    stall_fetch, stall_dispatch, retire : Out(1)
        Counter strobes: waiting for a word; holding a word whose queue is full; SETBASE or
        HALT executed.
    fetch_pc : Out(32)
        Offset of the next word the dispatcher will dispatch (for the watchdog's report).
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        if WORD_BITS % config.dma_data_bits and config.dma_data_bits % WORD_BITS:
            raise ValueError(f"dma_data_bits = {config.dma_data_bits} is not a power of two")
        self._config = config
        cmd = stream.Signature(unit_command_layout(config))
        super().__init__(
            {
                "start": In(1),
                "started": Out(1),
                "prog_addr": In(64),
                "prog_len": In(PC_BITS),
                "axi": Out(
                    axi4_read_signature(config.addr_bits, config.dma_data_bits, AXI_ID_BITS)
                ),
                **{f"{u}_cmd": Out(cmd) for u in UNITS},
                **{f"{u}_error": In(ERROR_SIGNATURE) for u in UNITS},
                "flush": Out(FLUSH_SIGNATURE),
                "units_idle": In(1),
                "axi_idle": In(1),
                "state": Out(2),
                "code": Out(CODE_BITS),
                "offset": Out(PC_BITS),
                "stall_fetch": Out(1),
                "stall_dispatch": Out(1),
                "retire": Out(1),
                "fetch_pc": Out(PC_BITS),
            }
        )
        self._decoder = Decoder()

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def beats_per_chunk(self) -> int:
        """Bus beats in one full fetch burst."""
        return FETCH_CHUNK_BYTES // (self._config.dma_data_bits // 8)

    @property
    def prefetch_beats(self) -> int:
        """Capacity of the prefetch buffer, in bus beats (two full bursts)."""
        return prefetch_beats(self._config)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        bus_bits = cfg.dma_data_bits
        bus_bytes = bus_bits // 8
        log_bus = bus_bytes.bit_length() - 1
        addr_bits = cfg.addr_bits
        chunk_beats = self.beats_per_chunk
        depth = self.prefetch_beats
        axi = self.axi

        state = Signal(RunState, init=RunState.IDLE)
        accept_start = self.start & (state != RunState.BUSY)
        running = state == RunState.BUSY
        m.d.comb += [self.state.eq(state), self.started.eq(accept_start)]

        halted = Signal()
        halt_pc = Signal(PC_BITS)
        err_valid = Signal()
        err_code = Signal(CODE_BITS)
        err_pc = Signal(PC_BITS)
        stopped = halted | err_valid
        m.d.comb += [self.flush.valid.eq(err_valid), self.flush.pc.eq(err_pc)]

        prog_len = Signal(PC_BITS)
        # ------------------------------------------------------------ fetch requests
        req_addr = Signal(65)  # next beat to request (beat aligned)
        fetch_limit = Signal(65)  # min(program end, 2**addr_bits)
        inflight = Signal(range(depth + 1))  # beats requested and not yet read out of the buffer
        remaining = Signal(65)
        burst = Signal(range(chunk_beats + 1))
        to_chunk = Signal(range(chunk_beats + 1))
        # bytes left and beats to the chunk's end, registered from req_addr (`settled1`)
        m.d.sync += [
            remaining.eq(fetch_limit - req_addr),
            to_chunk.eq(chunk_beats - req_addr[log_bus:][: (chunk_beats - 1).bit_length()]),
        ]
        m.d.comb += burst.eq(to_chunk)
        with m.If(remaining < FETCH_CHUNK_BYTES):
            end_beats = (remaining + bus_bytes - 1) >> log_bus
            with m.If(end_beats < to_chunk):
                m.d.comb += burst.eq(end_beats)
        m.d.comb += [
            axi.arid.eq(0),
            axi.arsize.eq(log_bus),
            axi.arburst.eq(AXI_BURST_INCR),
            axi.arcache.eq(AXI_CACHE),
            axi.rready.eq(1),
        ]
        # The next burst's size and whether one is left, registered in two steps from
        # req_addr (the subtraction, then the size): they are current from the third cycle
        # after req_addr changes (`settled`), so a burst is requested at most every third
        # cycle (each is up to a chunk of beats).
        burst_r = Signal.like(burst)
        more_r = Signal()
        settled1 = Signal()
        settled = Signal()
        m.d.sync += [burst_r.eq(burst), more_r.eq(req_addr < fetch_limit), settled1.eq(1),
                     settled.eq(settled1)]
        can_request = running & ~stopped & settled & more_r & (inflight + burst_r <= depth)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [axi.arvalid.eq(0), req_addr.eq(req_addr + ((axi.arlen + 1) << log_bus)),
                         settled1.eq(0), settled.eq(0)]
        with m.Elif(~axi.arvalid & can_request):
            m.d.sync += [
                axi.arvalid.eq(1),
                axi.araddr.eq(req_addr),
                axi.arlen.eq(burst_r - 1),
            ]

        # ------------------------------------------------------------ prefetch buffer
        buffer = ResetInserter(accept_start)(SyncFIFOBuffered(width=bus_bits + 1, depth=depth))
        m.submodules.prefetch = buffer
        m.d.comb += [
            buffer.w_en.eq(axi.rvalid),
            buffer.w_data.eq(Cat(axi.rdata, axi.rresp[1])),
        ]
        beat_data = buffer.r_data[:bus_bits]
        beat_err = buffer.r_data[bus_bits]
        ar_beats = Signal(range(depth + 1))
        with m.If(axi.arvalid & axi.arready):
            m.d.comb += ar_beats.eq(axi.arlen + 1)
        m.d.sync += inflight.eq(inflight + ar_beats - (buffer.r_en & buffer.r_rdy))

        # ------------------------------------------------------------ gearbox: beats -> words
        word_valid = Signal()
        word_data = Signal(WORD_BITS)
        word_err = Signal()
        word_ready = Signal()
        if bus_bits == WORD_BITS:
            m.d.comb += [
                word_valid.eq(buffer.r_rdy),
                word_data.eq(beat_data),
                word_err.eq(beat_err),
                buffer.r_en.eq(word_ready),
            ]
        elif bus_bits < WORD_BITS:
            per_word = WORD_BITS // bus_bits
            parts = Signal(range(per_word + 1))
            assembled = Signal(WORD_BITS)
            assembled_err = Signal()
            m.d.comb += [
                word_valid.eq(parts == per_word),
                word_data.eq(assembled),
                word_err.eq(assembled_err),
                buffer.r_en.eq(parts != per_word),
            ]
            with m.If(word_valid & word_ready):
                m.d.sync += [parts.eq(0), assembled_err.eq(0)]
            with m.Elif(buffer.r_en & buffer.r_rdy):
                m.d.sync += [
                    parts.eq(parts + 1),
                    assembled.eq(Cat(assembled[bus_bits:], beat_data)),
                    assembled_err.eq(assembled_err | beat_err),
                ]
            with m.If(accept_start):
                m.d.sync += [parts.eq(0), assembled_err.eq(0)]
        else:
            per_beat = bus_bits // WORD_BITS
            lane = Signal(range(per_beat))
            m.d.comb += [
                word_valid.eq(buffer.r_rdy),
                word_data.eq(beat_data.word_select(lane, WORD_BITS)),
                word_err.eq(beat_err),
                buffer.r_en.eq(word_ready & (lane == per_beat - 1)),
            ]
            with m.If(word_valid & word_ready):
                m.d.sync += lane.eq(lane + 1)
            with m.If(accept_start):
                m.d.sync += lane.eq(self.prog_addr[4:][: (per_beat - 1).bit_length()])

        # ------------------------------------------------------------ decode register
        dec = self._decoder
        m.submodules.decoder = dec
        m.d.comb += dec.word.eq(word_data)
        # A two-entry queue (hw.dma.StreamRing): its input ready is a flip-flop, so the
        # dispatch decision (`d_take`) reaches neither the prefetch buffer nor the gearbox
        # behind it, and taking a word moves only its read pointer (not the enables of ~150
        # bits of entries). A new run empties it. Its read pointer has a copy per ~30 bits of
        # the payload (`rp_copies`): the pointer's fan-out into the ~150-bit multiplexer in
        # front of the dispatch slot (`slot_cmd`) is split five ways.
        # The word's class is decided as it enters (`kind`, and the status code of a word that
        # cannot be dispatched), so the dispatch decision reads flags, not decoder outputs.
        decoded_layout = data.StructLayout({
            "word": WORD_BITS, "unit": UnitCode,
            "bad": 1,  # a beat error, an illegal word or a SETBASE value out of range
            "bad_code": CODE_BITS,
            "halt": 1,  # a legal HALT
            "setbase": 1,  # a legal SETBASE with its value in range
            "queued": 1,  # a legal instruction of a unit's queue
            "has_base": 1,  # the opcode has a `base` field
            "base_sel": 2,  # its base register's index
        })
        m.submodules.decoded = skid = ResetInserter(accept_start)(
            StreamRing(decoded_layout, rp_copies=5))
        d_valid = skid.o.valid
        d_word = skid.o.payload.word
        d_unit = skid.o.payload.unit
        d_take = Signal()  # the decoded word leaves the register this cycle
        # A register stage in front of the ring (`pre`) holds the word with the decoder's
        # per-opcode checks, its unit and the SETBASE range check: the decoder's LUT levels
        # and carry chains end there, and the word's class is one select of registered flags
        # by the registered opcode as it enters the ring. A new run empties it.
        pre_layout = data.StructLayout({
            "word": WORD_BITS, "err": 1, "ok_by_op": 16, "unit": UnitCode,
            "setbase_bad": 1, "has_base": 1, "base_sel": 2,
        })
        pre = Signal(pre_layout)
        pre_valid = Signal()
        pre_ready = ~pre_valid | skid.i.ready
        pre_d = Signal(pre_layout)
        m.d.comb += [
            pre_d.word.eq(word_data),
            pre_d.err.eq(word_err),
            pre_d.ok_by_op.eq(dec.ok_by_op),
            pre_d.unit.eq(dec.unit),
            pre_d.setbase_bad.eq(dec.decoded.body.setbase.value >> addr_bits != 0),
        ]
        # The base register's index is decided here too: the dispatch slot's input is the
        # ring's multiplexer and one 4:1 select of the base registers.
        for op in Opcode:
            if any(s.name == "base" for s in field_specs(op)):
                with m.If(dec.decoded.header.opcode == op):
                    m.d.comb += [
                        pre_d.has_base.eq(1),
                        pre_d.base_sel.eq(getattr(dec.decoded.body, op.name.lower()).base),
                    ]
        with m.If(word_valid & pre_ready):
            m.d.sync += [pre.eq(pre_d), pre_valid.eq(1)]
        with m.Elif(skid.i.ready):
            m.d.sync += pre_valid.eq(0)
        with m.If(accept_start):
            m.d.sync += pre_valid.eq(0)
        p_opcode = data.View(WORD_LAYOUT, pre.word).header.opcode
        p_illegal = ~pre.ok_by_op.bit_select(p_opcode.as_value(), 1)
        i_legal = ~pre.err & ~p_illegal
        i_dispatch = pre.unit == UnitCode.DISPATCH
        i_halt = p_opcode == Opcode.HALT
        i_setbase_bad = pre.setbase_bad
        i_bad_code = Signal(CODE_BITS)
        with m.If(pre.err):
            m.d.comb += i_bad_code.eq(StatusCode.DRAM_RANGE)
        with m.Elif(p_illegal):
            m.d.comb += i_bad_code.eq(StatusCode.ILLEGAL_INSTRUCTION)
        with m.Else():
            m.d.comb += i_bad_code.eq(StatusCode.FIELD_RANGE)
        m.d.comb += [
            skid.i.valid.eq(pre_valid),
            skid.i.payload.word.eq(pre.word),
            skid.i.payload.unit.eq(pre.unit),
            skid.i.payload.bad.eq(~i_legal | i_dispatch & ~i_halt & i_setbase_bad),
            skid.i.payload.bad_code.eq(i_bad_code),
            skid.i.payload.halt.eq(i_legal & i_dispatch & i_halt),
            skid.i.payload.setbase.eq(i_legal & i_dispatch & ~i_halt & ~i_setbase_bad),
            skid.i.payload.queued.eq(i_legal & ~i_dispatch),
            skid.i.payload.has_base.eq(pre.has_base),
            skid.i.payload.base_sel.eq(pre.base_sel),
            word_ready.eq(pre_ready),
            skid.o.ready.eq(d_take),
        ]
        d_bad = skid.o.payload.bad
        d_halt = skid.o.payload.halt
        d_setbase = skid.o.payload.setbase
        d_queued = skid.o.payload.queued
        d_view = data.View(dec.decoded.shape(), d_word)

        # ------------------------------------------------------------ dispatch
        pc = Signal(PC_BITS)
        words_left = Signal(PC_BITS)  # PROG_LEN - pc
        # words from pc to 2**addr_bits (PROG_ADDR is word aligned)
        space_left = Signal(addr_bits + 1)
        base_regs = [Signal(addr_bits, name=f"base{i}") for i in range(4)]
        m.d.comb += self.fetch_pc.eq(pc)

        own_err = Signal()
        own_code = Signal(CODE_BITS)
        advance = Signal()
        cmd_layout = unit_command_layout(cfg)
        resolved_base = Signal(addr_bits)
        with m.If(skid.o.payload.has_base):
            m.d.comb += resolved_base.eq(
                Cat(*base_regs).word_select(skid.o.payload.base_sel, addr_bits))
        # The dispatch slot: a register stage in front of the unit queues. The dispatch
        # decision drives only the slot's valid flag and unit; the command itself is captured
        # whenever the slot is free, whatever the decision, and the queues are written from the
        # slot's registers. One command per cycle passes while its queue has room.
        # A queue's room is a flip-flop (`room`), loaded with "fewer than instr_fifo_depth
        # entries next cycle" from a count of its entries, so no queue's fill level is on the
        # path from the slot to the dispatch decision. The FIFO is one entry deeper than the
        # count allows, so its own `w_rdy` holds whenever `room` does.
        queues = {}
        slot_valid = Signal()
        slot_unit = Signal(UnitCode)
        slot_cmd = Signal(cmd_layout.size)
        slot_write = Signal()  # the slot's command enters its queue this cycle
        slot_free = Signal()
        qdepth = cfg.instr_fifo_depth
        slot_room_d = Signal()  # next cycle: the queue of the slot's unit has room
        slot_unit_d = Signal(UnitCode)
        for u in UNITS:
            q = SyncFIFOBuffered(width=cmd_layout.size, depth=qdepth + 1)
            m.submodules[f"{u}_queue"] = q
            queues[u] = q
            count = Signal(range(qdepth + 1), name=f"{u}_count")
            room = Signal(init=1, name=f"{u}_room")
            here = slot_valid & (slot_unit == getattr(UnitCode, u.upper()))
            push = here & room
            pop = q.r_en & q.r_rdy
            count_d = count + push - pop
            m.d.sync += [count.eq(count_d), room.eq(count_d < qdepth)]
            with m.If(slot_unit_d == getattr(UnitCode, u.upper())):
                m.d.comb += slot_room_d.eq(count_d < qdepth)
            m.d.comb += [q.w_data.eq(slot_cmd), q.w_en.eq(push)]
            with m.If(push):
                m.d.comb += slot_write.eq(1)
        slot_load = Signal()  # a unit's instruction is dispatched into the slot
        # `slot_free` (`~slot_valid | slot_write`) is a flip-flop, loaded with its next value
        # from the slot's and the queues' next state, so the slot's unit compare and the
        # queue's room stand before one flip-flop, not before `advance` and its ~80 enables.
        slot_free_r = Signal(init=1)
        slot_valid_d = Signal()
        m.d.comb += [
            slot_unit_d.eq(Mux(slot_load, d_unit, slot_unit)),
            slot_valid_d.eq(~accept_start & (slot_load | slot_valid & ~slot_write)),
            slot_free.eq(slot_free_r),
        ]
        m.d.sync += slot_free_r.eq(~slot_valid_d | slot_room_d)
        with m.If(slot_free):
            m.d.sync += slot_cmd.eq(Cat(d_word, pc, resolved_base))
        with m.If(slot_load):
            m.d.sync += [slot_valid.eq(1), slot_unit.eq(d_unit)]
        with m.Elif(slot_write):
            m.d.sync += slot_valid.eq(0)
        with m.If(accept_start):
            m.d.sync += slot_valid.eq(0)

        # pc == prog_len and PROG_ADDR + 16 * pc >= 2**addr_bits, registered: updated with pc.
        at_end = Signal()
        addr_out = Signal()
        can_dispatch = running & ~stopped
        with m.If(can_dispatch):
            with m.If(at_end):
                m.d.comb += [own_err.eq(1), own_code.eq(StatusCode.NO_HALT)]
            with m.Elif(addr_out):
                m.d.comb += [own_err.eq(1), own_code.eq(StatusCode.DRAM_RANGE)]
            with m.Elif(~d_valid):
                m.d.comb += self.stall_fetch.eq(1)
            with m.Elif(d_bad):
                m.d.comb += [own_err.eq(1), own_code.eq(skid.o.payload.bad_code)]
            with m.Elif(d_queued):  # a unit's instruction
                m.d.comb += self.stall_dispatch.eq(~slot_free)
        # The flags are exclusive (`bad`, `halt`, `setbase`, `queued`: one per word), so each
        # action is one AND of flip-flops with `go`, not the end of the priority chain above.
        # `go` (`can_dispatch & ~at_end & ~addr_out & d_valid`) is itself a flip-flop, loaded
        # with that expression of the registers' next values (below), so the actions' fan-out
        # (the enables of pc, the countdowns, the base registers, the slot) starts one LUT
        # from flip-flops.
        go = Signal()
        with m.If(go & d_halt):
            m.d.sync += [halted.eq(1), halt_pc.eq(pc)]
        setbase = d_view.body.setbase
        for i, reg in enumerate(base_regs):
            with m.If(go & d_setbase & (setbase.reg == i)):
                m.d.sync += reg.eq(setbase.value)
        m.d.comb += [
            self.retire.eq(go & (d_halt | d_setbase)),
            slot_load.eq(go & d_queued & slot_free),
            advance.eq(go & (d_halt | d_setbase | d_queued & slot_free)),
        ]
        m.d.comb += d_take.eq(advance)
        # Words left before the program's end and before 2**addr_bits count down with pc, so
        # `at_end` and `addr_out` follow from a compare with a constant (no add before it).
        with m.If(advance):
            m.d.sync += [
                pc.eq(pc + 1),
                words_left.eq(words_left - 1),
                space_left.eq(space_left - 1),
                at_end.eq(words_left == 1),
                addr_out.eq(space_left == 1),
            ]

        # ------------------------------------------------------------ queue heads, flush
        # A head above the error's offset is dropped here without reaching its unit. The
        # compare is registered (`above`), and trusted only while the head has not changed
        # (`head_settled`): the error's offset only decreases while it is valid, so a registered
        # "above" stays true. A head shown to its unit before its `above` settles is dropped
        # by the unit itself (every unit compares `flush` with the words it takes and holds).
        for u in UNITS:
            q, out = queues[u], getattr(self, f"{u}_cmd")
            head = data.View(cmd_layout, q.r_data)
            above = Signal(name=f"{u}_above")
            head_settled = Signal(name=f"{u}_settled")
            m.d.sync += [above.eq(err_valid & (head.pc > err_pc)),
                         head_settled.eq(q.r_rdy & ~q.r_en)]
            discard = above & head_settled
            m.d.comb += [
                out.payload.eq(q.r_data),
                out.valid.eq(q.r_rdy & ~discard),
                q.r_en.eq(out.ready | discard),
            ]

        # ------------------------------------------------------------ error precedence
        # Every error source holds its error once raised (the units' reports are held until
        # their reset; the dispatcher's own is kept in `src_valid[0]` from the cycle it arises,
        # with `pc`, which never moves again in this run), so the lowest offset is the
        # minimum over the sources, with no feedback from the held result. Two stages, each
        # at most one 32-bit compare deep: stage 1 registers every source and every pairwise
        # compare of their offsets (`src_le`); stage 2 picks the winner from those flip-flops
        # (`cand_*`) into `err_*`. An error reaches `err_*` (STATUS, `flush`) 2 cycles after
        # the unit raised it, or after the dispatcher's own condition held.
        units_err = [getattr(self, f"{u}_error") for u in UNITS]
        n_src = 1 + len(units_err)
        src_valid = [Signal(name=f"src{i}_valid") for i in range(n_src)]
        src_code = [Signal(CODE_BITS, name=f"src{i}_code") for i in range(n_src)]
        src_pc = [Signal(PC_BITS, name=f"src{i}_pc") for i in range(n_src)]
        # The units are reset by a registered copy of `started` (hw.accelerator), one cycle
        # after this block: their error reports are not taken in the run's first cycle, when
        # they may still hold the previous run's (no error can arise that early).
        first_cycle = Signal()
        m.d.sync += first_cycle.eq(accept_start)
        take_units = running & ~first_cycle
        new_valid = [src_valid[0] | own_err] + [e.valid & take_units for e in units_err]
        new_pc = [pc] + [e.pc for e in units_err]
        with m.If(own_err & ~src_valid[0]):
            m.d.sync += src_code[0].eq(own_code)
        m.d.sync += [src_valid[0].eq(new_valid[0]), src_pc[0].eq(pc)]
        for i, e in enumerate(units_err, start=1):
            m.d.sync += [src_valid[i].eq(new_valid[i]), src_code[i].eq(e.code),
                         src_pc[i].eq(e.pc)]
        # src_le[i][j] (i < j): source i's offset <= source j's (i wins a tie: the earlier
        # source, as docs/isa.md's order of the checks)
        src_le = {}
        for i in range(n_src):
            for j in range(i + 1, n_src):
                src_le[i, j] = Signal(name=f"src{i}_le_src{j}")
                m.d.sync += src_le[i, j].eq(new_pc[i] <= new_pc[j])
        cand_valid = Signal.like(err_valid)
        cand_code = Signal.like(err_code)
        cand_pc = Signal.like(err_pc)
        m.d.comb += cand_valid.eq(Cat(*src_valid).any())
        for i in range(n_src):
            wins = src_valid[i]
            for j in range(n_src):
                if j != i:
                    beats = src_le[i, j] if i < j else ~src_le[j, i]
                    wins = wins & (~src_valid[j] | beats)
            with m.If(wins):
                m.d.comb += [cand_code.eq(src_code[i]), cand_pc.eq(src_pc[i])]
        with m.If(running):
            m.d.sync += [err_valid.eq(cand_valid), err_code.eq(cand_code), err_pc.eq(cand_pc)]
        # A unit's error not yet in stage 1 keeps the run from ending this cycle.
        fresh_err = Cat(*(new_valid[i] & ~src_valid[i] for i in range(1, n_src))).any()

        # The next values of `go`'s terms, as the assignments of this block give them (a
        # start clears the run's state and the decode queue, see "run state" below).
        ring_push = skid.i.valid & skid.i.ready
        d_valid_d = ~accept_start & (ring_push | ~skid.i.ready | d_valid & ~advance)
        # (the run leaves BUSY only when stopped, and `halted`/`err_valid` hold until a start)
        running_d = accept_start | running
        halted_d = ~accept_start & (halted | go & d_halt)
        err_valid_d = ~accept_start & Mux(running, cand_valid, err_valid)
        at_end_d = Mux(accept_start, self.prog_len == 0, Mux(advance, words_left == 1, at_end))
        addr_out_d = Mux(accept_start, self.prog_addr >> addr_bits != 0,
                         Mux(advance, space_left == 1, addr_out))
        m.d.sync += go.eq(running_d & ~halted_d & ~err_valid_d & ~at_end_d & ~addr_out_d
                          & d_valid_d)

        # ------------------------------------------------------------ run state
        queues_empty = ~slot_valid
        for q in queues.values():
            queues_empty = queues_empty & ~q.r_rdy
        quiet = Signal()
        quiet_before = Signal()
        m.d.comb += quiet.eq(
            stopped & queues_empty & self.units_idle & self.axi_idle & ~axi.arvalid & ~fresh_err
        )
        m.d.sync += quiet_before.eq(quiet & running)
        with m.If(running & quiet & quiet_before):
            m.d.sync += [
                state.eq(RunState.DONE),
                self.code.eq(cand_code),
                self.offset.eq(halt_pc),
            ]
            with m.If(cand_valid):
                m.d.sync += self.offset.eq(cand_pc)
            with m.Else():
                m.d.sync += self.code.eq(StatusCode.OK)

        with m.If(accept_start):
            end = self.prog_addr + (self.prog_len << 4)
            m.d.sync += [
                state.eq(RunState.BUSY),
                self.code.eq(0),
                self.offset.eq(0),
                halted.eq(0),
                err_valid.eq(0),
                err_code.eq(0),
                err_pc.eq(0),
                *(v.eq(0) for v in src_valid),
                prog_len.eq(self.prog_len),
                pc.eq(0),
                words_left.eq(self.prog_len),
                space_left.eq(((1 << addr_bits) - self.prog_addr[:addr_bits + 1])
                              >> (WORD_BYTES.bit_length() - 1)),
                at_end.eq(self.prog_len == 0),
                addr_out.eq(self.prog_addr >> addr_bits != 0),
                req_addr.eq(self.prog_addr & ~(bus_bytes - 1)),
                settled1.eq(0),
                settled.eq(0),
                fetch_limit.eq(end),
                inflight.eq(0),
                *(r.eq(0) for r in base_regs),
            ]
            with m.If(end >> addr_bits != 0):
                m.d.sync += fetch_limit.eq(1 << addr_bits)
        return m
