# amaranth: UnusedElaboratable=no
"""The compute unit: executes the compute queue's GEMM, EPI and SYNC instructions.

Instructions arrive in program order as :func:`unit_command_layout` beats. The *issue stage*
checks each one in the golden model's order (``sim/golden.py``: range and field checks, all
closed-form; an EPI whose function is not loaded yet is checked again once its pop tokens are
there, so a LOADT ordered before it by tokens counts), waits for its pop tokens and for the
interlock, pops the tokens and hands it to an
engine; a *retire queue* pushes each instruction's tokens once it and every earlier instruction
have completed (program order), so token pushes never overtake.

**GEMM engine** (around :class:`hw.systolic_array.SystolicArray`). An issued GEMM becomes one
descriptor in four small queues, each walked by its own sequencer, so they run ahead of one
another as far as the array's credits and the queues allow:

* *weights*: scratchpad rows ``w .. w + n*k*blk - 1`` (``blk = R``, or ``C`` transposed) in
  order, straight to the array's ``weights`` stream (lanes ``0..C-1``) or through the
  :class:`hw.transposer.Transposer` (lanes ``0..R-1``). The array double-buffers the weights:
  block ``q + 1``'s preload overlaps block ``q``'s operand stream.
* *operands*: for each block ``(u, t)`` the rows ``a + t*m + i`` (``i < m``), lanes ``0..R-1``,
  ``first`` on ``i = 0``.
* *bias*: in modes BIAS / ACCUMULATE_BIAS the ``C`` entries ``bias + u*C ..`` of every output
  tile ``u``, read ahead into a two-entry queue.
* *results*: result row ``i`` of block ``(u, t)`` goes to accumulator row ``acc + u*m + i``
  through a read-modify-write pipeline on the accumulator's fixed-timing ``gemm`` port: the row
  is read as the result is taken (when it accumulates: ``t > 0``, or mode ACCUMULATE /
  ACCUMULATE_BIAS), the bias is added to the product (``t = 0`` in the bias modes) on the way,
  the old row arrives four cycles later (:data:`hw.accumulator.GEMM_READ_LATENCY`) and the
  sum is written the cycle after. The read returns the row as written up to and including its
  own cycle (transparent read); the four writes after it are forwarded from the pipeline, so
  rows touched on consecutive cycles (``m = 1`` reductions, back-to-back GEMMs) need no stall:
  one row per cycle.

**EPI engine** (one EPI at a time). An EPI waits until every GEMM issued before it has
completed, then reads accumulator rows ``src .. src + n*m - 1`` and the scale entries (per tile
``u`` the ``C`` entries ``scale + u*C ..`` in COL mode; per row the entry ``scale + i`` in ROW
mode), sends each row with its multipliers and shifts to the epilogue (``epilogue_in``), and
writes each result (``epilogue_out``) to scratchpad lanes ``0..C-1``, an accumulator row, or
(dest SCALE) the multiplier of entry ``dst + j`` (value in column ``col``, shift ``out_shift``).
The writes pass a register slice on their way to the memories; the EPI completes (releases the
interlock, lets its tokens retire) only once the slice is empty, so nothing that waits for the
EPI can see a row before its write has landed.

**Interlock.** A GEMM issues while an EPI is waiting or running only when they share nothing:
the GEMM's accumulator rows are disjoint from the EPI's source rows (and its destination rows,
dest ACC), and for dest SPAD the EPI's destination rows are disjoint from the GEMM's weight and
operand rows. Otherwise the GEMM waits for the EPI. So an EPI on one accumulator buffer runs
while the next GEMM fills the other, and program order is kept: the EPI reads only rows the GEMMs
before it have finished, no later GEMM touches what the EPI reads or writes, and EPIs run one
after another. (Dest SCALE writes multipliers and shifts, GEMMs read only biases.)

**Errors.** The first failing check stops the unit: ``error`` holds the code and the word
offset; instructions issued before it complete, later commands are taken and discarded.
``flush_above`` (from the controller) discards instructions with a larger offset without
executing them (a flushed command is taken and dropped at DECIDE, three cycles later).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.accumulator import GEMM_READ_LATENCY
from hw.banked_memory import exclusive_signature, read_signature, write_layout
from hw.config import AcceleratorConfig
from hw.dma import StreamRing, StreamSkid
from hw.dsp import PipelinedMultiplier
from hw.isa import WORD_LAYOUT, EpiDest, Opcode, ScaleMode
from hw.numeric import MAX_SHIFT, SCALE_BITS
from hw.systolic_array import SystolicArray
from hw.target import kept_flip_flop
from hw.transposer import Transposer
from sim.golden import StatusCode

__all__ = [
    "ComputeUnit",
    "epilogue_input_layout",
    "error_signature",
    "flush_signature",
    "scale_entry_layout",
    "scale_write_layout",
    "table_read_signature",
    "token_pop_signature",
    "token_push_signature",
    "unit_command_layout",
]

#: Width of a shift field (0..47).
SHIFT_BITS = 6
#: Depth of the queues of GEMM descriptors between the issue stage and each GEMM sequencer.
DESCRIPTOR_DEPTH = 2
#: Scratchpad requests a sequencer may have outstanding (>= the scratchpad's response depth + 1,
#: + 1 for the request slice).
TAG_DEPTH = 5
#: Bias vectors (GEMM) read ahead of the result pipeline.
BIAS_DEPTH = 2
#: Scale entries (EPI) read ahead; enough to cover the table SRAM's read latency at one per cycle.
SCALE_DEPTH = 4
#: Instructions issued and not yet retired.
RETIRE_DEPTH = 4

_KIND_GEMM, _KIND_EPI, _KIND_SYNC = 0, 1, 2


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def unit_command_layout(config: AcceleratorConfig) -> data.StructLayout:
    """``UnitCommand`` of the RTL contract: decoded word, its word offset, the resolved base."""
    return data.StructLayout({
        "word": WORD_LAYOUT, "pc": unsigned(32), "base": unsigned(config.addr_bits)})


def scale_entry_layout() -> data.StructLayout:
    """One bias/scale SRAM entry: ``{bias int32, mult int16, shift u6}``."""
    return data.StructLayout({
        "bias": signed(32), "mult": signed(SCALE_BITS), "shift": unsigned(SHIFT_BITS)})


def table_read_signature(config: AcceleratorConfig) -> wiring.Signature:
    """A read client of the bias/scale SRAM, from the client's side.

    ``req`` ``{entry}`` -> ``resp`` ``{data: ArrayLayout(scale_entry_layout(), C)}``: the ``C``
    consecutive entries ``entry .. entry + C - 1`` (those at or past ``bias_entries``: don't
    care), in order; the client keeps ``resp.ready`` high whenever it has requests outstanding.
    """
    return wiring.Signature({
        "req": Out(stream.Signature(data.StructLayout({
            "entry": unsigned(_bits(config.bias_entries))}))),
        "resp": In(stream.Signature(data.StructLayout({
            "data": data.ArrayLayout(scale_entry_layout(), config.cols)}))),
    })


def scale_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """EPI dest SCALE write: multiplier and shift of one entry (its bias is left unchanged)."""
    return data.StructLayout({
        "entry": unsigned(_bits(config.bias_entries)),
        "mult": signed(SCALE_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def epilogue_input_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One epilogue row: ``C`` accumulator values with their multipliers and shifts, the PWL
    function and the output width (8, 16 or 32)."""
    C = config.cols
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), C),
        "mult": data.ArrayLayout(signed(SCALE_BITS), C),
        "shift": data.ArrayLayout(unsigned(SHIFT_BITS), C),
        "fn": unsigned(6),
        "out_bits": unsigned(6),
    })


