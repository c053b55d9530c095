"""The load unit: DMACFG, LOAD (padded strided 2-D walk) and LOADT (bias/scale entries, PWL
tables) of docs/isa.md, reading DRAM through an :class:`~hw.dma.AxiReadEngine`.

One instruction at a time, in queue order: pop its token, check it (the golden model's order:
LOAD FIELD_RANGE, SPAD/ACC_RANGE, then DRAM_RANGE per row before the row's read is issued;
LOADT TABLE_RANGE, DRAM_RANGE over the whole record range before any read, BAD_TABLE per
record), stream the reads with several bursts in flight, write the on-chip memories through
write-request streams, wait until every read returned and every write was accepted, push its
token. See :class:`LoadUnit` for the ports.

LOAD walk (per destination row ``dst + i*inner + j``, ``e`` = element bytes): with
``y = y0 + i*sy``, ``x = x0 + j*sx`` and ``xp = x*pix``, element ``b`` is valid when ``0 <= y < H``
and ``0 <= x + floor(b*e/pix) < W``, i.e. ``b_lo <= b < b_hi`` with ``b_lo = ceil(-xp/e)`` (``x <
0``, else 0) and ``b_hi = ceil((W*pix - xp)/e)``, both clipped to ``length``. A row's valid bytes
are therefore one contiguous DRAM run, ``A + y*pitch + xp + b_lo*e`` onwards, ``(b_hi - b_lo)*e``
bytes, which the read engine delivers already shifted to byte ``b_lo*e`` of the row; everything
else in the row is zero. Products are formed once per instruction and the walk adds strides.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import axi4_read_signature
from hw.config import AcceleratorConfig
from hw.dma import AxiReadEngine, StreamRing, StreamSkid
from hw.dsp import PipelinedMultiplier
from hw.isa import BIAS_ENTRY_BYTES, MemSpace, Opcode, TableKind, pwl_table_bytes
from hw.numeric import MAX_SHIFT
from hw.target import kept_flip_flop
from hw.unit_ports import (
    AXI_ID_BITS,
    ERROR_SIGNATURE,
    FLUSH_SIGNATURE,
    TOKEN_SIGNATURE,
    unit_command_layout,
)

__all__ = [
    "GEOMETRY_LAYOUT",
    "LoadUnit",
    "TableField",
    "acc_write_layout",
    "bias_write_layout",
    "spad_write_layout",
    "table_write_layout",
]

#: A DMA geometry slot (DMACFG's fields).
GEOMETRY_LAYOUT = data.StructLayout(
    {"height": 14, "width": 14, "pitch": 32, "pix": 16, "sy": 6, "sx": 6}
)


#: Longest run of whole rows merged into one read request (bytes).
MERGE_BYTES = 4096
#: Most rows merged into one read request: a run of whole-beat rows is at most one 256-beat
#: burst's worth of rows, so a 4 KiB run of 16-byte rows on a 128-bit bus is one burst.
MERGE_ROWS = 256
#: A merged run is requested early, before it is as long as it could be, while fewer rows than
#: this are requested and not yet written (the bus would otherwise idle): runs start short and
#: grow as the reads fall behind the walk (one row per cycle).
LOW_WATER_ROWS = 64
#: Rows between the walk and the request stage: the row queue's depth (the walk steps while
#: every row in flight has a place in it).
ROW_QUEUE = 8


class TableField(enum.IntEnum):
    """Which field of a PWL function a ``table_write`` beat sets."""

    SHIFT = 0
    BREAKPOINT = 1
    SLOPE = 2
    INTERCEPT = 3


def spad_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Scratchpad write request: one whole row, ``{addr, data: lanes x int8}``."""
    return data.StructLayout(
        {
            "addr": unsigned((config.scratchpad_rows - 1).bit_length()),
            "data": data.ArrayLayout(signed(8), config.lanes),
        }
    )


def acc_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Accumulator write request: one whole row, ``{addr, data: C x int32}``."""
    return data.StructLayout(
        {
            "addr": unsigned((config.accumulator_rows - 1).bit_length()),
            "data": data.ArrayLayout(signed(32), config.cols),
        }
    )


def bias_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Bias/scale write request: one whole entry, ``{entry, bias int32, mult int16, shift u6}``."""
    return data.StructLayout(
        {
            "entry": unsigned((config.bias_entries - 1).bit_length()),
            "bias": signed(32),
            "mult": signed(16),
            "shift": unsigned(6),
        }
    )


