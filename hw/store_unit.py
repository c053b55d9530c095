"""The store unit: STORE of docs/isa.md (scratchpad or accumulator rows to DRAM), and SYNC with
target STORE, writing through an :class:`~hw.dma.AxiWriteEngine`.

One instruction at a time: pop its token, run the closed-form checks in the golden model's order
(FIELD_RANGE ``length`` > row, SPAD/ACC_RANGE source rows, DRAM_RANGE on the last byte
``A + (rows-1)*stride + tiles*length*e - 1``, FIELD_RANGE overlap ``rows > 1 and stride <
tiles*length*e``) before the first write, then for ``i < rows``, ``u < tiles`` read source row
``src + u*rows + i`` and write its first ``length*e`` bytes to ``A + i*stride + u*length*e`` (one
write request per row: a burst, or two where it crosses 4 KiB, with WSTRB for partial beats). The
instruction completes, and pushes its token, when every B response arrived; an error response is
DRAM_RANGE at the instruction.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import axi4_write_signature
from hw.config import AcceleratorConfig
from hw.dma import AxiWriteEngine
from hw.dsp import PipelinedMultiplier
from hw.isa import MemSpace, Opcode
from hw.unit_ports import (
    AXI_ID_BITS,
    ERROR_SIGNATURE,
    FLUSH_SIGNATURE,
    TOKEN_SIGNATURE,
    unit_command_layout,
)

__all__ = [
    "StoreUnit",
    "acc_read_layout",
    "acc_row_layout",
    "spad_read_layout",
    "spad_row_layout",
]


def spad_read_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Scratchpad read request: ``{addr}`` (a row)."""
    return data.StructLayout({"addr": unsigned((config.scratchpad_rows - 1).bit_length())})


def spad_row_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Scratchpad read response: ``{data: lanes x int8}``."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), config.lanes)})


def acc_read_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Accumulator read request: ``{addr}`` (a row)."""
    return data.StructLayout({"addr": unsigned((config.accumulator_rows - 1).bit_length())})


def acc_row_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Accumulator read response: ``{data: C x int32}``."""
    return data.StructLayout({"data": data.ArrayLayout(signed(32), config.cols)})


#: Longest run of whole-beat rows written with one request.
MERGE_BYTES = 4096


class _Code(enum.IntEnum):
    SPAD_RANGE = 2
    ACC_RANGE = 3
    DRAM_RANGE = 5
    FIELD_RANGE = 6