def token_pop_signature() -> wiring.Signature:
    """Popping a token counter: ``available`` (In, counter non-zero), ``take`` (Out, decrement)."""
    return wiring.Signature({"available": In(1), "take": Out(1)})


def token_push_signature() -> wiring.Signature:
    """Pushing a token counter: ``space`` (In, counter not full), ``put`` (Out, increment)."""
    return wiring.Signature({"space": In(1), "put": Out(1)})


def error_signature() -> wiring.Signature:
    """A unit's error report (RTL contract): ``valid``, ``code`` (StatusCode), ``pc``."""
    return wiring.Signature({"valid": Out(1), "code": Out(4), "pc": Out(32)})


def flush_signature() -> wiring.Signature:
    """The controller's discard order: instructions with word offset ``> pc`` are dropped."""
    return wiring.Signature({"valid": Out(1), "pc": Out(32)})


COUNTERS = ("busy", "stall_l2c", "stall_s2c", "stall_c2l", "stall_c2s", "stall_interlock",
            "array_rows", "retired")


class ComputeUnit(wiring.Component):
    """GEMM/EPI sequencer around the systolic array (see module docs for behaviour).

    Parameters
    ----------
    config : AcceleratorConfig
        Array shape, memory sizes, ``pwl_functions``, ``bias_entries``.

    Attributes
    ----------
    cmd : In(stream.Signature(unit_command_layout(config)))
        The compute queue (GEMM, EPI, SYNC; any other opcode is ILLEGAL_INSTRUCTION).
    flush_above : In(flush_signature())
    error : Out(error_signature())
    pop_l2c, pop_s2c : Out(token_pop_signature())
    push_c2l, push_c2s : Out(token_push_signature())
    spad_weights, spad_operands : Out(read_signature(spad_addr_bits, spad row))
        Scratchpad read clients (:class:`hw.scratchpad.Scratchpad` ``weights``, ``operands``).
    spad_write : Out(stream.Signature(write_layout(spad_addr_bits, spad row, lanes)))
        EPI dest SPAD (to the scratchpad's ``epi_write``; mask = lanes ``0..C-1``).
    acc_gemm : Out(exclusive_signature(acc_addr_bits, acc row))
        To the accumulator's ``gemm`` port.
    acc_read : Out(read_signature(acc_addr_bits, acc row))
        EPI source rows (to the accumulator's ``epi_read``).
    acc_write : Out(stream.Signature(write_layout(acc_addr_bits, acc row)))
        EPI dest ACC (to the accumulator's ``epi_write``).
    bias_read, scale_read : Out(table_read_signature(config))
        GEMM bias vectors and EPI scale entries from the bias/scale SRAM.
    scale_write : Out(stream.Signature(scale_write_layout(config)))
        EPI dest SCALE.
    fn_loaded : In(pwl_functions)
        Bit ``f``: PWL function ``f`` has been loaded (FN_UNLOADED check).
    epilogue_in : Out(stream.Signature(epilogue_input_layout(config)))
    epilogue_out : In(stream.Signature(ArrayLayout(signed(32), C)))
        The epilogue pipeline, one row each way, in order.
    busy : Out(1)
        An instruction is being checked, waits, runs or waits to retire.
    counters : Out(StructLayout of 64-bit counters :data:`COUNTERS`)
        Cycles busy, cycles stalled per cause, operand rows entering the array (x R*C = MACs),
        instructions retired. ``clear`` resets them.
    clear : In(1)
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        c = config
        self._spad_bits = _bits(c.scratchpad_rows)
        self._acc_bits = _bits(c.accumulator_rows)
        self._entry_bits = _bits(c.bias_entries)
        spad_row = data.ArrayLayout(signed(c.operand_bits), c.lanes)
        acc_row = data.ArrayLayout(signed(c.acc_bits), c.cols)
        super().__init__({
            "cmd": In(stream.Signature(unit_command_layout(c))),
            "flush_above": In(flush_signature()),
            "error": Out(error_signature()),
            "pop_l2c": Out(token_pop_signature()),
            "pop_s2c": Out(token_pop_signature()),
            "push_c2l": Out(token_push_signature()),
            "push_c2s": Out(token_push_signature()),
            "spad_weights": Out(read_signature(self._spad_bits, spad_row)),
            "spad_operands": Out(read_signature(self._spad_bits, spad_row)),
            "spad_write": Out(stream.Signature(
                write_layout(self._spad_bits, spad_row, c.lanes))),
            "acc_gemm": Out(exclusive_signature(self._acc_bits, acc_row)),
            "acc_read": Out(read_signature(self._acc_bits, acc_row)),
            "acc_write": Out(stream.Signature(write_layout(self._acc_bits, acc_row))),
            "bias_read": Out(table_read_signature(c)),
            "scale_read": Out(table_read_signature(c)),
            "scale_write": Out(stream.Signature(scale_write_layout(c))),
            "fn_loaded": In(c.pwl_functions),
            "epilogue_in": Out(stream.Signature(epilogue_input_layout(c))),
            "epilogue_out": In(stream.Signature(acc_row)),
            "busy": Out(1),
            "counters": Out(data.StructLayout({n: unsigned(64) for n in COUNTERS})),
            "clear": In(1),
        })
        self._gemm_desc = data.StructLayout({
            "w": unsigned(self._spad_bits), "a": unsigned(self._spad_bits),
            "acc": unsigned(self._acc_bits), "bias": unsigned(self._entry_bits),
            "m": unsigned(12), "k": unsigned(12), "n": unsigned(12),
            "mode": unsigned(2), "transpose": 1, "w_rows": unsigned(self._spad_bits + 1),
        })
        self._epi_desc = data.StructLayout({
            "src": unsigned(self._acc_bits), "dst": unsigned(max(self._spad_bits,
                                                                 self._acc_bits,
                                                                 self._entry_bits)),
            "dest": unsigned(2), "row_scale": 1, "scale": unsigned(self._entry_bits),
            "fn": unsigned(6), "m": unsigned(12), "n": unsigned(12),
            "rows": unsigned(24), "col": unsigned(6), "out_shift": unsigned(6),
        })
        # Parts (constructed here, wired in elaborate).
        self._array = SystolicArray(c)
        self._transposer = Transposer(c)
        gw = self._gemm_desc.size
        # Every sequencer reads its descriptor from registers (a buffered FIFO: a descriptor
        # is readable two cycles after its write, one more than from a LUT-RAM FIFO; for the
        # weights and operands that is one cycle per GEMM start when the queue was empty), so
        # its per-row decisions start at flip-flops. One entry deeper (its output register),
        # so that its RAM has an address bit.
        self._desc_weights = SyncFIFOBuffered(width=gw, depth=DESCRIPTOR_DEPTH + 1)
        self._desc_operands = SyncFIFOBuffered(width=gw, depth=DESCRIPTOR_DEPTH + 1)
        self._desc_bias = SyncFIFOBuffered(width=gw, depth=DESCRIPTOR_DEPTH + 1)
        # (the results' head descriptor is a register of the result sequencer: with it this
        # queue holds as many as the others)
        self._desc_results = SyncFIFO(width=gw, depth=DESCRIPTOR_DEPTH)
        # Tags from registers (buffered: a tag is readable two cycles after its request, the
        # response comes three cycles after it), so the response handshakes start at
        # flip-flops; one entry more for the output register.
        self._tag_weights = SyncFIFOBuffered(width=1, depth=TAG_DEPTH + 1)
        self._tag_operands = SyncFIFOBuffered(width=1, depth=TAG_DEPTH + 1)
        self._bias_queue = SyncFIFO(width=c.acc_bits * c.cols, depth=BIAS_DEPTH)
        self._scale_queue = SyncFIFO(width=(SCALE_BITS + SHIFT_BITS) * c.cols, depth=SCALE_DEPTH)
        self._retire = SyncFIFO(width=4, depth=RETIRE_DEPTH)
        # The weight and operand read requests on their way to the scratchpad's banks.
        read_req = self.spad_weights.req.payload.shape()
        self._weight_req_slice = StreamSkid(read_req)
        self._operand_req_slice = StreamSkid(read_req)
        # EPI results on their way to the scratchpad, accumulator or bias/scale SRAM: a ring,
        # so that a memory's grant (its write arbitration) moves only the read pointer and the
        # fill level, never the enables of the two wide rows.
        self._epi_write_slice = StreamRing(data.StructLayout({
            "addr": self._epi_desc.members["dst"], "row": acc_row}))

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the unit was built for."""
        return self._config

    @property
    def array(self) -> SystolicArray:
        """The systolic array inside the unit."""
        return self._array

    def elaborate(self, platform) -> Module:  # noqa: C901 (one datapath, read top to bottom)
        m = Module()
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        m.submodules.array = array = self._array
        m.submodules.transposer = tr = self._transposer
        for name in ("desc_weights", "desc_operands", "desc_bias", "desc_results",
                     "tag_weights", "tag_operands", "bias_queue", "scale_queue", "retire"):
            m.submodules[name] = getattr(self, f"_{name}")
        dq_w, dq_o = self._desc_weights, self._desc_operands
        dq_b, dq_r = self._desc_bias, self._desc_results
        GD, ED = self._gemm_desc, self._epi_desc

        # ------------------------------------------------------------------ issue stage
        ins = Signal(unit_command_layout(cfg))
        hdr = ins.word.header
        g = ins.word.body.gemm
        e = ins.word.body.epi
        opcode = hdr.opcode
        IDLE, CHECK, BOUNDS, DECIDE, WAIT, ERROR = range(6)
        state = Signal(range(6))
        e_nm = Signal(24)  # the EPI's rows, kept for its issue
        # The field products through the DSP blocks' own input and product registers
        # (`hw.dsp.PipelinedMultiplier`): the operands are taken from the command as it is
        # loaded into `ins` (IDLE), so the products are ready in BOUNDS (CHECK lasts one cycle),
        # which compares them (and keeps `e_nm`).
        cg = self.cmd.payload.word.body.gemm
        ce = self.cmd.payload.word.body.epi
        products = {}
        for name, (x, y) in {"nk": (cg.n_tiles, cg.k_tiles), "km": (cg.k_tiles, cg.m),
                             "g_nm": (cg.n_tiles, cg.m), "e_nm": (ce.n_tiles, ce.m)}.items():
            mul = PipelinedMultiplier(len(x) + 1, len(y) + 1)
            m.submodules[f"mul_{name}"] = mul
            m.d.comb += [mul.a.eq(x), mul.b.eq(y)]
            products[name] = mul.p.as_unsigned()[:24]
        nk_p, km_p, g_nm_p, e_nm_p = (products[k] for k in ("nk", "km", "g_nm", "e_nm"))
        w_rows = Signal(31)
        scale_count = Signal(24)
        # The EPI's overlap checks as differences of the range starts, formed in CHECK:
        # [a0, a0 + an) and [b0, b0 + bn) intersect iff a0 - b0 < bn and b0 - a0 < an, so BOUNDS
        # compares without adding first.
        dst_src = Signal(signed(22))  # e.dst - e.src
        src_dst = Signal(signed(22))
        dst_scale = Signal(signed(22))  # e.dst - e.scale
        scale_dst = Signal(signed(22))
        # An EPI's FN_UNLOADED check waits for its tokens (the LOADT that loads the function is
        # ordered before it only by them); the checks after it in docs/isa.md's order are
        # decided before but reported after it: ``late_code`` holds the first (0: none).
        late_code = Signal(4)
        err_valid = Signal()
        err_code = Signal(4)
        err_pc = Signal(32)
        m.d.comb += [
            self.error.valid.eq(err_valid),
            self.error.code.eq(err_code),
            self.error.pc.eq(err_pc),
        ]
        flush = self.flush_above
        # Only the held instruction is compared with the flush, and the compare is registered:
        # DECIDE and WAIT (at least two cycles after `ins` loads) see it a cycle late, as if
        # the flush had come a cycle later (an instruction issued before its flush arrives is
        # handled downstream either way). IDLE takes every command into `ins` (a flushed one
        # leaves at DECIDE), so neither `ins`'s enable nor `cmd.ready` waits for a 32-bit
        # compare of the arriving `pc`.
        drop_held = Signal()
        m.d.sync += drop_held.eq(flush.valid & (ins.pc > flush.pc))

        gemm_issue = Signal()
        epi_issue = Signal()
        issue = Signal()  # any instruction leaves the issue stage into the machine
        gemm_done = Signal()
        epi_done = Signal()

        # EPI slot state, used by the interlock
        epi = Signal(ED)
        epi_busy = Signal()  # the EPI slot holds an EPI (waiting or running)
        epi_wait = Signal(range(RETIRE_DEPTH + 2))  # GEMMs before it still to complete
        epi_running = Signal()
        gemm_outstanding = Signal(range(RETIRE_DEPTH + 2))

        mode = g.mode.as_value()
        bias_mode = mode[1]
        spad_rows, acc_rows = cfg.scratchpad_rows, cfg.accumulator_rows
        entries = cfg.bias_entries

        # `err_pc` follows the held instruction while no error is held, so a failure drives
        # `err_valid` and the code, not the 32 enables of `err_pc` behind the check flags.
        with m.If(~err_valid):
            m.d.sync += err_pc.eq(ins.pc)

        def fail(code):
            m.d.sync += [err_valid.eq(1), err_code.eq(code)]
            goto(ERROR)

        # The interlock compares the held GEMM's row ranges with the EPI slot's, from range
        # ends registered beforehand (the GEMM's in BOUNDS, the slot's at EPI issue), and its
        # result is registered too (`conflict`): the GEMM's fields are fixed from DECIDE on,
        # and the slot changes only when an EPI issues (from this stage, so not while a GEMM
        # waits here) or completes (which clears `epi_busy`, so the GEMM issues in the same
        # cycle as with a combinational interlock).
        g_w_end = Signal(self._spad_bits + 2)
        g_a_end = Signal(self._spad_bits + 2)
        g_acc_end = Signal(self._acc_bits + 2)
        epi_src_end = Signal(self._acc_bits + 2)
        epi_dst_end = Signal(self._epi_desc.members["dst"].width + 2)
        g_w_end_c = g.w + Mux(g.transpose, nk_p * C, nk_p * R)
        with m.If(state == BOUNDS):
            m.d.sync += [g_w_end.eq(g_w_end_c), g_a_end.eq(g.a + km_p),
                         g_acc_end.eq(g.acc + g_nm_p)]

        def _overlap_ends(a0, a_end, b0, b_end):
            return (a0 < b_end) & (b0 < a_end)

        conflict = Signal()
        m.d.sync += conflict.eq(
            _overlap_ends(g.acc, g_acc_end, epi.src, epi_src_end)
            | ((epi.dest == EpiDest.ACC.value)
               & _overlap_ends(g.acc, g_acc_end, epi.dst, epi_dst_end))
            | ((epi.dest == EpiDest.SPAD.value)
               & (_overlap_ends(g.w, g_w_end, epi.dst, epi_dst_end)
                  | _overlap_ends(g.a, g_a_end, epi.dst, epi_dst_end))))
        interlock_ok = Signal()
        m.d.comb += interlock_ok.eq(~epi_busy | ~conflict)
        # The opcode decoded into flip-flops in CHECK (`ins` is fixed from CHECK on).
        is_gemm, is_epi, is_sync = Signal(), Signal(), Signal()
        tokens_ok = ((~hdr.pop_prev | self.pop_l2c.available)
                     & (~hdr.pop_next | self.pop_s2c.available))
        # WAIT's issue decision is two LUTs of flip-flops and the token counters' `available`:
        # * the queues' room registered (`room_q`: their `w_rdy` of the cycle before). Only
        #   this stage writes them, and an issue leaves WAIT, so while an instruction waits
        #   their room only grows: the flag lags it by a cycle, never claims room there is none;
        # * the EPI's function loaded, registered (`fn_ok_q`): `fn_loaded` only rises during a
        #   run, so `fn_ok_q` implies the FN_UNLOADED check passes; it too lags by a cycle;
        # * `in_wait`, the opcode and `late_bad` flip-flops instead of `state` and compares.
        gemm_room_q = Signal()
        rq_room_q = Signal()
        fn_ok_q = Signal()
        late_bad = Signal()
        in_wait = Signal()
        m.d.sync += [
            gemm_room_q.eq(dq_w.w_rdy & dq_o.w_rdy & dq_b.w_rdy & dq_r.w_rdy
                           & self._retire.w_rdy),
            rq_room_q.eq(self._retire.w_rdy),
            fn_ok_q.eq(self.fn_loaded.bit_select(e.fn, 1)),
        ]
        go = in_wait & ~drop_held & tokens_ok
        issue_gemm_ok = go & is_gemm & gemm_room_q & interlock_ok
        issue_epi_ok = go & is_epi & rq_room_q & ~epi_busy & fn_ok_q & ~late_bad
        issue_sync_ok = go & is_sync & rq_room_q
        waiting = Signal()  # in WAIT: tokens, room or interlock
        checking = Signal()  # in CHECK, BOUNDS or DECIDE

        # issue state: an If chain with a final Else rather than an FSM or Switch, so the Verilog
        # has no incomplete case statement. The DSPs form the products in CHECK, BOUNDS
        # registers every range check (one add and one compare deep each), DECIDE picks the
        # first failing one in docs/isa.md's order: no cycle chains the checks' carry chains.

        def goto(s):
            m.d.sync += [state.eq(s), in_wait.eq(s == WAIT)]

        dest = e.dest.as_value()
        to_scale = dest == EpiDest.SCALE.value
        to_spad = dest == EpiDest.SPAD.value
        to_acc = dest == EpiDest.ACC.value
        # (name, condition) in the order of the checks; GEMM's, then EPI's
        # `start + count > limit` as `count > room` with `room = limit - start` formed in CHECK
        # (signed), so BOUNDS compares registers without adding first.
        room = {}

        def room_of(name, limit, start):
            r = Signal(signed(max(len(start), Shape.cast(range(limit + 1)).width) + 2),
                       name=f"room_{name}")
            m.d.sync += r.eq(limit - start)  # `ins` is fixed from CHECK on
            room[name] = r
            return r

        def over(count, name, limit, start):
            # `count > room`, with `room <= limit < 2**k`: a negative room, any of the count's
            # bits from k up, or a k-bit compare; the carry chain is k bits long, not the
            # width of the product (the high bits' OR runs beside it)
            r = room_of(name, limit, start)
            k = Shape.cast(range(limit + 1)).width
            count = count.as_value() if hasattr(count, "as_value") else count
            high = count[k:].any() if len(count) > k else 0
            return r[-1] | high | (count[:k] > r[:k])

        gemm_checks = [
            ("w", over(Mux(g.transpose, nk_p * C, nk_p * R), "w", spad_rows, g.w),
             StatusCode.SPAD_RANGE),
            ("a", over(km_p, "a", spad_rows, g.a), StatusCode.SPAD_RANGE),
            ("acc", over(g_nm_p, "acc", acc_rows, g.acc), StatusCode.ACC_RANGE),
            ("bias", bias_mode & over(g.n_tiles * C, "bias", entries, g.bias),
             StatusCode.TABLE_RANGE),
        ]
        epi_checks = [  # (name, condition, code, reported late: after FN_UNLOADED)
            ("src", over(e_nm_p, "src", acc_rows, e.src), StatusCode.ACC_RANGE, False),
            ("fn", e.fn >= cfg.pwl_functions, StatusCode.TABLE_RANGE, False),
            ("scale", over(scale_count, "scale", entries, e.scale), StatusCode.TABLE_RANGE,
             True),
            ("col", to_scale & (e.col >= C), StatusCode.FIELD_RANGE, True),
            ("shift", to_scale & (e.out_shift > MAX_SHIFT), StatusCode.FIELD_RANGE, True),
            ("scale_dst", to_scale & over(e_nm_p, "scale_dst", entries, e.dst),
             StatusCode.TABLE_RANGE, True),
            ("scale_overlap", to_scale & (dst_scale < scale_count) & (scale_dst < e_nm_p),
             StatusCode.FIELD_RANGE, True),
            ("spad_dst", to_spad & over(e_nm_p, "spad_dst", spad_rows, e.dst),
             StatusCode.SPAD_RANGE, True),
            ("acc_dst", to_acc & over(e_nm_p, "acc_dst", acc_rows, e.dst),
             StatusCode.ACC_RANGE, True),
            ("acc_overlap", to_acc & (e.dst != e.src) & (dst_src < e_nm_p) & (src_dst < e_nm_p),
             StatusCode.FIELD_RANGE, True),
        ]
        gemm_bad = {name: Signal(name=f"gemm_bad_{name}") for name, _, _ in gemm_checks}
        epi_bad = {name: Signal(name=f"epi_bad_{name}") for name, _, _, _ in epi_checks}

        with m.If(state == IDLE):
            with m.If(self.cmd.valid & ~err_valid):
                m.d.comb += self.cmd.ready.eq(1)
                m.d.sync += ins.eq(self.cmd.payload)
                goto(CHECK)
        with m.Elif(state == CHECK):
            m.d.comb += checking.eq(1)
            m.d.sync += [
                is_gemm.eq(opcode == Opcode.GEMM),
                is_epi.eq(opcode == Opcode.EPI),
                is_sync.eq(opcode == Opcode.SYNC),
                scale_count.eq(Mux(e.scale_mode == ScaleMode.COL, e.n_tiles * C, e.m)),
                dst_src.eq(e.dst - e.src),
                src_dst.eq(e.src - e.dst),
                dst_scale.eq(e.dst - e.scale),
                scale_dst.eq(e.scale - e.dst),
            ]
            goto(BOUNDS)
        with m.Elif(state == BOUNDS):
            m.d.comb += checking.eq(1)
            m.d.sync += [w_rows.eq(Mux(g.transpose, nk_p * C, nk_p * R)),
                         e_nm.eq(e_nm_p)]
            m.d.sync += [gemm_bad[name].eq(cond) for name, cond, _ in gemm_checks]
            m.d.sync += [epi_bad[name].eq(cond) for name, cond, _, _ in epi_checks]
            goto(DECIDE)
        with m.Elif(state == DECIDE):
            m.d.comb += checking.eq(1)
            with m.If(drop_held):
                goto(IDLE)
            with m.Elif(is_gemm):
                for i, (name, _, code) in enumerate(gemm_checks):
                    with (m.If if i == 0 else m.Elif)(gemm_bad[name]):
                        fail(code)
                with m.Else():
                    goto(WAIT)
            with m.Elif(is_epi):
                m.d.sync += [late_code.eq(0), late_bad.eq(0)]
                for i, (name, _, code, late) in enumerate(epi_checks):
                    with (m.If if i == 0 else m.Elif)(epi_bad[name]):
                        if late:  # reported in WAIT, after FN_UNLOADED
                            m.d.sync += [late_code.eq(code), late_bad.eq(1)]
                            goto(WAIT)
                        else:
                            fail(code)
                with m.Else():
                    goto(WAIT)
            with m.Elif(is_sync):
                goto(WAIT)
            with m.Else():
                fail(StatusCode.ILLEGAL_INSTRUCTION)
        with m.Elif(state == WAIT):
            m.d.comb += waiting.eq(1)
            # (an issue excludes both failures: see `fn_ok_q` and `late_bad`)
            with m.If(drop_held):
                goto(IDLE)
            with m.Elif(issue_gemm_ok | issue_epi_ok | issue_sync_ok):
                goto(IDLE)
            with m.Elif(tokens_ok & is_epi & ~self.fn_loaded.bit_select(e.fn, 1)):
                fail(StatusCode.FN_UNLOADED)
            with m.Elif(tokens_ok & is_epi & late_bad):
                m.d.sync += [err_valid.eq(1), err_code.eq(late_code)]
                goto(ERROR)
        with m.Else():  # ERROR
            # Every later command of this queue is above the failing one, so above the flush
            # offset once the error reaches it: discarded without a compare.
            m.d.comb += self.cmd.ready.eq(1)

        m.d.comb += [
            gemm_issue.eq(issue_gemm_ok),
            epi_issue.eq(issue_epi_ok),
            issue.eq(issue_gemm_ok | issue_epi_ok | issue_sync_ok),
            self.pop_l2c.take.eq(issue & hdr.pop_prev),
            self.pop_s2c.take.eq(issue & hdr.pop_next),
        ]

        # Descriptors for the GEMM sequencers.
        gdesc = Signal(GD)
        m.d.comb += [
            gdesc.w.eq(g.w), gdesc.a.eq(g.a), gdesc.acc.eq(g.acc), gdesc.bias.eq(g.bias),
            gdesc.m.eq(g.m), gdesc.k.eq(g.k_tiles), gdesc.n.eq(g.n_tiles), gdesc.mode.eq(mode),
            gdesc.transpose.eq(g.transpose), gdesc.w_rows.eq(w_rows),
        ]
        for q in (dq_w, dq_o, dq_b, dq_r):
            m.d.comb += [q.w_data.eq(gdesc), q.w_en.eq(gemm_issue)]

        # Retire queue: {kind, push_prev, push_next} in issue order.
        rq = self._retire
        kind = Mux(is_gemm, _KIND_GEMM, Mux(is_epi, _KIND_EPI, _KIND_SYNC))
        m.d.comb += [rq.w_en.eq(issue), rq.w_data.eq(Cat(kind[:2], hdr.push_prev, hdr.push_next))]
        head_kind = rq.r_data[:2]
        head_prev, head_next = rq.r_data[2], rq.r_data[3]
        gemm_unretired = Signal(range(RETIRE_DEPTH + 2))
        epi_unretired = Signal(range(RETIRE_DEPTH + 2))
        complete = Mux(head_kind == _KIND_GEMM, gemm_unretired != 0,
                       Mux(head_kind == _KIND_EPI, epi_unretired != 0, 1))
        space_ok = (~head_prev | self.push_c2l.space) & (~head_next | self.push_c2s.space)
        retire = Signal()
        m.d.comb += [
            retire.eq(rq.r_rdy & complete & space_ok),
            rq.r_en.eq(retire),
            self.push_c2l.put.eq(retire & head_prev),
            self.push_c2s.put.eq(retire & head_next),
        ]
        retire_gemm = retire & (head_kind == _KIND_GEMM)
        retire_epi = retire & (head_kind == _KIND_EPI)
        m.d.sync += [
            gemm_unretired.eq(gemm_unretired + gemm_done - retire_gemm),
            epi_unretired.eq(epi_unretired + epi_done - retire_epi),
            gemm_outstanding.eq(gemm_outstanding + gemm_issue - gemm_done),
        ]

        # ------------------------------------------------------------------ weights
        # `wj1` holds j + 1, so the end of the block rows is an equality of flip-flops.
        wd = GD(dq_w.r_data)
        wj = Signal(self._spad_bits + 1)
        wj1 = Signal(self._spad_bits + 1, init=1)
        # The weight and operand requests reach the scratchpad through register slices: its
        # banks' read arbiters (the store unit's reads compete there) see valid and address
        # from flip-flops, and their grant reaches only the slice, not the sequencers. One
        # cycle more from request to data (per GEMM start; one row per cycle kept). A request
        # waiting in a slice cannot be overtaken by a later write: the scratchpad's writers
        # are the load unit, which overwrites what a GEMM reads only after a token the compute
        # unit pushes when that GEMM (or a later instruction) retires, i.e. after the GEMM's
        # last result row, which needs every one of its reads served; and the EPI, which
        # writes rows of an earlier GEMM only once that GEMM completed (`epi_wait`).
        wslice, oslice = self._weight_req_slice, self._operand_req_slice
        m.submodules.weight_req_slice = wslice
        m.submodules.operand_req_slice = oslice
        wiring.connect(m, wslice.o, wiring.flipped(self.spad_weights.req))
        wiring.connect(m, oslice.o, wiring.flipped(self.spad_operands.req))
        wreq = wslice.i
        wtag = self._tag_weights
        m.d.comb += [
            wreq.valid.eq(dq_w.r_rdy & wtag.w_rdy),
            wreq.payload.addr.eq(wd.w + wj),
            wtag.w_data.eq(wd.transpose),
            wtag.w_en.eq(wreq.valid & wreq.ready),
        ]
        with m.If(wreq.valid & wreq.ready):
            with m.If(wj1 == wd.w_rows):
                m.d.sync += [wj.eq(0), wj1.eq(1)]
                m.d.comb += dq_w.r_en.eq(1)
            with m.Else():
                m.d.sync += [wj.eq(wj1), wj1.eq(wj1 + 1)]
        wresp = self.spad_weights.resp
        transposed = wtag.r_data[0]
        direct = Signal()
        m.d.comb += [
            tr.rows.payload.eq(Cat(*[wresp.payload.data[r] for r in range(R)])),
            tr.rows.valid.eq(wresp.valid & wtag.r_rdy & transposed),
            direct.eq(wresp.valid & wtag.r_rdy & ~transposed & tr.idle),
        ]
        with m.If(tr.beats.valid):
            m.d.comb += [
                array.weights.valid.eq(1),
                array.weights.payload.eq(tr.beats.payload),
                tr.beats.ready.eq(array.weights.ready),
            ]
        with m.Else():
            m.d.comb += [
                array.weights.valid.eq(direct),
                array.weights.payload.eq(Cat(*[wresp.payload.data[c] for c in range(C)])),
            ]
        m.d.comb += wresp.ready.eq(wtag.r_rdy & Mux(
            transposed, tr.rows.ready, ~tr.beats.valid & tr.idle & array.weights.ready))
        m.d.comb += wtag.r_en.eq(wresp.valid & wresp.ready)

        # ------------------------------------------------------------------ operands
        # Row i of block t of output tile u is `a + t*m + i`: `orow` counts t*m + i (0 at each
        # tile), so the address is one add of flip-flops; `oi1`, `ot1`, `ou1` hold i + 1, t + 1,
        # u + 1 and `o_first` i == 0, so the ends are equalities of flip-flops.
        od = GD(dq_o.r_data)
        oi1, ot1, ou1 = Signal(12, init=1), Signal(12, init=1), Signal(12, init=1)
        o_first = Signal(init=1)
        orow = Signal(self._spad_bits + 1)  # t * m + i
        oreq = oslice.i
        otag = self._tag_operands
        m.d.comb += [
            oreq.valid.eq(dq_o.r_rdy & otag.w_rdy),
            oreq.payload.addr.eq(od.a + orow),
            otag.w_data.eq(o_first),
            otag.w_en.eq(oreq.valid & oreq.ready),
        ]
        with m.If(oreq.valid & oreq.ready):
            m.d.sync += [oi1.eq(oi1 + 1), orow.eq(orow + 1), o_first.eq(0)]
            with m.If(oi1 == od.m):
                m.d.sync += [oi1.eq(1), ot1.eq(ot1 + 1), o_first.eq(1)]
                with m.If(ot1 == od.k):
                    m.d.sync += [ot1.eq(1), orow.eq(0), ou1.eq(ou1 + 1)]
                    with m.If(ou1 == od.n):
                        m.d.sync += ou1.eq(1)
                        m.d.comb += dq_o.r_en.eq(1)
        oresp = self.spad_operands.resp
        m.d.comb += [
            array.operands.valid.eq(oresp.valid & otag.r_rdy),
            array.operands.payload.data.eq(Cat(*[oresp.payload.data[r] for r in range(R)])),
            array.operands.payload.first.eq(otag.r_data[0]),
            oresp.ready.eq(otag.r_rdy & array.operands.ready),
            otag.r_en.eq(oresp.valid & oresp.ready),
        ]
        array_row = array.operands.valid & array.operands.ready

        # ------------------------------------------------------------------ bias
        bd = GD(dq_b.r_data)
        bu = Signal(12)
        boff = Signal(self._entry_bits + 1)  # u * C
        bq = self._bias_queue
        b_inflight = Signal(range(BIAS_DEPTH + 1))
        breq = self.bias_read.req
        bresp = self.bias_read.resp
        b_credit = bq.level + b_inflight < BIAS_DEPTH
        m.d.comb += [
            breq.valid.eq(dq_b.r_rdy & bd.mode[1] & b_credit),
            breq.payload.entry.eq(bd.bias + boff),
        ]
        with m.If(dq_b.r_rdy & ~bd.mode[1]):
            m.d.comb += dq_b.r_en.eq(1)
        with m.If(breq.valid & breq.ready):
            m.d.sync += [bu.eq(bu + 1), boff.eq(boff + C)]
            with m.If(bu == bd.n - 1):
                m.d.sync += [bu.eq(0), boff.eq(0)]
                m.d.comb += dq_b.r_en.eq(1)
        m.d.comb += [
            bresp.ready.eq(bq.w_rdy),
            bq.w_en.eq(bresp.valid & bq.w_rdy),
            bq.w_data.eq(Cat(*[bresp.payload.data[c].bias for c in range(C)])),
        ]
        m.d.sync += b_inflight.eq(b_inflight + (breq.valid & breq.ready) - bq.w_en)

        # ------------------------------------------------------------------ results
        # The head descriptor in a register of its own (`rd`), with its end compares as
        # flags loaded with the counters: `last_block_row` is `ri1 == m`, `last_block`
        # `rt1 == k`, `last_tile` `ru1 == n`, each loaded from `1 == field` when the head loads
        # or the counter wraps, else from `counter == field - 1` as the counter steps (the
        # fields minus 1 registered with the head). The pop and the result handshake are then
        # one LUT of flip-flops, not 12-bit compares behind the queue's output.
        rd = Signal(GD)
        rd_valid = Signal()
        rd_pop = Signal()
        m_m1, k_m1, n_m1 = Signal(12), Signal(12), Signal(12)
        # Row i of block t of output tile u; `ri1`, `rt1`, `ru1` hold i + 1, t + 1, u + 1, and
        # `rt_zero` t == 0, so `add_bias` / `read_old` are one LUT of flip-flops. Its
        # accumulator row `acc + u*m + i` is a running register (`row`, with `tile_row` =
        # `acc + u*m`), so the exclusive port's read address (which the accumulator's bank
        # decode and read arbiters see) comes from flip-flops, not a three-input add.
        ri1, rt1, ru1 = Signal(12, init=1), Signal(12, init=1), Signal(12, init=1)
        rt_zero = Signal(init=1)
        last_block_row, last_block, last_tile = Signal(), Signal(), Signal()
        row = Signal(self._acc_bits)
        tile_row = Signal(self._acc_bits)
        res = array.results
        read_old = ~rt_zero | rd.mode[0]
        add_bias = rt_zero & rd.mode[1]
        bias_vec = data.ArrayLayout(signed(32), C)(bq.r_data)
        accept = Signal()
        m.d.comb += [
            res.ready.eq(rd_valid & (~add_bias | bq.r_rdy)),
            accept.eq(res.valid & res.ready),
            dq_r.r_en.eq(~rd_valid | rd_pop),
        ]
        last_row = last_block_row & last_block & last_tile
        with m.If(accept):
            m.d.sync += [row.eq(row + 1), ri1.eq(ri1 + 1), last_block_row.eq(ri1 == m_m1)]
            with m.If(last_block_row):
                m.d.sync += [row.eq(tile_row), ri1.eq(1), last_block_row.eq(rd.m == 1),
                             rt1.eq(rt1 + 1), last_block.eq(rt1 == k_m1), rt_zero.eq(0)]
                with m.If(last_block):
                    m.d.sync += [rt1.eq(1), last_block.eq(rd.k == 1), rt_zero.eq(1),
                                 ru1.eq(ru1 + 1), last_tile.eq(ru1 == n_m1),
                                 row.eq(tile_row + rd.m), tile_row.eq(tile_row + rd.m)]
                    with m.If(last_tile):
                        m.d.sync += [ru1.eq(1), last_tile.eq(rd.n == 1), rd_valid.eq(0)]
                        m.d.comb += rd_pop.eq(1)
        # (after the counters: a head loading sets the flags from its own fields)
        with m.If(dq_r.r_en & dq_r.r_rdy):
            nd = GD(dq_r.r_data)
            m.d.sync += [
                rd.eq(nd), rd_valid.eq(1), row.eq(nd.acc), tile_row.eq(nd.acc),
                m_m1.eq(nd.m - 1), k_m1.eq(nd.k - 1), n_m1.eq(nd.n - 1),
                last_block_row.eq(nd.m == 1), last_block.eq(nd.k == 1), last_tile.eq(nd.n == 1),
            ]
        m.d.comb += bq.r_en.eq(accept & add_bias & last_block_row)
        m.d.comb += [
            self.acc_gemm.read_en.eq(accept & read_old),
            self.acc_gemm.read_addr.eq(row),
        ]
        # Read-modify-write in L + 1 stages after `accept` (the read; its data arrives
        # L = hw.accumulator.GEMM_READ_LATENCY cycles later): s1 .. sL (the read data arrives
        # in sL: select the old value, forwarding the writes the read did not see), s(L+1)
        # (add, write). The read is transparent to the write in its own cycle; the writes of
        # the next L cycles (the row in s(L+1) while this row is in s1 .. sL) are forwarded
        # here: the one written now and the L - 1 before it.
        lat = GEMM_READ_LATENCY
        acc_row = data.ArrayLayout(signed(32), C)
        s_valid = [accept] + [Signal(name=f"s{i}_valid") for i in range(1, lat + 2)]
        s_addr = [row] + [Signal(self._acc_bits, name=f"s{i}_addr") for i in range(1, lat + 2)]
        s_last = [last_row] + [Signal(name=f"s{i}_last") for i in range(1, lat + 2)]
        s_read_old = [read_old] + [Signal(name=f"s{i}_read_old") for i in range(1, lat)]
        # product + bias, added in s2 and carried to the write
        s_pb = {i: Signal(acc_row, name=f"s{i}_pb") for i in range(2, lat + 2)}
        s1_add_bias = Signal()
        s1_prod = Signal(acc_row)  # the array's result row
        s1_bias = Signal(acc_row)  # the bias to add to it (0 when none)
        w_old = Signal(acc_row, name=f"s{lat + 1}_old")
        write_data = Signal(acc_row)
        w = lat + 1
        # the write of this cycle (s(L+1)'s) and of 1 .. L - 1 cycles ago
        w_valid = [s_valid[w]] + [Signal(name=f"prev{j}_w_valid") for j in range(1, lat)]
        w_addr = [s_addr[w]] + [Signal(self._acc_bits, name=f"prev{j}_w_addr")
                                for j in range(1, lat)]
        w_data = [write_data] + [Signal(acc_row, name=f"prev{j}_w_data") for j in range(1, lat)]
        for i in range(1, lat + 2):
            m.d.sync += [s_valid[i].eq(s_valid[i - 1]), s_addr[i].eq(s_addr[i - 1]),
                         s_last[i].eq(s_last[i - 1])]
        for i in range(1, lat):
            m.d.sync += s_read_old[i].eq(s_read_old[i - 1])
        for i in range(3, lat + 2):
            m.d.sync += s_pb[i].eq(s_pb[i - 1])
        for j in range(1, lat):
            m.d.sync += [w_valid[j].eq(w_valid[j - 1]), w_addr[j].eq(w_addr[j - 1]),
                         w_data[j].eq(w_data[j - 1])]
        # product + bias is added in s2 (a register stage that only copied it before), so
        # the result handshake's decision does not reach the adders
        m.d.sync += [s1_prod.eq(res.payload), s1_bias.eq(bias_vec), s1_add_bias.eq(add_bias)]
        for c in range(C):
            m.d.sync += s_pb[2][c].eq(s1_prod[c] + Mux(s1_add_bias, s1_bias[c], 0))
        # The forwarding selects are compared a cycle ahead (the row in s(L-1) against the rows
        # in sL, s(L+1) and the previous writes, which are in s(L+1), just written, ... when
        # it reaches sL) and registered, so they reach the C x 32 selection multiplexers
        # straight from flip-flops: one copy per column (kept apart from Yosys's merging), so
        # each drives 32 multiplexers, not C x 32 across the die. The newest write wins; the
        # read data is the last choice, so its path from the far block RAMs meets one
        # multiplexer level, the adder's output none.
        here = s_addr[lat - 1]
        fwd_d = [s_valid[lat] & (s_addr[lat] == here)]
        fwd_d += [v & (a == here) for v, a in zip(w_valid[:-1], w_addr[:-1], strict=True)]
        fwd_names = ["fwd_now", "fwd_prev"] + [f"fwd_prev{j}" for j in range(2, lat)]
        # `w_old` is 0 for a row that reads no old value (loaded from a copy per column of
        # the row's `read_old` in sL), so the write's add takes it straight from flip-flops.
        for c in range(C):
            fwd = [kept_flip_flop(m, d, platform, f"{fwd_names[j]}_c{c}")
                   for j, d in enumerate(fwd_d)]
            read_old_c = kept_flip_flop(m, s_read_old[lat - 1], platform,
                                        f"s{lat}_read_old_c{c}")
            old = self.acc_gemm.read_data[c]
            for sel, value in reversed(list(zip(fwd, w_data, strict=True))):
                old = Mux(sel, value[c], old)
            m.d.sync += w_old[c].eq(Mux(~read_old_c, 0, old))
            m.d.comb += write_data[c].eq(s_pb[w][c] + w_old[c])
        m.d.comb += [
            self.acc_gemm.write_en.eq(s_valid[w]),
            self.acc_gemm.write_addr.eq(s_addr[w]),
            self.acc_gemm.write_data.eq(write_data),
            gemm_done.eq(s_valid[w] & s_last[w]),
        ]

        # ------------------------------------------------------------------ EPI
        ej_req = Signal(24)
        es_req = Signal(24)
        es_i = Signal(12)
        # The request streams' "more to send" as flags (`a_more`: `ej_req < rows`, `s_more`:
        # `es_req < s_total`), loaded with the slot and from `count + 1 < total` as each
        # request leaves, and the scale entry as a running register (`s_entry`): each valid
        # and each handshake's enables are one LUT of flip-flops, not a 24-bit compare.
        a_more, s_more = Signal(), Signal()
        s_entry = Signal(self._entry_bits)
        ei_join = Signal(12)
        ej_out = Signal(24)
        ew = self._epi_write_slice
        # `epi.dst + ej_out` as a running address (loaded with the slot, one add per row written)
        ej_addr = Signal(len(ew.i.payload.addr))
        # the slot's destination one-hot, for the write handshakes only (three flip-flops that
        # can sit next to the slice, not the slot's field and a compare)
        w_spad, w_acc, w_scale = Signal(), Signal(), Signal()
        sq = self._scale_queue
        s_inflight = Signal(range(SCALE_DEPTH + 1))
        started = epi_running
        # The slot's registers load whenever the slot is free (an EPI issues only then, so
        # they hold its fields from its issue on): the issue decision drives only `epi_busy`,
        # not the ~150 enables of the slot.
        with m.If(epi_issue):
            m.d.sync += epi_busy.eq(1)
        with m.If(~epi_busy):
            m.d.sync += [
                epi.src.eq(e.src), epi.dst.eq(e.dst), epi.dest.eq(e.dest.as_value()),
                epi.row_scale.eq(e.scale_mode == ScaleMode.ROW), epi.scale.eq(e.scale),
                epi.fn.eq(e.fn), epi.m.eq(e.m), epi.n.eq(e.n_tiles), epi.rows.eq(e_nm),
                epi.col.eq(e.col), epi.out_shift.eq(e.out_shift),
                epi_src_end.eq(e.src + e_nm), epi_dst_end.eq(e.dst + e_nm),
                epi_wait.eq(gemm_outstanding - gemm_done),
                ej_req.eq(0), es_req.eq(0), es_i.eq(0), ei_join.eq(0),
                ej_out.eq(0), ej_addr.eq(e.dst),
                a_more.eq(e_nm != 0),
                s_more.eq(Mux(e.scale_mode == ScaleMode.ROW, e_nm, e.n_tiles) != 0),
                s_entry.eq(e.scale),
                w_spad.eq(e.dest == EpiDest.SPAD), w_acc.eq(e.dest == EpiDest.ACC),
                w_scale.eq(e.dest == EpiDest.SCALE),
            ]
        with m.Elif(gemm_done & (epi_wait != 0)):
            m.d.sync += epi_wait.eq(epi_wait - 1)
        # acc row requests
        areq = self.acc_read.req
        m.d.comb += [
            areq.valid.eq(started & a_more),
            areq.payload.addr.eq(epi.src + ej_req),
        ]
        with m.If(areq.valid & areq.ready):
            m.d.sync += [ej_req.eq(ej_req + 1), a_more.eq(ej_req + 1 < epi.rows)]
        # scale requests: COL one per tile, ROW one per row
        sreq = self.scale_read.req
        sresp = self.scale_read.resp
        s_total = Mux(epi.row_scale, epi.rows, epi.n)
        m.d.comb += [
            sreq.valid.eq(started & s_more & (sq.level + s_inflight < SCALE_DEPTH)),
            sreq.payload.entry.eq(s_entry),
        ]
        with m.If(sreq.valid & sreq.ready):
            m.d.sync += [es_req.eq(es_req + 1), es_i.eq(es_i + 1),
                         s_more.eq(es_req + 1 < s_total),
                         s_entry.eq(s_entry + Mux(epi.row_scale, 1, C))]
            with m.If(es_i == epi.m - 1):
                m.d.sync += es_i.eq(0)
                with m.If(epi.row_scale):
                    m.d.sync += s_entry.eq(epi.scale)
        m.d.comb += [
            sresp.ready.eq(sq.w_rdy),
            sq.w_en.eq(sresp.valid & sq.w_rdy),
            sq.w_data.eq(Cat(*[Cat(sresp.payload.data[c].mult, sresp.payload.data[c].shift)
                               for c in range(C)])),
        ]
        m.d.sync += s_inflight.eq(s_inflight + (sreq.valid & sreq.ready) - sq.w_en)
        # join acc row + scale -> epilogue
        aresp = self.acc_read.resp
        ein = self.epilogue_in
        entry_bits = SCALE_BITS + SHIFT_BITS

        def scale_field(c, lo, width):
            return sq.r_data[c * entry_bits + lo: c * entry_bits + lo + width]

        m.d.comb += [
            ein.valid.eq(started & aresp.valid & sq.r_rdy),
            ein.payload.acc.eq(aresp.payload.data),
            ein.payload.fn.eq(epi.fn),
            ein.payload.out_bits.eq(Mux(epi.dest == EpiDest.SPAD.value, 8,
                                        Mux(epi.dest == EpiDest.ACC.value, 32, SCALE_BITS))),
        ]
        for c in range(C):
            m.d.comb += [
                ein.payload.mult[c].eq(Mux(epi.row_scale, scale_field(0, 0, SCALE_BITS),
                                           scale_field(c, 0, SCALE_BITS))),
                ein.payload.shift[c].eq(Mux(epi.row_scale, scale_field(0, SCALE_BITS, SHIFT_BITS),
                                            scale_field(c, SCALE_BITS, SHIFT_BITS))),
            ]
        join = ein.valid & ein.ready
        m.d.comb += [
            aresp.ready.eq(join),
            sq.r_en.eq(join & (epi.row_scale | (ei_join == epi.m - 1))),
        ]
        with m.If(join):
            m.d.sync += ei_join.eq(ei_join + 1)
            with m.If(ei_join == epi.m - 1):
                m.d.sync += ei_join.eq(0)
        # results -> destination, through a register slice: the memories' write arbiters
        # (where the EPI's writes meet the GEMM's exclusive port and the load unit's writes)
        # see its valid and payload from flip-flops, and their grant reaches only the slice's
        # pop, not the epilogue's result queue or `ej_out`. The fence rule of
        # hw/write_fence.py: the EPI completes (its interlock releases the rows, its tokens may
        # retire) only once its last write has left the slice, i.e. been taken by the memory.
        eout = self.epilogue_out
        m.submodules.epi_write_slice = ew
        out_valid = started & eout.valid
        m.d.comb += [
            ew.i.valid.eq(out_valid),
            ew.i.payload.addr.eq(ej_addr),
            ew.i.payload.row.eq(eout.payload),
            eout.ready.eq(started & ew.i.ready),
        ]
        written = eout.valid & eout.ready
        ewo = ew.o
        ew_row = ewo.payload.row
        sw, aw, scw = self.spad_write, self.acc_write, self.scale_write
        m.d.comb += [
            sw.payload.addr.eq(ewo.payload.addr),
            sw.payload.mask.eq((1 << C) - 1),
            aw.payload.addr.eq(ewo.payload.addr),
            aw.payload.data.eq(ew_row),
            scw.payload.entry.eq(ewo.payload.addr),
            scw.payload.shift.eq(epi.out_shift),
        ]
        for c in range(C):
            m.d.comb += sw.payload.data[c].eq(ew_row[c][:8])
        # col < C (checked at issue); `epi` is unchanged while the slice holds its rows
        m.d.comb += scw.payload.mult.eq(
            Cat(*[ew_row[c][:SCALE_BITS] for c in range(C)]).word_select(epi.col, SCALE_BITS))
        m.d.comb += [
            sw.valid.eq(ewo.valid & w_spad),
            aw.valid.eq(ewo.valid & w_acc),
            scw.valid.eq(ewo.valid & w_scale),
            ewo.ready.eq((w_spad & sw.ready) | (w_acc & aw.ready) | (w_scale & scw.ready)),
        ]
        # `epi_sent`: the last row is in the slice or written; the EPI is done when the slice
        # is empty too (`ewo.valid`: the ring holds a row)
        epi_sent = Signal()
        with m.If(written & (ej_out == epi.rows - 1)):
            m.d.sync += epi_sent.eq(1)
        m.d.comb += epi_done.eq(epi_sent & ~ewo.valid)
        with m.If(written):
            m.d.sync += [ej_out.eq(ej_out + 1), ej_addr.eq(ej_addr + 1)]
        # slot state: busy from issue to done, running once the earlier GEMMs are done
        with m.If(epi_done):
            m.d.sync += [epi_busy.eq(0), epi_running.eq(0), epi_sent.eq(0)]
        with m.Elif(epi_busy & ~epi_running & (epi_wait == 0)):
            m.d.sync += epi_running.eq(1)

        # ------------------------------------------------------------------ status, counters
        m.d.comb += self.busy.eq(checking | waiting | rq.r_rdy)
        events = {
            "busy": self.busy,
            "stall_l2c": waiting & hdr.pop_prev & ~self.pop_l2c.available,
            "stall_s2c": waiting & hdr.pop_next & ~self.pop_s2c.available,
            "stall_c2l": rq.r_rdy & complete & head_prev & ~self.push_c2l.space,
            "stall_c2s": rq.r_rdy & complete & head_next & ~self.push_c2s.space,
            "stall_interlock": waiting & is_gemm & ~interlock_ok,
            "array_rows": array_row,
            "retired": retire,
        }
        for name, strobe in events.items():
            counter = getattr(self.counters, name)
            with m.If(self.clear):
                m.d.sync += counter.eq(0)
            with m.Elif(strobe):
                m.d.sync += counter.eq(counter + 1)
        return m