def table_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Segment-table write request: one field of one function per beat,
    ``{fn, field: TableField, index, value: int32}``.

    ``BREAKPOINT`` index ``0 .. S-2``, ``SLOPE`` / ``INTERCEPT`` index ``0 .. S-1`` (value
    sign-extended from int16 for slopes), then ``SHIFT`` (index 0) as the table's last beat, only
    once the whole table was validated: a ``SHIFT`` write marks the function loaded.
    """
    return data.StructLayout(
        {
            "fn": unsigned(max(1, (config.pwl_functions - 1).bit_length())),
            "field": unsigned(2),
            "index": unsigned(max(1, (config.pwl_segments - 1).bit_length())),
            "value": signed(32),
        }
    )


class _Code(enum.IntEnum):
    # sim.golden.StatusCode values used here (hw must not import sim).
    SPAD_RANGE = 2
    ACC_RANGE = 3
    TABLE_RANGE = 4
    DRAM_RANGE = 5
    FIELD_RANGE = 6
    BAD_TABLE = 7


class _LateFlagSkid(wiring.Component):
    """A :class:`~hw.dma.StreamSkid` (two entries; ``i.ready`` and ``o.valid`` / ``o.payload``
    from flip-flops, one beat per cycle in order) whose beats carry a flag that arrives a cycle
    after the beat: ``mark`` in the cycle after a push flags the beat pushed then, and ``flag``
    is the output beat's flag (``mark`` itself while that beat is the only one held). A check
    on the pushed beat can so end in one flip-flop instead of the entries' inputs.

    Parameters
    ----------
    shape : shape-like
        The payload shape.
    """

    def __init__(self, shape) -> None:
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "mark": In(1),
            "flag": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.skid = skid = StreamSkid(self.i.payload.shape())
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        # The skid's state, followed from its ports: `spare_valid` is `~i.ready`, and the beat
        # pushed last is the spare while it holds one, else the main entry.
        spare_valid = ~skid.i.ready
        pushed = Signal()
        m.d.sync += pushed.eq(skid.i.valid & skid.i.ready)
        late = self.mark & pushed
        main_flag = Signal()
        spare_flag = Signal()
        m.d.comb += self.flag.eq(main_flag | (late & ~spare_valid))
        with m.If(~spare_valid):
            m.d.sync += spare_flag.eq(0)
        with m.Elif(late):
            m.d.sync += spare_flag.eq(1)
        with m.If(~skid.o.valid | skid.o.ready):
            m.d.sync += main_flag.eq(spare_valid & (spare_flag | late))
        with m.Elif(late & ~spare_valid):
            m.d.sync += main_flag.eq(1)
        return m


class LoadUnit(wiring.Component):
    """Executes DMACFG, LOAD, LOADT and SYNC (target LOAD) from the load queue.

    Parameters
    ----------
    config : AcceleratorConfig
        Sizes: ``dma_data_bits`` (AXI beat), ``addr_bits``, memory depths and widths.
    max_outstanding : int
        AXI read bursts in flight at most (latency hiding). 128 keeps a stream of one-beat
        rows (a strided operand such as a row-major ``A`` block) at one beat a cycle up to a
        DRAM latency of about 120 cycles.
    arid : int
        ``arid`` of every burst (0 .. 2**AXI_ID_BITS - 1), e.g. to route R beats in an arbiter.

    Ports
    -----
    cmd : In(stream(unit_command_layout(config)))
        The load queue (DMACFG, LOAD, LOADT, SYNC). A beat is taken when the unit starts it.
    axi : Out(axi4_read_signature(addr_bits, dma_data_bits, AXI_ID_BITS))
        AR and R channels (``arid`` constant).
    spad_write : Out(stream(spad_write_layout(config)))
    acc_write : Out(stream(acc_write_layout(config)))
        One whole row per beat (elements beyond ``length`` zero), rows in ascending order.
    bias_write : Out(stream(bias_write_layout(config)))
        LOADT BIAS: one entry per beat, ascending.
    table_write : Out(stream(table_write_layout(config)))
        LOADT PWL: one field per beat (see :func:`table_write_layout`).
    pop_c2l : In(TOKEN_SIGNATURE)
        Token from the compute unit (``pop_next``).
    push_l2c : Out(TOKEN_SIGNATURE)
        Token to the compute unit (``push_next``), given once every write of the instruction
        was accepted by its memory (a write is visible from the cycle after its handshake).
    error : Out(ERROR_SIGNATURE)
        Set (and held) on the first failing instruction; the unit then takes nothing more.
        Outstanding reads have drained when it rises.
    flush_above : In(FLUSH_SIGNATURE)
        Instructions with ``pc`` above ``flush_above.pc`` are discarded (a running one stops
        issuing reads, drains, and pushes no token).
    dram_limit : In(64)
        Bytes ``0 .. dram_limit-1`` may be read (and only below ``2**addr_bits``).
    busy : Out(1)
        An instruction is in progress (token wait included).
    stall_token : Out(1)
        Waiting for a ``c2l`` token.
    stall_axi_read : Out(1)
        Reads are outstanding and no R beat moved this cycle.
    retired : Out(1)
        Strobe: an instruction completed.
    """

    def __init__(
        self, config: AcceleratorConfig, *, max_outstanding: int = 128, arid: int = 0
    ) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        if (
            isinstance(max_outstanding, bool)
            or not isinstance(max_outstanding, int)
            or not (1 <= max_outstanding <= 256)
        ):
            raise ValueError(
                f"max_outstanding must be an integer in 1..256, got {max_outstanding!r}"
            )
        self._config = config
        self._max_outstanding = max_outstanding
        bw = config.dma_data_bits // 8
        # Rows merged into one request, and the row-descriptor queue: each row of a run keeps a
        # descriptor until its data is written, so the queue holds two whole runs (one streaming,
        # the next being merged) and at least one row per outstanding burst.
        self._merge_rows = max(1, min(MERGE_ROWS, MERGE_BYTES // bw))
        self._desc_depth = max(max_outstanding, 2 * self._merge_rows)
        self._reader = AxiReadEngine(
            addr_bits=config.addr_bits,
            data_bits=config.dma_data_bits,
            id_bits=AXI_ID_BITS,
            len_bits=32,
            max_outstanding=max_outstanding,
            arid=arid,
        )
        self._row_slice = StreamSkid(data.StructLayout({
            "row": 24, "data": max(8 * config.lanes, 32 * config.cols), "acc": 1,
        }))
        super().__init__(
            {
                "cmd": In(stream.Signature(unit_command_layout(config))),
                "axi": Out(
                    axi4_read_signature(config.addr_bits, config.dma_data_bits, AXI_ID_BITS)
                ),
                "spad_write": Out(stream.Signature(spad_write_layout(config))),
                "acc_write": Out(stream.Signature(acc_write_layout(config))),
                "bias_write": Out(stream.Signature(bias_write_layout(config))),
                "table_write": Out(stream.Signature(table_write_layout(config))),
                "pop_c2l": In(TOKEN_SIGNATURE),
                "push_l2c": Out(TOKEN_SIGNATURE),
                "error": Out(ERROR_SIGNATURE),
                "flush_above": In(FLUSH_SIGNATURE),
                "dram_limit": In(64),
                "busy": Out(1),
                "stall_token": Out(1),
                "stall_axi_read": Out(1),
                "retired": Out(1),
            }
        )

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self._config

    @property
    def max_outstanding(self) -> int:
        """AXI read bursts in flight at most."""
        return self._max_outstanding

    @property
    def merge_rows(self) -> int:
        """Most whole-beat rows merged into one read request."""
        return self._merge_rows

    @property
    def desc_depth(self) -> int:
        """Row descriptors the queue holds (rows requested and not yet written, at most)."""
        return self._desc_depth

    def elaborate(self, platform):  # noqa: C901 (one state machine, kept together)
        m = Module()
        cfg = self._config
        m.submodules.reader = rd = self._reader
        wiring.connect(m, rd.axi, wiring.flipped(self.axi))

        bw = cfg.dma_data_bits // 8
        lb = bw.bit_length() - 1
        row_bytes = max(cfg.lanes, 4 * cfg.cols)
        row_beats = -(-row_bytes // bw)
        seg = cfg.pwl_segments
        table_bytes = pwl_table_bytes(seg)
        addr_limit = 1 << cfg.addr_bits

        # ---------------------------------------------------------------- instruction register
        ins = Signal(unit_command_layout(cfg))
        hdr = ins.word.header
        load = ins.word.body.load
        loadt = ins.word.body.loadt
        dmacfg = ins.word.body.dmacfg
        idle = Signal()  # the control FSM is in IDLE (takes the word on `cmd.valid`)
        # `flushed` is registered: the instruction's pc against the flush bound of the cycle
        # before (a flush reaches the unit one cycle later; the compare is off every enable).
        flushed = Signal()
        incoming_flushed = self.flush_above.valid & (self.cmd.payload.pc > self.flush_above.pc)
        # (both compares in parallel, the word taken selects: no compare behind the FSM)
        m.d.sync += flushed.eq(Mux(
            idle & self.cmd.valid,
            incoming_flushed,
            self.flush_above.valid & (ins.pc > self.flush_above.pc),
        ))

        slots = [Signal(GEOMETRY_LAYOUT, name=f"slot{k}") for k in range(4)]
        geom = Signal(GEOMETRY_LAYOUT)  # the LOAD's slot, registered while it waits in POP
        # A DMACFG writes its slot in PUSH, from a one-hot enable registered in EXEC: the
        # slots' ~80 clock enables start at a flip-flop, not behind the FSM's decode (a LOAD
        # reads a slot in POP, at least two cycles after the DMACFG's PUSH).
        slot_we = Signal(4)
        m.d.sync += slot_we.eq(0)
        for k in range(4):
            with m.If(slot_we[k]):
                m.d.sync += slots[k].eq(Cat(
                    dmacfg.height, dmacfg.width, dmacfg.pitch, dmacfg.pix, dmacfg.sy, dmacfg.sx))

        err_code = Signal(4)
        err_pending = Signal()
        error = Signal()
        err_pc = Signal(32)
        # (the instruction's pc in every cycle until `error` rises with it: the DRAIN's
        # decision drives `error`, not 32 enables; `pc` is read only while `valid`)
        with m.If(~error):
            m.d.sync += err_pc.eq(ins.pc)
        m.d.comb += [
            self.error.valid.eq(error),
            self.error.code.eq(err_code),
            self.error.pc.eq(err_pc),
        ]

        def fail(code):
            # Record the instruction's first error; later ones of the same instruction lose.
            with m.If(~err_pending):
                m.d.sync += [err_pending.eq(1), err_code.eq(code)]

        # ---------------------------------------------------------------- per-instruction state
        is_acc = Signal()
        esize_log = Signal(2)  # 0 (SPAD) or 2 (ACC)
        round_up = Signal(2)  # element bytes - 1
        base_addr = Signal(cfg.addr_bits + 33)  # base + offset
        count = Signal(24)  # LOAD rows
        # `outer * inner` through a DSP block's own input and product registers
        # (`hw.dsp.PipelinedMultiplier`): the operands are taken from the command as it loads
        # into `ins` (IDLE) and held from `ins` after it (``a`` loads every cycle, ``b`` only in
        # IDLE), so the product is ready from EXEC on (two edges after the take), however long
        # POP waits.
        m.submodules.mul_count = mul_count = PipelinedMultiplier(13, 13)
        cload = self.cmd.payload.word.body.load
        m.d.comb += [
            mul_count.a.eq(Mux(idle, cload.outer, load.outer)),
            mul_count.b.eq(cload.inner),
            mul_count.b_en.eq(idle),
        ]
        # LOAD_CHECK's range checks as flip-flops (formed in EXEC and LOAD_PREP from registers,
        # so no compare stands in front of the FSM's decision)
        bad_len = Signal()  # length > the row's elements
        rows_left = Signal(signed(26))  # rows of the memory from dst on (negative: dst beyond)
        bad_dst = Signal()  # dst + count > the memory's rows
        t_bad_range = Signal()  # LOADT: dst + count > the table's entries (formed in EXEC)
        # products, each one multiplier deep: the 32-bit pitch in two 16-bit halves
        yp0_lo = Signal(signed(32))
        yp0_hi = Signal(signed(32))
        syp_lo = Signal(23)
        syp_hi = Signal(23)
        yp0 = Signal(signed(54))
        syp = Signal(39)
        xp0 = Signal(signed(32))
        sxp = Signal(23)
        # `sx * pix` from copies of its operands, all in every cycle: `geom` is the LOAD's from
        # EXEC on (it changes only in POP), so `sxp` is from LOAD_CHECK on and the walk reads it
        # from RUN on; the multiplier's inputs are flip-flops of its own (a DSP block's input
        # registers), not `geom`, which drives three multipliers and the walk.
        sx_r = Signal.like(geom.sx)
        pix_r = Signal.like(geom.pix)
        m.d.sync += [sx_r.eq(geom.sx), pix_r.eq(geom.pix), sxp.eq(sx_r * pix_r)]
        wpix = Signal(31)
        wpix_r = Signal(32)  # W*pix + round_up
        inner_m1 = Signal(12)
        inner_one = Signal()  # inner == 1: the walk's first step is the last of its row
        run_rows = Signal(range(self._merge_rows + 1))  # rows a merged run may hold

        # walk (one row per step; every update is a single addition)
        i_left = Signal(12)  # outer iterations after this one
        j_left = Signal(12)  # inner iterations after this one
        # `j_left == 0` and `i_left == 0` as flip-flops loaded with the counters (from
        # `j_left == 1` / `i_left == 1` as they count down): the walk's step choice reads a
        # flag, not a carry chain on a counter
        j_last = Signal()
        i_last = Signal()
        y = Signal(signed(21))
        x = Signal(signed(21))
        ya = Signal(signed(60))  # A + y*pitch + x0*pix
        # A + x0*pix, formed in LOAD_PREP: LOAD_CHECK adds y0*pitch into `ya` and LOAD_START
        # only copies `ya` into `xa` (no adder in front of `xa`'s input multiplexer there)
        base_x = Signal(signed(60))
        xa = Signal(signed(60))  # A + y*pitch + x*pix
        neg_xp = Signal(signed(40))  # -x*pix + round_up
        rem = Signal(signed(40))  # W*pix - x*pix + round_up
        neg_xp0 = Signal(signed(40))
        rem0 = Signal(signed(40))
        row = Signal(24)
        walking = Signal()

        # LOADT
        t_issued = Signal(17)
        t_lasts = Signal(17)
        t_issuing = Signal()
        t_addr = Signal(cfg.addr_bits + 33)
        # the next request's address and "this request is the last", formed a request ahead so
        # the request's handshake only loads registers (no add or compare behind it)
        t_next = Signal(cfg.addr_bits + 33)
        t_final = Signal()
        t_count = Signal(17)
        t_bytes = Signal(32)
        t_total = Signal(32)  # bytes of all records
        t_end = Signal(cfg.addr_bits + 34)  # one past the last record byte

        # ---------------------------------------------------------------- row geometry
        # A feed-forward pipeline that never stalls: the walk (stage 0) steps while the row
        # queue behind it has room for every row in flight (a registered flag); stage 1
        # registers the row's valid element range, stage 2 its DRAM run, stage 3 its compares
        # with the limit and with the previous row's end (registered: a 61-bit compare with
        # the 64-bit limit is a deep LUT tree); the row's flags for the merge logic are formed
        # from stage 3 on its way into the row queue, whose head the request stage merges and
        # issues.
        s1_valid = Signal()
        s1_row = Signal(24)
        s1_xa = Signal(signed(60))
        s1_valid_y = Signal()
        s1_lo = Signal(8)
        s1_hi = Signal(8)
        s2_valid = Signal()
        s2_row = Signal(24)
        s2_has = Signal()
        s2_lo_byte = Signal(10)
        s2_nbytes = Signal(10)
        s2_start = Signal(signed(61))
        s2_end = Signal(signed(61))
        s2_full = Signal()  # the whole row (elements 0 .. length-1) comes from DRAM
        s3_valid = Signal()
        s3_row = Signal(24)
        s3_has = Signal()
        s3_lo_byte = Signal(10)
        s3_nbytes = Signal(10)
        s3_start = Signal(signed(61))
        s3_limit_ok = Signal()
        s3_mergeable = Signal()
        s3_contig = Signal()
        merge_ok = Signal()  # rows of this LOAD are whole beats
        prev_end = Signal(signed(61))  # end of the last row with data past stage 2

        length = load.length

        def clip(v, e):
            # min(max(v >> e, 0), length) for a signed v, with narrow compares: the shift
            # selects bits, the upper ones are only tested for zero
            lo8 = Mux(e == 0, v[:8], v[2:10])
            zero = Mux(e == 0, v[8:] == 0, v[10:] == 0)
            neg = v[-1]
            return Mux(neg, 0, Mux(zero & (lo8 < length), lo8, length))

        s1_has = s1_valid_y & (s1_lo < s1_hi)
        lo_byte = Signal(10)
        hi_byte = Signal(10)
        m.d.comb += [lo_byte.eq(s1_lo << esize_log), hi_byte.eq(s1_hi << esize_log)]

        # ---------------------------------------------------------------- row descriptors
        desc_layout = data.StructLayout(
            {
                "row": 24,
                "has": 1,
                "hot": row_beats,  # the row's first beat place, one-hot
                "nbeats": row_beats.bit_length(),
                "single": 1,  # nbeats == 1, computed on the way in
            }
        )
        m.submodules.desc = desc = SyncFIFOBuffered(
            width=desc_layout.size, depth=self._desc_depth
        )
        # The queue's head in a register: the block RAM's read data (its output latch is slow)
        # reaches only this register, not the assembler's decisions.
        # A spare register behind the head (a two-entry slice, as `StreamSkid`) takes the
        # queue's output whenever it is free: the queue's read enable (its block RAM's enable
        # and its level counter) is that flip-flop, not the assembler's pop. The head loads
        # from the spare, else from the queue, in the same cycles as it would from the queue.
        desc_out = Signal(desc_layout)  # the head descriptor
        desc_valid = Signal()
        desc_pop = Signal()  # the assembler is done with the head
        desc_spare = Signal(desc_layout, reset_less=True)
        desc_spare_valid = Signal()
        head_in = Signal(desc_layout)
        m.d.comb += [
            desc.r_en.eq(~desc_spare_valid),
            head_in.eq(Mux(desc_spare_valid, desc_spare, desc.r_data)),
        ]
        head_load = Signal()  # a descriptor becomes the head
        m.d.comb += head_load.eq((~desc_valid | desc_pop) & (desc_spare_valid | desc.r_rdy))
        with m.If(desc_pop):
            m.d.sync += desc_valid.eq(0)
        with m.If(head_load):
            m.d.sync += [desc_out.eq(head_in), desc_valid.eq(1)]
        with m.If(~desc_spare_valid):
            m.d.sync += [
                desc_spare.eq(desc.r_data),
                desc_spare_valid.eq(desc.r_rdy & desc_valid & ~desc_pop),
            ]
        with m.Elif(desc_pop):
            m.d.sync += desc_spare_valid.eq(0)

        # ---------------------------------------------------------------- row queue
        queue_layout = data.StructLayout(
            {
                "row": 24,
                "has": 1,
                "limit_ok": 1,
                "mergeable": 1,
                "contig": 1,  # starts where the previous row with data ended
                # the merge logic's conditions on the row alone, combined on the way in
                "ok": 1,  # has & limit_ok
                "alone": 1,  # ok & ~mergeable: requested by itself
                "starts": 1,  # ok & mergeable: may start a run
                "joins": 1,  # ok & mergeable & contig: may join the pending run
                "lo_byte": 10,
                "nbytes": 10,
                "start": signed(61),
            }
        )
        # The queue's head is a `StreamRing` behind a first-word-fall-through FIFO (the FIFO's
        # read is combinational, so a row reaches the head in the same cycles as through a
        # buffered FIFO): the request stage's issue decision (deep) moves only the ring's
        # pointers, not the FIFO's read enable and the ~110 enables of a buffered FIFO's output.
        m.submodules.rowq = rowq = SyncFIFO(width=queue_layout.size, depth=ROW_QUEUE)
        m.submodules.row_head = row_head = StreamRing(queue_layout)
        q_in = Signal(queue_layout)
        head = Signal(queue_layout)
        m.d.sync += [
            s3_valid.eq(s2_valid),
            s3_row.eq(s2_row),
            s3_has.eq(s2_has),
            s3_lo_byte.eq(s2_lo_byte),
            s3_nbytes.eq(s2_nbytes),
            s3_start.eq(s2_start),
            s3_limit_ok.eq((s2_end <= self.dram_limit) & (s2_end <= addr_limit)),
            s3_mergeable.eq(s2_full & merge_ok),
            s3_contig.eq(s2_start == prev_end),
        ]
        m.d.comb += [
            q_in.row.eq(s3_row),
            q_in.has.eq(s3_has),
            q_in.limit_ok.eq(s3_limit_ok),
            q_in.mergeable.eq(s3_mergeable),
            q_in.contig.eq(s3_contig),
            q_in.lo_byte.eq(s3_lo_byte),
            q_in.nbytes.eq(s3_nbytes),
            q_in.start.eq(s3_start),
            q_in.ok.eq(s3_has & s3_limit_ok),
            q_in.alone.eq(s3_has & s3_limit_ok & ~s3_mergeable),
            q_in.starts.eq(s3_has & s3_limit_ok & s3_mergeable),
            q_in.joins.eq(s3_has & s3_limit_ok & s3_mergeable & s3_contig),
            rowq.w_data.eq(q_in),
            rowq.w_en.eq(s3_valid),
            row_head.i.valid.eq(rowq.r_rdy),
            row_head.i.payload.eq(rowq.r_data),
            rowq.r_en.eq(row_head.i.ready),
            head.eq(row_head.o.payload),
        ]
        with m.If(s2_valid & s2_has):
            m.d.sync += prev_end.eq(s2_end)
        # rows stepped and not yet taken from the queue, and the registered room flag
        occ = Signal(range(ROW_QUEUE + 1))
        room = Signal(init=1)

        # ---------------------------------------------------------------- read requests
        # Whole rows whose length is a multiple of the beat and that follow each other in DRAM
        # are merged into one request (a run of up to MERGE_BYTES and merge_rows rows, half the
        # descriptor queue): one long burst instead of one burst per row. Each row keeps its own
        # descriptor; the assembler counts beats. A run goes early while the reads in flight
        # run low (LOW_WATER_ROWS), so merging never delays the first data.
        row_issue = Signal()  # the head row leaves the queue (descriptor written)
        stop = flushed | err_pending
        pend_valid = Signal()
        pend_start = Signal(signed(61))
        pend_nbytes = Signal(range(MERGE_BYTES + 1))
        pend_rows = Signal(range(self._merge_rows + 1))
        pend_space = Signal(range(self._merge_rows + 1))  # rows the run may still take
        # rows whose descriptor is written and whose data is not (pending ones included)
        flight = Signal(range(self._desc_depth + 4))
        low_water = Signal()
        m.d.sync += low_water.eq(flight - Mux(pend_valid, pend_rows, 0) < LOW_WATER_ROWS)
        # descriptors in the queue, and the registered flag "one more fits"
        descs = Signal(range(self._desc_depth + 1))
        desc_room = Signal(init=1)
        live = row_head.o.valid & ~stop
        req = rd.req
        pend_room = Signal()  # pend_space != 0, registered with pend_space
        join = (
            live
            & head.joins
            & pend_valid
            & pend_room
            # a run keeps growing while the engine has a request waiting or cannot take one
            & (~low_water | rd.queued | ~req.ready)
            & desc_room  # else the run must go: its rows' data frees descriptors
        )
        issue_pend = pend_valid & ~join
        pend_fire = issue_pend & req.ready
        single = Signal()  # the head row is requested alone (or needs no read) this cycle
        with m.If(live & head.has & ~head.limit_ok):
            fail(_Code.DRAM_RANGE)
        with m.If(issue_pend):
            m.d.comb += [
                req.valid.eq(1),
                req.payload.addr.eq(pend_start),
                req.payload.nbytes.eq(pend_nbytes),
                req.payload.dst_off.eq(0),
            ]
            with m.If(req.ready):
                m.d.sync += pend_valid.eq(0)
        with m.Elif(live & head.alone):
            m.d.comb += [
                req.valid.eq(desc_room),
                req.payload.addr.eq(head.start),
                req.payload.nbytes.eq(head.nbytes),
                req.payload.dst_off.eq(head.lo_byte),
                single.eq(desc_room & req.ready),
            ]
        with m.Elif(t_issuing):
            # (a LOADT starts with the row queue empty and no run pending, so the two branches
            # above are idle while `t_issuing` is set: its handshake depends on it alone)
            m.d.comb += [
                req.valid.eq(~stop),
                req.payload.addr.eq(t_addr),
                req.payload.nbytes.eq(t_bytes),
                req.payload.dst_off.eq(0),
            ]
        with m.If(join):
            m.d.comb += row_issue.eq(1)
            m.d.sync += [
                pend_nbytes.eq(pend_nbytes + head.nbytes),
                pend_rows.eq(pend_rows + 1),
                pend_space.eq(pend_space - 1),
                pend_room.eq(pend_space != 1),
            ]
        # a new run starts when none is pending or in the cycle the pending one is requested
        with m.If(live & head.starts & (~pend_valid | pend_fire)):
            m.d.comb += row_issue.eq(desc_room)
            with m.If(desc_room):
                m.d.sync += [
                    pend_valid.eq(1),
                    pend_start.eq(head.start),
                    pend_nbytes.eq(head.nbytes),
                    pend_rows.eq(1),
                    pend_space.eq(run_rows - 1),
                    pend_room.eq(run_rows != 1),
                ]
        with m.If(live & ~head.has):
            m.d.comb += single.eq(desc_room)
        with m.If(single):
            m.d.comb += row_issue.eq(1)
        d_in = Signal(desc_layout)
        d_nbeats = Signal.like(d_in.nbeats)
        m.d.comb += [
            d_in.row.eq(head.row),
            d_in.has.eq(head.has),
            # zero for a row with no data, so that `placed` is 0 under it (see `out_data`)
            d_in.hot.eq(Cat(*[head.has & ((head.lo_byte >> lb) == k) for k in range(row_beats)])),
            d_nbeats.eq(((head.lo_byte & (bw - 1)) + head.nbytes + bw - 1) >> lb),
            d_in.nbeats.eq(d_nbeats),
            d_in.single.eq(d_nbeats == 1),
            # rows of a stopped LOAD are dropped from the queue
            row_head.o.ready.eq(row_issue | stop),
        ]

        # The descriptor reaches the queue a cycle after its row issues, from flip-flops: the
        # issue decision (deep) drives one flag, not the clock enables of the block RAM's write
        # registers. (`descs` counts it from the issue, so the room flag stays safe.)
        d_w_valid = Signal()
        d_w_data = Signal(desc_layout)
        m.d.sync += [d_w_valid.eq(row_issue), d_w_data.eq(d_in)]
        m.d.comb += [desc.w_data.eq(d_w_data), desc.w_en.eq(d_w_valid)]
        # The head's loads are counted a cycle late (the assembler's pop, deep logic, drives
        # the head's load but not this counter): `descs` and `desc_room` err on the
        # safe side for that cycle.
        desc_take = Signal()
        m.d.sync += desc_take.eq(head_load)  # (the spare counts as the queue's)
        m.d.sync += descs.eq(descs + row_issue - desc_take)
        with m.If(row_issue & ~desc_take):
            m.d.sync += desc_room.eq(descs < self._desc_depth - 1)
        with m.Elif(desc_take & ~row_issue):
            m.d.sync += desc_room.eq(1)

        step = walking & room & ~stop
        pop = row_head.o.valid & row_head.o.ready
        m.d.sync += occ.eq(occ + step - pop)
        with m.If(step & ~pop):
            m.d.sync += room.eq(occ < ROW_QUEUE - 1)
        with m.Elif(pop & ~step):
            m.d.sync += room.eq(1)

        m.d.sync += [s1_valid.eq(step), s2_valid.eq(s1_valid)]
        m.d.sync += [
            s2_row.eq(s1_row),
            s2_has.eq(s1_has),
            s2_lo_byte.eq(lo_byte),
            s2_nbytes.eq(hi_byte - lo_byte),
            s2_start.eq(s1_xa + lo_byte),
            s2_full.eq(s1_has & (s1_lo == 0) & (s1_hi == length)),
            s2_end.eq(s1_xa + hi_byte),
        ]
        # Stage 1 follows the walk in every cycle (`s1_valid` says whether it holds a step):
        # `step` enables only the walk's own registers.
        m.d.sync += [
            s1_row.eq(row),
            s1_xa.eq(xa),
            s1_valid_y.eq((y >= 0) & (y < geom.height)),
            s1_lo.eq(Mux(x < 0, clip(neg_xp, esize_log), 0)),
            s1_hi.eq(clip(rem, esize_log)),
        ]
        with m.If(step):
            m.d.sync += row.eq(row + 1)
            with m.If(j_last):
                m.d.sync += [
                    j_left.eq(inner_m1),
                    j_last.eq(inner_one),
                    i_left.eq(i_left - 1),
                    i_last.eq(i_left == 1),
                    x.eq(load.x0),
                    y.eq(y + geom.sy),
                    ya.eq(ya + syp),
                    xa.eq(ya + syp),
                    neg_xp.eq(neg_xp0),
                    rem.eq(rem0),
                ]
            with m.Else():
                m.d.sync += [
                    j_left.eq(j_left - 1),
                    j_last.eq(j_left == 1),
                    x.eq(x + geom.sx),
                    xa.eq(xa + sxp),
                    neg_xp.eq(neg_xp - sxp),
                    rem.eq(rem - sxp),
                ]
            with m.If(j_last & i_last):
                m.d.sync += walking.eq(0)
        # (rows already in stages 1 to 3 when the LOAD stops flow into the queue and are
        # dropped there, so `occ` stays exact)

        written_fire = Signal()
        m.d.sync += flight.eq(flight + row_issue - written_fire)

        t_fire = t_issuing & ~stop & req.ready
        with m.If(t_fire):
            m.d.sync += [
                t_issued.eq(t_issued + 1),
                t_addr.eq(t_next),
                t_next.eq(t_next + t_bytes),
                t_final.eq(t_issued + 2 == t_count),
            ]
            with m.If(t_final):
                m.d.sync += t_issuing.eq(0)
        with m.If(stop & (walking | t_issuing)):
            m.d.sync += [walking.eq(0), t_issuing.eq(0)]

        # ---------------------------------------------------------------- row assembler
        row_reg = Signal(8 * bw * row_beats, reset_less=True)  # valid under `row_has`
        slot = Signal(range(row_beats + 1))
        beat = rd.data.payload
        placed = Signal(8 * bw * row_beats)
        # `slot == desc_out.nbeats - 1` as a flip-flop: set when the head loads (from the
        # descriptor's `single`; `slot` is 0 then) and when `slot` moves on, so the row-end
        # decision in front of `rd.data.ready` and the row registers' enables is no compare.
        at_last = Signal()
        # The beat's place in the row (the head's first beat + `slot`) as one-hot flip-flops:
        # loaded with a new head's one-hot first place (formed before the descriptor queue, so
        # the queue's block RAM output, a slow latch, reaches `hot` through one multiplexer),
        # shifted up when `slot` moves on, back to the head's first place when a row ends: each
        # drives its part of the row registers with no decode in front.
        slot_d = Signal.like(slot)
        m.d.comb += slot_d.eq(slot)
        m.d.sync += slot.eq(slot_d)
        hot = Signal(row_beats, init=1)
        hot_d = Signal(row_beats)  # `hot`'s next value (the updates below set it)
        m.d.comb += hot_d.eq(hot)
        m.d.sync += hot.eq(hot_d)
        # Each place's enable of its 64-odd row register bits, and its select in `placed`, is
        # a copy of `hot[k]` of its own (`kept_flip_flop`s loaded with `hot_d`, no reset:
        # `hot_d` is `hot` while the unit is reset, so they equal `hot` from the first cycle
        # after one): a load of ~32 flip-flops each, not one flip-flop's ~130 loads.
        hot_parts = 2  # copies per place for `row_reg`
        hot_reg = [[kept_flip_flop(m, hot_d[k], platform, f"hot_reg{k}_{j}")
                    for j in range(hot_parts)] for k in range(row_beats)]
        hot_sel = [kept_flip_flop(m, hot_d[k], platform, f"hot_sel{k}") for k in range(row_beats)]
        m.d.comb += placed.eq(Cat(*[Mux(hot_sel[k], beat.data, 0) for k in range(row_beats)]))
        # A row's beats go to distinct places, so each beat place of `row_reg` holds at most
        # one beat per row: place k follows the read data in every cycle in which it is the
        # next beat's place (`hot[k]`, a flip-flop, is its enable) and so holds the beat taken
        # there once `hot` moves on; `row_has[k]` (set by the beat handshake, cleared at a
        # row's end and in EXEC) says whether it holds this row's data, so `row_now` is the row
        # so far. The handshake drives `row_has`, not the enables of ~256 flip-flops.
        beat_taken = Signal()
        row_has = Signal(row_beats)
        row_has_clr = Signal()
        beat_w = 8 * bw
        part_w = -(-beat_w // hot_parts)
        for k in range(row_beats):
            for j, lo in enumerate(range(0, beat_w, part_w)):
                hi = min(beat_w, lo + part_w)
                with m.If(hot_reg[k][j]):
                    m.d.sync += row_reg[k * beat_w + lo:k * beat_w + hi].eq(beat.data[lo:hi])
        m.d.sync += row_has.eq(Mux(row_has_clr, 0, row_has | Mux(beat_taken, hot, 0)))
        row_now = Cat(*[Mux(row_has[k], row_reg[k * beat_w:(k + 1) * beat_w], 0)
                        for k in range(row_beats)])
        out_valid = Signal()
        out_row = Signal(24)
        out_data = Signal(8 * bw * row_beats)
        out_acc = Signal()
        # A register slice between the assembled row and the memories' write ports keeps their
        # arbitration (ready) off the read-data path; a row counts as written when it leaves it.
        m.submodules.row_slice = row_slice = self._row_slice
        out_ready = row_slice.i.ready
        out_free = ~out_valid | out_ready
        written = row_slice.o.payload
        m.d.comb += [
            row_slice.i.valid.eq(out_valid),
            row_slice.i.payload.row.eq(out_row),
            row_slice.i.payload.data.eq(out_data[: len(written.data)]),
            row_slice.i.payload.acc.eq(out_acc),
            row_slice.o.ready.eq(Mux(written.acc, self.acc_write.ready, self.spad_write.ready)),
            self.spad_write.valid.eq(row_slice.o.valid & ~written.acc),
            self.spad_write.payload.addr.eq(written.row),
            self.spad_write.payload.data.eq(written.data[: 8 * cfg.lanes]),
            self.acc_write.valid.eq(row_slice.o.valid & written.acc),
            self.acc_write.payload.addr.eq(written.row),
            self.acc_write.payload.data.eq(written.data[: 32 * cfg.cols]),
        ]
        with m.If(out_valid & out_ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += written_fire.eq(row_slice.o.valid & row_slice.o.ready)
        rows_pending = out_valid | row_slice.o.valid

        is_table = Signal()
        is_table_next = Signal()  # (EXEC's choice; `is_table` otherwise)
        m.d.comb += is_table_next.eq(is_table)
        m.d.sync += is_table.eq(is_table_next)
        # `rd.data.ready` is the read engine's output skid's `main` enable (~70 flip-flops) and
        # reads `is_table` first: a copy of it for that select alone sits next to the handshake
        # (`is_table` itself drives both consumers' logic across the unit).
        is_table_rd = kept_flip_flop(m, is_table_next, platform, "is_table_rd")
        asm_ready = Signal()  # the assembler takes the beat (while `~is_table`)
        par_ready = Signal()  # the LOADT parser takes the beat (while `is_table`)
        m.d.comb += rd.data.ready.eq(Mux(is_table_rd, par_ready, asm_ready))
        data_fire = rd.data.valid & rd.data.ready
        # A row with no data has `hot` 0 (so `placed` is 0) and `row_now` 0 (cleared at every
        # row's end and in EXEC): every row loads `out_data` with `row_now | placed`, and the
        # head's `has` drives only the load enable, not the data inputs of ~256 flip-flops.
        # The output row's registers load whenever they are free (`out_free`, two flip-flops),
        # not only when a row ends: a row ends only while they are free, and `out_valid` says
        # when they hold one, so the row end's decision (`is_table`, the head, the beat
        # handshake) drives `out_valid` and not ~300 enables.
        with m.If(out_free):
            m.d.sync += [
                out_row.eq(desc_out.row),
                out_data.eq(row_now | placed),
                out_acc.eq(is_acc),
            ]
        # a beat of the head row is taken unless it ends the row and the output row is full
        # (one expression for the branches below and for `rd.data.ready`, `asm_ready`)
        takes = ~at_last | out_free
        with m.If(~is_table & desc_valid):
            with m.If(~desc_out.has):
                with m.If(out_free):
                    m.d.comb += desc_pop.eq(1)
                    m.d.sync += out_valid.eq(1)
            with m.Else():
                row_end = at_last
                # (`rd.data.valid & takes`, not `data_fire`: the table parser's share of
                # `rd.data.ready` stays off the row registers' enables.)
                with m.If(rd.data.valid & takes):
                    m.d.comb += beat_taken.eq(1)
                    with m.If(beat.error):
                        fail(_Code.DRAM_RANGE)
                    with m.If(row_end):
                        m.d.comb += desc_pop.eq(1)
                        m.d.sync += out_valid.eq(1)
                        m.d.comb += row_has_clr.eq(1)
                        m.d.comb += slot_d.eq(0)
                        m.d.comb += hot_d.eq(desc_out.hot)
                    with m.Else():
                        m.d.sync += at_last.eq(slot == desc_out.nbeats - 2)
                        m.d.comb += slot_d.eq(slot + 1)
                        m.d.comb += hot_d.eq(hot << 1)

        m.d.comb += asm_ready.eq(desc_valid & desc_out.has & takes)

        # ---------------------------------------------------------------- table parser
        pos = Signal(max(1, lb))
        phase = Signal(2)  # PWL: 0 header, 1 breakpoints, 2 slopes, 3 intercepts
        idx = Signal(range(max(seg, 2 * 65536) + 1))
        tab = Signal(17)  # table (PWL) index within the instruction
        pwl_shift = Signal(8)
        prev_bp = Signal(signed(32))
        bias_lo = Signal(signed(32))
        discard = Signal()
        shift_emit = Signal()
        is_pwl = Signal()
        word = Signal(32)
        half = Signal(16)
        m.d.comb += [
            word.eq(beat.data.word_select(pos >> 2, 32) if lb > 2 else beat.data[:32]),
            half.eq(beat.data.word_select(pos >> 1, 16)),
        ]
        # Every 32-bit word of the beat compared with the previous breakpoint, then the result
        # of the word under `pos` selected: the carry chains start at the beat's flip-flops,
        # not behind the word multiplexer.
        bp_below = Signal(max(1, bw // 4))
        m.d.comb += bp_below.eq(Cat(*[
            beat.data.word_select(k, 32).as_signed() < prev_bp for k in range(max(1, bw // 4))
        ]))
        zsize = Mux(is_pwl & (phase == 2), 2, 4)
        # fields left in this PWL table or BIAS record (this one included), and the registered
        # "this is the last one" (no wide compare on `rd.data.ready`)
        pwl_fields = 3 * seg + 3  # 4 header words, S-1 breakpoints, S slopes, S intercepts
        # `t_left` counts a take a cycle late (`t_took`): the take drives one flip-flop and
        # `elem_last`'s enable, not the counter's carry chain and 18 enables.
        t_left = Signal(18)
        t_took = Signal()  # a field was taken in the previous cycle, not yet in `t_left`
        t_now = Signal(18)  # the fields left now
        m.d.comb += t_now.eq(t_left - t_took)
        m.d.sync += [t_left.eq(t_now), t_took.eq(0)]  # (the loads below come later and win)
        elem_last = Signal()
        pops = elem_last | ((pos + zsize) == bw)

        # The parser's writes leave through a register slice (its ready is a flip-flop, so no
        # write ready stands in front of `rd.data.ready`). The field's check (e.g. a compare of
        # the data against the previous breakpoint) ends in flip-flops, `bad_r`, which flags
        # the field in the slice a cycle after its push (`_LateFlagSkid`): a bad field is
        # dropped at the slice's output; the error is raised (and the rest of the data
        # discarded) from `bad_r`, so no write of the instruction follows a bad field.
        m.submodules.table_slice = t_slice = _LateFlagSkid(data.StructLayout({
            "pwl": 1,
            "tw": table_write_layout(cfg),
            "bw": bias_write_layout(cfg),
        }))
        t_out = t_slice.o.payload
        t_bad = t_slice.flag
        m.d.comb += [
            self.table_write.payload.eq(t_out.tw),
            self.bias_write.payload.eq(t_out.bw),
            self.table_write.valid.eq(t_slice.o.valid & t_out.pwl & ~t_bad),
            self.bias_write.valid.eq(t_slice.o.valid & ~t_out.pwl & ~t_bad),
            t_slice.o.ready.eq(
                t_bad | Mux(t_out.pwl, self.table_write.ready, self.bias_write.ready)
            ),
        ]
        t_ready = t_slice.i.ready
        tw = t_slice.i.payload.tw
        bwp = t_slice.i.payload.bw
        # The field under the parser fails its check, registered: the error, discard mode and
        # the slice's flag. Two flip-flops: a breakpoint's compare with the previous one
        # (`bp_bad_r`) and the header and BIAS checks (`other_bad_r`).
        bp_bad_r = Signal()
        other_bad_r = Signal()
        bad_r = bp_bad_r | other_bad_r
        dropping = discard | bad_r
        m.d.comb += [t_slice.i.payload.pwl.eq(is_pwl), t_slice.mark.eq(bad_r)]
        # The field under the parser is written (PWL: not a header word; BIAS: an entry's second
        # word), and it can move on (its write, if any, has room): one expression each, for the
        # branches below and for `rd.data.ready` (`par_ready`).
        emits = Mux(is_pwl, phase != 0, idx[0])
        can = ~emits | t_ready
        m.d.comb += [
            tw.fn.eq(loadt.dst + tab),
            bwp.entry.eq(loadt.dst + (idx >> 1)),
            bwp.bias.eq(bias_lo),
            bwp.mult.eq(word[:16]),
            bwp.shift.eq(word[16:22]),
        ]
        with m.If(shift_emit):
            m.d.comb += [
                tw.field.eq(TableField.SHIFT),
                tw.index.eq(0),
                tw.value.eq(pwl_shift),
                t_slice.i.valid.eq(1),
            ]
        with m.Elif(phase == 1):
            m.d.comb += [tw.field.eq(TableField.BREAKPOINT), tw.index.eq(idx), tw.value.eq(word)]
        with m.Elif(phase == 2):
            m.d.comb += [
                tw.field.eq(TableField.SLOPE),
                tw.index.eq(idx),
                tw.value.eq(half.as_signed()),
            ]
        with m.Else():
            m.d.comb += [tw.field.eq(TableField.INTERCEPT), tw.index.eq(idx), tw.value.eq(word)]

        with m.If(shift_emit):
            with m.If(t_ready):
                m.d.sync += [
                    shift_emit.eq(0),
                    tab.eq(tab + 1),
                    phase.eq(0),
                    idx.eq(0),
                    t_left.eq(pwl_fields),
                    t_took.eq(0),
                    elem_last.eq(0),
                ]
        with m.Elif(is_table & rd.data.valid):
            with m.If(dropping | beat.error):
                with m.If(beat.error):
                    fail(_Code.DRAM_RANGE)
                m.d.sync += [discard.eq(1), pos.eq(0)]
            with m.Else():
                m.d.comb += t_slice.i.valid.eq(emits)
                # The field moves on whether or not it is bad (a bad one is not written, and
                # discard mode drops the rest from the next cycle), so the field checks stay off
                # `rd.data.ready`.
                with m.If(can):
                    m.d.sync += [
                        pos.eq(Mux(pops, 0, pos + zsize)),
                        t_took.eq(1),
                        elem_last.eq(t_now == 2),
                    ]
                    with m.If(is_pwl):
                        with m.If((phase == 0) & (idx == 0)):
                            m.d.sync += pwl_shift.eq(word[:8])
                        with m.If(phase == 1):
                            m.d.sync += prev_bp.eq(word.as_signed())
                        last_of_phase = Mux(
                            phase == 0, idx == 3, Mux(phase == 1, idx == seg - 2, idx == seg - 1)
                        )
                        with m.If(last_of_phase):
                            m.d.sync += [phase.eq(phase + 1), idx.eq(0)]
                            with m.If(phase == 3):
                                m.d.sync += shift_emit.eq(1)
                        with m.Else():
                            m.d.sync += idx.eq(idx + 1)
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
                        with m.If(~idx[0]):
                            m.d.sync += bias_lo.eq(word.as_signed())
        # A burst's last beat is counted into `t_lasts` a cycle late (`t_last_took`): the
        # parser's take drives one flip-flop, not the counter's carry chain and 17 enables.
        # `t_lasts` lags by at most that one beat, so `t_lasts == t_issued` never holds early;
        # it holds as soon as before when the last field's write or the PWL shift is still on
        # its way in the cycle after the take (`table_writing` / `shift_emit`).
        t_last_took = Signal()
        m.d.sync += [
            t_last_took.eq(is_table & data_fire & beat.last),
            t_lasts.eq(t_lasts + t_last_took),  # (EXEC's clear below comes later and wins)
        ]
        # The field checks of the branches above as flat expressions: the conditions (all
        # flip-flops) are formed beside the compares, so a breakpoint's compare with the
        # previous one (`bp_below`, a carry chain from the beat) passes one LUT, with its
        # word's condition, into `bp_bad_r`.
        field_live = ~shift_emit & is_table & rd.data.valid & ~dropping & ~beat.error
        chk_bp = Signal.like(bp_below)  # per word: it is the field, a breakpoint after the first
        m.d.comb += chk_bp.eq(Cat(*[
            field_live & is_pwl & (phase == 1) & (idx != 0) & ((pos >> 2) == k if lb > 2 else 1)
            for k in range(len(bp_below))
        ]))
        hdr_bad = Mux(idx == 0, (word[:8] > MAX_SHIFT) | (word[8:] != 0), word != 0)
        bias_bad = (word[16:24] > MAX_SHIFT) | (word[24:] != 0)
        m.d.sync += [
            bp_bad_r.eq((chk_bp & bp_below).any()),
            other_bad_r.eq(field_live & Mux(is_pwl, (phase == 0) & hdr_bad, idx[0] & bias_bad)),
        ]
        # (after the parser: a bad field's BAD_TABLE wins over a DRAM error of the next beat)
        with m.If(bad_r):
            fail(_Code.BAD_TABLE)
            m.d.sync += discard.eq(1)
        # The parser's take as one flat expression of flip-flops (the branches above, whose
        # conditions would otherwise nest into it): a dropped or failed beat goes at once, a
        # field when it can move on and it is the beat's last.
        m.d.comb += par_ready.eq(
            rd.data.valid & ~shift_emit & (dropping | beat.error | (can & pops))
        )
        table_writing = t_slice.o.valid | bad_r  # a write or a check result still on its way

        # ---------------------------------------------------------------- control
        t_count_bias = loadt.count
        k_beats = (length << esize_log) >> lb  # beats of a whole row (mergeable LOADs)
        # EXEC's loads (EXEC lasts one cycle) under one-hot flip-flops set on the way into it:
        # the per-instruction registers' enables are a flip-flop each, not the state decode
        # and the opcode compare. (Here, where the state machine's own statements were: the
        # same priority over the statements before and after.)
        op = hdr.opcode
        in_exec = Signal()
        exec_dmacfg = Signal()
        exec_load = Signal()
        exec_loadt = Signal()
        m.d.sync += [in_exec.eq(0), exec_dmacfg.eq(0), exec_load.eq(0), exec_loadt.eq(0)]

        def to_exec():
            return [
                in_exec.eq(1),
                exec_dmacfg.eq(op == Opcode.DMACFG),
                exec_load.eq(op == Opcode.LOAD),
                exec_loadt.eq(op == Opcode.LOADT),
            ]

        with m.If(in_exec):
            m.d.comb += [slot_d.eq(0), row_has_clr.eq(1)]
            m.d.comb += hot_d.eq(desc_out.hot)
            m.d.sync += [
                err_pending.eq(0),
                t_issued.eq(0),
                t_lasts.eq(0),
                t_last_took.eq(0),
                discard.eq(0),
                shift_emit.eq(0),
                pos.eq(0),
                phase.eq(0),
                idx.eq(0),
                tab.eq(0),
                at_last.eq(desc_out.single),
            ]
        with m.If(exec_dmacfg):
            m.d.sync += slot_we.eq(1 << dmacfg.slot)
        acc = load.mem == MemSpace.ACC
        with m.If(exec_load):
            m.d.comb += is_table_next.eq(0)
            m.d.sync += [
                is_acc.eq(acc),
                esize_log.eq(Mux(acc, 2, 0)),
                round_up.eq(Mux(acc, 3, 0)),
                base_addr.eq(ins.base + load.offset),
                count.eq(mul_count.p.as_unsigned()[:24]),
                bad_len.eq(load.length > Mux(acc, cfg.cols, cfg.lanes)),
                rows_left.eq(Mux(acc, cfg.accumulator_rows, cfg.scratchpad_rows) - load.dst),
                yp0_lo.eq(load.y0 * geom.pitch[:16]),
                yp0_hi.eq(load.y0 * geom.pitch[16:]),
                syp_lo.eq(geom.sy * geom.pitch[:16]),
                syp_hi.eq(geom.sy * geom.pitch[16:]),
                xp0.eq(load.x0 * geom.pix),
                wpix.eq(geom.width * geom.pix),
                inner_m1.eq(load.inner - 1),
                inner_one.eq(load.inner == 1),
            ]
        # LOADT's `dst + count`, in every cycle from `ins` (which loads only in IDLE, so it is
        # the instruction's from EXEC on): EXEC's range check is then one compare, not an
        # addition and a compare.
        t_dst_end = Signal((loadt.dst + loadt.count).shape())
        m.d.sync += t_dst_end.eq(loadt.dst + loadt.count)
        with m.If(exec_loadt):
            pwl = loadt.kind == TableKind.PWL
            m.d.comb += is_table_next.eq(1)
            m.d.sync += [
                is_pwl.eq(pwl),
                t_left.eq(Mux(pwl, pwl_fields, loadt.count << 1)),
                t_took.eq(0),
                t_bad_range.eq(t_dst_end > Mux(pwl, cfg.pwl_functions, cfg.bias_entries)),
                elem_last.eq(0),
                base_addr.eq(ins.base + loadt.offset),
                t_addr.eq(ins.base + loadt.offset),
                t_count.eq(Mux(pwl, loadt.count, 1)),
                t_bytes.eq(Mux(pwl, table_bytes, t_count_bias * BIAS_ENTRY_BYTES)),
                t_total.eq(Mux(pwl, loadt.count * table_bytes, loadt.count * BIAS_ENTRY_BYTES)),
            ]
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                # every word is taken; a flushed one leaves POP at once
                m.d.comb += [self.cmd.ready.eq(1), idle.eq(1)]
                with m.If(self.cmd.valid):
                    m.d.sync += ins.eq(self.cmd.payload)
                    m.next = "POP"
            with m.State("POP"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(load.geom):
                    for k in range(4):
                        with m.Case(k):
                            m.d.sync += geom.eq(slots[k])
                with m.If(flushed):
                    m.next = "IDLE"
                with m.Elif(hdr.pop_next):
                    m.d.comb += [
                        self.pop_c2l.ready.eq(1),
                        self.stall_token.eq(~self.pop_c2l.valid),
                    ]
                    with m.If(self.pop_c2l.valid):
                        m.d.sync += to_exec()
                        m.next = "EXEC"
                with m.Else():
                    m.d.sync += to_exec()
                    m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += self.busy.eq(1)
                with m.If(exec_load):
                    m.next = "LOAD_PREP"
                with m.Elif(exec_loadt):
                    m.next = "LOADT_CHECK"
                with m.Else():  # DMACFG, SYNC
                    m.next = "PUSH"
            with m.State("LOAD_PREP"):
                # the halves of the pitch products summed; one addition each
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    yp0.eq((yp0_hi << 16) + yp0_lo),
                    syp.eq((syp_hi << 16) + syp_lo),
                    bad_dst.eq(count > rows_left),
                    wpix_r.eq(wpix + round_up),
                    neg_xp0.eq(round_up - xp0),
                    base_x.eq(base_addr + xp0),
                    merge_ok.eq(((length << esize_log) & (bw - 1)) == 0),
                ]
                with m.Switch(k_beats):
                    for k in range(1, row_beats + 1):
                        with m.Case(k):
                            m.d.sync += run_rows.eq(
                                min(self._merge_rows, (MERGE_BYTES // bw) // k))
                    with m.Default():
                        m.d.sync += run_rows.eq(self._merge_rows)
                m.next = "LOAD_CHECK"
            with m.State("LOAD_CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(bad_len):
                    fail(_Code.FIELD_RANGE)
                    m.next = "DRAIN"
                with m.Elif(bad_dst):
                    fail(Mux(is_acc, _Code.ACC_RANGE, _Code.SPAD_RANGE))
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += [
                        ya.eq(base_x + yp0),
                        rem0.eq(wpix_r - xp0),
                    ]
                    m.next = "LOAD_START"
            with m.State("LOAD_START"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    walking.eq(1),
                    i_left.eq(load.outer - 1),
                    i_last.eq(load.outer == 1),
                    j_left.eq(inner_m1),
                    j_last.eq(inner_one),
                    y.eq(load.y0),
                    x.eq(load.x0),
                    xa.eq(ya),
                    neg_xp.eq(neg_xp0),
                    rem.eq(rem0),
                    row.eq(load.dst),
                ]
                m.next = "RUN"
            with m.State("LOADT_CHECK"):
                # Two cycles: the record range's end is registered before it is compared.
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    t_end.eq(base_addr + t_total),
                    t_next.eq(t_addr + t_bytes),
                    t_final.eq(t_count == 1),
                ]
                with m.If(t_bad_range):
                    fail(_Code.TABLE_RANGE)
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "LOADT_DRAM"
            with m.State("LOADT_DRAM"):
                m.d.comb += self.busy.eq(1)
                with m.If((t_end > self.dram_limit) | (t_end > addr_limit)):
                    fail(_Code.DRAM_RANGE)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += t_issuing.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                load_done = ~walking & (occ == 0) & ~pend_valid & (flight == 0)
                table_done = (
                    ~t_issuing & (t_lasts == t_issued) & ~shift_emit & ~table_writing
                )
                with m.If(Mux(is_table, table_done, load_done) & ~rd.busy & ~rows_pending):
                    with m.If(err_pending | flushed):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "PUSH"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                drained = (
                    ~walking
                    & (occ == 0)
                    & ~pend_valid
                    & ~t_issuing
                    & (flight == 0)
                    & (t_lasts == t_issued)
                    & ~rd.busy
                    & ~rows_pending
                    & ~table_writing
                    & ~d_w_valid
                    & ~desc.r_rdy
                    & ~desc_spare_valid
                    & ~desc_valid
                )
                with m.If(drained):
                    with m.If(err_pending):
                        m.d.sync += error.eq(1)
                        m.next = "ERROR"
                    with m.Else():
                        m.next = "IDLE"
            with m.State("PUSH"):
                m.d.comb += self.busy.eq(1)
                with m.If(flushed):
                    m.next = "IDLE"
                with m.Elif(hdr.push_next):
                    m.d.comb += self.push_l2c.valid.eq(1)
                    with m.If(self.push_l2c.ready):
                        m.d.comb += self.retired.eq(1)
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.retired.eq(1)
                    m.next = "IDLE"
            with m.State("ERROR"):
                # Every later instruction of the queue is above the failing one, so above the
                # flush offset once the error reaches it: discarded without a compare.
                m.d.comb += self.cmd.ready.eq(1)

        m.d.comb += self.stall_axi_read.eq(rd.busy & ~(self.axi.rvalid & self.axi.rready))
        # (last: a head loading wins over the assembler's and the control's updates above)
        with m.If(head_load):
            m.d.sync += at_last.eq(head_in.single)
            m.d.comb += hot_d.eq(head_in.hot)
        return m