class StoreUnit(wiring.Component):
    """Executes STORE and SYNC (target STORE) from the store queue.

    Parameters
    ----------
    config : AcceleratorConfig
    read_ahead : int
        Source rows requested but not yet turned into AXI beats at most (the response buffer's
        depth: responses are always accepted, ``*_resp.ready`` stays high).
    max_outstanding : int
        AXI write bursts awaiting their B response at most.
    awid : int
        ``awid`` of every burst (0 .. 2**AXI_ID_BITS - 1).

    Ports
    -----
    cmd : In(stream(unit_command_layout(config)))
    axi : Out(axi4_write_signature(addr_bits, dma_data_bits, AXI_ID_BITS))
        AW, W and B channels (``awid`` constant).
    spad_read : Out(stream(spad_read_layout(config)))
    spad_resp : In(stream(spad_row_layout(config)))
    acc_read : Out(stream(acc_read_layout(config)))
    acc_resp : In(stream(acc_row_layout(config)))
        Row reads, answered in order, one response per request. ``*_resp.ready`` is held high
        (a response may come any number of cycles after its request, never before).
    pop_c2s : In(TOKEN_SIGNATURE)
        Token from the compute unit (``pop_prev``).
    push_s2c : Out(TOKEN_SIGNATURE)
        Token to the compute unit (``push_prev``), once every B response of the STORE arrived.
    error, flush_above, dram_limit
        As :class:`hw.load_unit.LoadUnit` (``dram_limit``: bytes ``0 .. dram_limit-1`` may be
        written).
    busy, stall_token, stall_axi_write, retired : Out(1)
        Instruction in progress; waiting for a ``c2s`` token; writes are outstanding and no W
        beat or B response moved this cycle; strobe per completed instruction.
    """

    def __init__(
        self,
        config: AcceleratorConfig,
        *,
        read_ahead: int = 16,
        max_outstanding: int = 32,
        awid: int = 0,
    ) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        for name, value, hi in (
            ("read_ahead", read_ahead, 64),
            ("max_outstanding", max_outstanding, 256),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= hi:
                raise ValueError(f"{name} must be an integer in 2..{hi}, got {value!r}")
        self._config = config
        self._read_ahead = read_ahead
        self._writer = AxiWriteEngine(
            addr_bits=config.addr_bits,
            data_bits=config.dma_data_bits,
            id_bits=AXI_ID_BITS,
            len_bits=MERGE_BYTES.bit_length(),
            max_outstanding=max_outstanding,
            awid=awid,
        )
        super().__init__(
            {
                "cmd": In(stream.Signature(unit_command_layout(config))),
                "axi": Out(
                    axi4_write_signature(config.addr_bits, config.dma_data_bits, AXI_ID_BITS)
                ),
                "spad_read": Out(stream.Signature(spad_read_layout(config))),
                "spad_resp": In(stream.Signature(spad_row_layout(config))),
                "acc_read": Out(stream.Signature(acc_read_layout(config))),
                "acc_resp": In(stream.Signature(acc_row_layout(config))),
                "pop_c2s": In(TOKEN_SIGNATURE),
                "push_s2c": Out(TOKEN_SIGNATURE),
                "error": Out(ERROR_SIGNATURE),
                "flush_above": In(FLUSH_SIGNATURE),
                "dram_limit": In(64),
                "busy": Out(1),
                "stall_token": Out(1),
                "stall_axi_write": Out(1),
                "retired": Out(1),
            }
        )

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self._config

    @property
    def read_ahead(self) -> int:
        """Source rows in flight at most."""
        return self._read_ahead

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.writer = wr = self._writer
        wiring.connect(m, wr.axi, wiring.flipped(self.axi))
        wreq = wr.req  # (the engine's request register slice: `ready` is a flip-flop)
        bw = cfg.dma_data_bits // 8
        lb = bw.bit_length() - 1
        row_bits = max(8 * cfg.lanes, 32 * cfg.cols)
        row_beats = -(-row_bits // (8 * bw))
        addr_limit = 1 << cfg.addr_bits

        ins = Signal(unit_command_layout(cfg))
        hdr = ins.word.header
        st = ins.word.body.store
        idle = Signal()  # the control FSM is in IDLE (takes the word on `cmd.valid`)
        # `flushed` is registered (see hw/load_unit.py): a flush reaches the unit a cycle later
        flushed = Signal()
        incoming_flushed = self.flush_above.valid & (self.cmd.payload.pc > self.flush_above.pc)
        # (both compares in parallel, the word taken selects: no compare behind the FSM)
        flushed_d = Mux(
            idle & self.cmd.valid,
            incoming_flushed,
            self.flush_above.valid & (ins.pc > self.flush_above.pc),
        )
        m.d.sync += flushed.eq(flushed_d)

        error = Signal()
        err_code = Signal(4)
        err_pc = Signal(32)
        b_error = Signal()
        m.d.comb += [
            self.error.valid.eq(error),
            self.error.code.eq(err_code),
            self.error.pc.eq(err_pc),
        ]

        is_acc = Signal()
        row_elems = Signal(8)
        mem_rows = Signal(range(max(cfg.scratchpad_rows, cfg.accumulator_rows) + 1))
        row_bytes = Signal(10)
        base_addr = Signal(cfg.addr_bits + 33)
        count = Signal(24)
        span = Signal(45)  # (rows - 1) * stride (12 x 32 bits: no truncation)
        # its partial products, the 32-bit stride in 16-bit halves, each in a multiplier with
        # registered operands and product (hw.dsp: on ECP5 the MULT18X18D's own registers). The
        # operands come from the instruction register, loaded in IDLE; IDLE -> POP -> EXEC ->
        # SPAN passes at least the multiplier's two clock edges, so SPAN reads the products.
        rows_m1 = Signal(13)
        m.d.comb += rows_m1.eq(st.rows - 1)
        span_mul = []
        for k in range(2):
            mul = PipelinedMultiplier(len(rows_m1) + 1, 17)
            m.submodules[f"span_mul{k}"] = mul
            m.d.comb += [mul.a.eq(rows_m1), mul.b.eq(st.stride[16 * k:16 * (k + 1)])]
            span_mul.append(mul.p[:28])
        span_lo, span_hi = span_mul
        end0 = Signal(cfg.addr_bits + 40)  # base_addr + tile_bytes
        tile_bytes = Signal(22)  # tiles * row_bytes
        end_r = Signal(cfg.addr_bits + 40)  # base_addr + span + tile_bytes
        bad_length = Signal()
        bad_src = Signal()
        bad_stride = Signal()
        bad_end = Signal()
        dense = Signal()  # stride == tiles*row_bytes: row i+1 follows row i in DRAM
        run_rows = Signal(range(MERGE_BYTES + 1))  # rows a merged write request may hold

        # ---------------------------------------------------------------- row issue
        i_left = Signal(12)  # rows after this one
        u_left = Signal(12)  # tiles after this one
        # `u_left == 0` and `i_left == 0` as flags that count down with them (no compare in
        # front of the row address multiplexers)
        u_last = Signal()
        i_last = Signal()
        one_tile = Signal()  # st.tiles == 1, registered in CHECK
        src_i = Signal(24)  # src + i
        src_row = Signal(24)  # src + u*rows + i
        row_base = Signal(cfg.addr_bits + 40)  # A + i*stride
        dst_addr = Signal(cfg.addr_bits + 40)  # A + i*stride + u*row_bytes
        issuing = Signal()
        m.submodules.rows = rows_fifo = SyncFIFOBuffered(width=row_bits, depth=self._read_ahead)

        read_ready = Mux(is_acc, self.acc_read.ready, self.spad_read.ready)
        start_issue = Signal()  # DECIDE passes: the first row may go from the next cycle
        issue = Signal()  # a row's SRAM read (and its part of a write request) goes out
        # rows read and not yet turned into beats (in the SRAM pipeline or the row buffer), and
        # the registered flag `held < read_ahead`
        held = Signal(range(self._read_ahead + 1))
        space = Signal(init=1)
        m.d.sync += held.eq(held + issue - rows_fifo.r_en)
        with m.If(issue & ~rows_fifo.r_en):
            m.d.sync += space.eq(held < self._read_ahead - 1)
        with m.Elif(rows_fifo.r_en & ~issue):
            m.d.sync += space.eq(1)
        m.d.comb += [
            self.spad_read.payload.addr.eq(src_row),
            self.acc_read.payload.addr.eq(src_row),
        ]
        # Rows of whole beats that follow each other in DRAM share one write request (a run of
        # up to MERGE_BYTES, bounded in practice by ``read_ahead`` rows of buffered data): one
        # long burst instead of one per row. Other rows move their read and write requests
        # together.
        whole = Signal()  # this STORE's rows are whole beats
        pend_valid = Signal()
        pend_addr = Signal(cfg.addr_bits + 40)
        pend_nbytes = Signal(range(MERGE_BYTES + 1))
        pend_space = Signal(range(MERGE_BYTES + 1))  # rows the run may still take
        # registered at every issue: the next row follows the last one in DRAM (always within
        # a row's tiles; across rows when `dense`) and the pending run has room for it
        can_join = Signal()
        # "A row may issue, given the readies": `issuing & ~flushed & space & (~pend_valid |
        # can_join)` (the last term for whole rows only), one flip-flop computed from the
        # next values of those registers (below), so that only the readies stand between
        # it and the enables of the row addresses and the run registers.
        may = Signal()
        with m.If(whole):
            m.d.comb += [
                self.spad_read.valid.eq(may & ~is_acc),
                self.acc_read.valid.eq(may & is_acc),
                issue.eq(may & read_ready),
                wreq.valid.eq(pend_valid & ~(issue & can_join)),
                wreq.payload.addr.eq(pend_addr),
                wreq.payload.nbytes.eq(pend_nbytes),
            ]
            with m.If(wreq.valid & wreq.ready):
                m.d.sync += pend_valid.eq(0)
            with m.If(issue):
                contig = ~u_last | dense
                with m.If(pend_valid):
                    m.d.sync += [
                        pend_nbytes.eq(pend_nbytes + row_bytes),
                        pend_space.eq(pend_space - 1),
                        can_join.eq(contig & (pend_space != 1)),
                    ]
                with m.Else():
                    m.d.sync += [
                        pend_valid.eq(1),
                        pend_addr.eq(dst_addr),
                        pend_nbytes.eq(row_bytes),
                        pend_space.eq(run_rows - 1),
                        can_join.eq(contig & (run_rows != 1)),
                    ]
        with m.Else():
            m.d.comb += [
                wreq.payload.addr.eq(dst_addr),
                wreq.payload.nbytes.eq(row_bytes),
                # Both requests move together: each waits for the other's ready.
                self.spad_read.valid.eq(may & ~is_acc & wreq.ready),
                self.acc_read.valid.eq(may & is_acc & wreq.ready),
                wreq.valid.eq(may & read_ready),
                issue.eq(may & read_ready & wreq.ready),
            ]
        last_issue = u_last & i_last
        with m.If(issue):
            with m.If(u_last):
                m.d.sync += [
                    u_left.eq(st.tiles - 1),
                    u_last.eq(one_tile),
                    i_left.eq(i_left - 1),
                    i_last.eq(i_left == 1),
                    src_i.eq(src_i + 1),
                    src_row.eq(src_i + 1),
                    row_base.eq(row_base + st.stride),
                    dst_addr.eq(row_base + st.stride),
                ]
            with m.Else():
                m.d.sync += [
                    u_left.eq(u_left - 1),
                    u_last.eq(u_left == 1),
                    src_row.eq(src_row + st.rows),
                    dst_addr.eq(dst_addr + row_bytes),
                ]
            with m.If(last_issue):
                m.d.sync += issuing.eq(0)
        with m.If(flushed & issuing):
            m.d.sync += issuing.eq(0)
        with m.If(start_issue):
            m.d.sync += issuing.eq(1)
        # The next values of the registers `may` is made of (as assigned above and below).
        issuing_d = start_issue | (issuing & ~(issue & last_issue) & ~flushed)
        space_d = Mux(issue & ~rows_fifo.r_en, held < self._read_ahead - 1,
                      Mux(rows_fifo.r_en & ~issue, 1, space))
        # (an issue that joins the pending run holds its request back, so no request leaves
        # in that cycle; an issue without a pending run starts one)
        pend_valid_d = whole & (issue | (pend_valid & ~(wreq.valid & wreq.ready)))
        contig_d = ~u_last | dense
        can_join_d = Mux(issue, contig_d & Mux(pend_valid, pend_space != 1, run_rows != 1),
                         can_join)
        m.d.sync += may.eq(issuing_d & ~flushed_d & space_d
                           & (~whole | ~pend_valid_d | can_join_d))

        # ---------------------------------------------------------------- responses -> beats
        resp_valid = Mux(is_acc, self.acc_resp.valid, self.spad_resp.valid)
        resp_data = Mux(
            is_acc, self.acc_resp.payload.data.as_value(), self.spad_resp.payload.data.as_value()
        )
        m.d.comb += [
            self.spad_resp.ready.eq(1),
            self.acc_resp.ready.eq(1),
            rows_fifo.w_en.eq(resp_valid),
            rows_fifo.w_data.eq(resp_data),
        ]

        beat = Signal(range(row_beats + 1))
        nbeats = Signal(range(row_beats + 1))
        beat_last = Signal()  # beat == nbeats - 1, registered
        padded = Signal(8 * bw * row_beats)
        m.d.comb += [
            padded.eq(rows_fifo.r_data),
            wr.data.valid.eq(rows_fifo.r_rdy),
            wr.data.payload.data.eq(padded.word_select(beat, 8 * bw)),
        ]
        with m.If(wr.data.valid & wr.data.ready):
            with m.If(beat_last):
                m.d.comb += rows_fifo.r_en.eq(1)
                m.d.sync += [beat.eq(0), beat_last.eq(nbeats == 1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), beat_last.eq(beat + 2 == nbeats)]

        with m.If(wr.error):
            m.d.sync += b_error.eq(1)

        drained = ~issuing & ~pend_valid & (held == 0) & ~rows_fifo.r_rdy & ~wr.busy

        # ---------------------------------------------------------------- control
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                # every word is taken; a flushed one leaves POP at once
                m.d.comb += [self.cmd.ready.eq(1), idle.eq(1)]
                with m.If(self.cmd.valid):
                    m.d.sync += ins.eq(self.cmd.payload)
                    m.next = "POP"
            with m.State("POP"):
                m.d.comb += self.busy.eq(1)
                with m.If(flushed):
                    m.next = "IDLE"
                with m.Elif(hdr.pop_prev):
                    m.d.comb += [
                        self.pop_c2s.ready.eq(1),
                        self.stall_token.eq(~self.pop_c2s.valid),
                    ]
                    with m.If(self.pop_c2s.valid):
                        m.next = "EXEC"
                with m.Else():
                    m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += self.busy.eq(1)
                acc = st.mem == MemSpace.ACC
                rb = Mux(acc, st.length << 2, st.length)
                m.d.sync += [
                    is_acc.eq(acc),
                    row_elems.eq(Mux(acc, cfg.cols, cfg.lanes)),
                    mem_rows.eq(Mux(acc, cfg.accumulator_rows, cfg.scratchpad_rows)),
                    row_bytes.eq(rb),
                    whole.eq((rb & (bw - 1)) == 0),
                    nbeats.eq((rb + bw - 1) >> lb),
                    base_addr.eq(ins.base + st.offset),
                    count.eq(st.rows * st.tiles),
                    tile_bytes.eq(st.tiles * rb),
                    b_error.eq(0),
                ]
                with m.If(hdr.opcode == Opcode.STORE):
                    m.next = "SPAN"
                with m.Else():  # SYNC
                    m.next = "PUSH"
            # The range checks take four states, one wide add or compare deep each: SPAN the
            # stride product, CHECK the end address and the checks without it, CHECK_END the
            # end against the limits, then DECIDE in the order docs/isa.md gives them.
            with m.State("SPAN"):
                # the stride product's halves summed; one addition each
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    span.eq((span_hi << 16) + span_lo),
                    end0.eq(base_addr + tile_bytes),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    end_r.eq(end0 + span),  # one past the last byte
                    bad_length.eq(st.length > row_elems),
                    bad_src.eq(st.src + count > mem_rows),
                    bad_stride.eq((st.rows > 1) & (st.stride < tile_bytes)),
                    dense.eq(st.stride == tile_bytes),
                    one_tile.eq(st.tiles == 1),
                ]
                with m.Switch(nbeats):
                    for k in range(1, row_beats + 1):
                        with m.Case(k):
                            m.d.sync += run_rows.eq((MERGE_BYTES // bw) // k)
                m.next = "CHECK_END"
            with m.State("CHECK_END"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += bad_end.eq((end_r > self.dram_limit) | (end_r > addr_limit))
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += self.busy.eq(1)
                # The walk's start values are loaded whatever the checks decide (a failing
                # STORE never reads them), so the checks drive only the next state.
                m.d.sync += [
                    i_left.eq(st.rows - 1),
                    i_last.eq(st.rows == 1),
                    u_left.eq(st.tiles - 1),
                    u_last.eq(one_tile),
                    src_i.eq(st.src),
                    src_row.eq(st.src),
                    beat_last.eq(nbeats == 1),
                    row_base.eq(base_addr),
                    dst_addr.eq(base_addr),
                    beat.eq(0),
                ]
                with m.If(bad_length):
                    m.d.sync += err_code.eq(_Code.FIELD_RANGE)
                    m.next = "FAIL"
                with m.Elif(bad_src):
                    m.d.sync += err_code.eq(Mux(is_acc, _Code.ACC_RANGE, _Code.SPAD_RANGE))
                    m.next = "FAIL"
                with m.Elif(bad_end):
                    m.d.sync += err_code.eq(_Code.DRAM_RANGE)
                    m.next = "FAIL"
                with m.Elif(bad_stride):
                    m.d.sync += err_code.eq(_Code.FIELD_RANGE)
                    m.next = "FAIL"
                with m.Else():
                    m.d.comb += start_issue.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(drained):
                    with m.If(b_error | wr.error):
                        m.d.sync += err_code.eq(_Code.DRAM_RANGE)
                        m.next = "FAIL"
                    with m.Elif(flushed):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "PUSH"
            with m.State("FAIL"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [error.eq(1), err_pc.eq(ins.pc)]
                m.next = "ERROR"
            with m.State("PUSH"):
                m.d.comb += self.busy.eq(1)
                with m.If(flushed):
                    m.next = "IDLE"
                with m.Elif(hdr.push_prev):
                    m.d.comb += self.push_s2c.valid.eq(1)
                    with m.If(self.push_s2c.ready):
                        m.d.comb += self.retired.eq(1)
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.retired.eq(1)
                    m.next = "IDLE"
            with m.State("ERROR"):
                # every later STORE is above the failing one (see hw/load_unit.py)
                m.d.comb += self.cmd.ready.eq(1)

        m.d.comb += self.stall_axi_write.eq(
            wr.busy & ~(self.axi.wvalid & self.axi.wready) & ~self.axi.bvalid
        )
        return m
