# amaranth: UnusedElaboratable=no
"""The weight-stationary systolic GEMM array: ``rows x cols`` processing elements.

One *tile* multiplies an ``m x rows`` operand block ``A`` by a ``rows x cols`` weight block ``W``
held in the PEs and produces the ``m x cols`` int32 block ``A @ W``, one row per cycle. Operand
element ``A[i, k]`` enters PE row ``k`` at the left and flows right; partial sums flow down the
columns; column ``j`` of the bottom row yields ``sum_k A[i, k] * W[k, j]``. The block skews the
operand rows on the way in and de-skews the result columns on the way out, so all three ports are
row-aligned streams. ``docs/architecture.md`` draws the timing.

Ports (``amaranth.lib.stream``; ``R = rows``, ``C = cols``):

``weights`` (in), payload ``ArrayLayout(signed(8), C)``
    A weight tile is ``R`` beats; beat ``r`` is row ``r`` (the K index) of ``W``. Beats go into
    the PEs' shadow registers while the current tile computes (a two-entry queue in front of the
    array decouples the stream from the array's timing).
``operands`` (in), payload ``operand_layout(R)``: ``data: ArrayLayout(signed(8), R)``, ``first``
    One row of ``A`` per beat. ``first = 1`` marks the first row of a tile: the PEs switch to the
    weight tile loaded last, along the diagonal wavefront on which that row travels.
``results`` (out), payload ``ArrayLayout(signed(32), C)``
    One row of ``A @ W`` per beat, in operand order.

Rules and policy:

* A row with ``first = 1`` is accepted into the array only once all ``R`` beats of a weight tile
  have been loaded since the previous ``first``; until then it waits in the input register and
  ``operands.ready`` stays low. A row with ``first = 0`` before any tile has started likewise
  waits (forever, since no weights can apply to it): it is never computed with undefined weights.
* Loading the next weight tile may start on the cycle the current tile's first row enters, so
  tiles of ``m >= rows`` operand rows stream back to back with no idle cycle, given the weight
  beats arrive one per cycle.
* The array never stalls: its registers have no clock enable, which is what lets it close timing
  (a stall enable driven by ``results.ready`` would reach every register). Backpressure is by
  credit instead: a row enters the array only while fewer than :attr:`SystolicArray.result_depth`
  rows are in flight or waiting in the result queue, so every row that leaves the array has a
  place in that queue. When ``results`` is not ready, or the queue still holds older rows, a
  finished row goes into the queue; otherwise it bypasses it. Nothing is lost or reordered.
* Latency: a row accepted on ``operands`` in cycle ``t`` (and not held) is on ``results`` in cycle
  ``t + rows + cols + 5`` (:attr:`SystolicArray.latency`), plus cycles spent in the result queue.
  ``result_depth = latency`` credits keep one row per cycle flowing while ``results`` is ready.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.credit_queue import CreditQueue
from hw.processing_element import ProcessingElement

__all__ = ["SystolicArray", "operand_layout"]

#: Register stages between the entry decision and the first PE row/column (see elaborate).
ENTRY_STAGES = 1
#: Beats the weight queue in front of the array holds (two keep weights.ready registered while
#: sustaining one beat per cycle).
WEIGHT_QUEUE_DEPTH = 2


def operand_layout(rows: int) -> data.StructLayout:
    """Payload of the ``operands`` stream: ``data`` (``rows`` int8 values) and ``first`` (1 bit)."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), rows), "first": 1})


class SystolicArray(wiring.Component):
    """Weight-stationary ``rows x cols`` int8 x int8 -> int32 systolic array (see module docs).

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``rows``, ``cols``, ``operand_bits`` (8) and ``acc_bits`` (32).

    Attributes
    ----------
    weights : In(stream.Signature(ArrayLayout(signed(8), cols)))
        Weight tiles, ``rows`` beats each, beat ``r`` = K index ``r``.
    operands : In(stream.Signature(operand_layout(rows)))
        Operand rows; ``first`` marks a tile's first row.
    results : Out(stream.Signature(ArrayLayout(signed(32), cols)))
        Result rows, in operand order.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        for name in ("rows", "cols"):
            value = getattr(config, name)
            if not 1 <= value <= 64:
                raise ValueError(f"config.{name} = {value!r}: allowed range is 1..64")
        if config.operand_bits != 8 or config.acc_bits != 32:
            raise ValueError(
                f"config.operand_bits = {config.operand_bits!r}, config.acc_bits = "
                f"{config.acc_bits!r}: only 8-bit operands and 32-bit accumulators are supported"
            )
        self._config = config
        rows, cols = config.rows, config.cols
        ow, aw = config.operand_bits, config.acc_bits
        super().__init__({
            "weights": In(stream.Signature(data.ArrayLayout(signed(ow), cols))),
            "operands": In(stream.Signature(operand_layout(rows))),
            "results": Out(stream.Signature(data.ArrayLayout(signed(aw), cols))),
        })
        # Parts, added as submodules by elaborate (this file's `amaranth:` comment waives the
        # unused-elaboratable warning for them when the array itself is never elaborated).
        self._pes = [
            [ProcessingElement(operand_width=ow, acc_width=aw) for _ in range(cols)]
            for _ in range(rows)
        ]
        self._weight_queue = SyncFIFO(width=ow * cols, depth=WEIGHT_QUEUE_DEPTH)
        self._result_queue = CreditQueue(width=aw * cols, depth=self.result_depth)

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the array was built for."""
        return self._config

    @property
    def rows(self) -> int:
        """PE rows: the reduction (K) size of a tile."""
        return self._config.rows

    @property
    def cols(self) -> int:
        """PE columns: the output (N) size of a tile."""
        return self._config.cols

    @property
    def latency(self) -> int:
        """Cycles from accepting an operand row to presenting its result (no stalls, no hold)."""
        return ENTRY_STAGES + self.rows + self.cols + ProcessingElement.MAC_LATENCY

    @property
    def result_depth(self) -> int:
        """Rows the result queue holds: the credit limit on rows in flight plus rows queued."""
        return self.latency

    def elaborate(self, platform) -> Module:
        m = Module()
        rows, cols = self.rows, self.cols
        ow, aw = self._config.operand_bits, self._config.acc_bits
        pes = self._pes
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Weight queue: decouples weights.ready from the array's timing.
        m.submodules.weight_queue = self._weight_queue
        weight_in, weight_out = self._weight_queue.w_stream, self._weight_queue.r_stream
        wiring.connect(m, wiring.flipped(self.weights), weight_in)
        beat = data.ArrayLayout(signed(ow), cols)(weight_out.payload)

        # Credits: rows in the array, its output register and the result queue.
        m.submodules.result_queue = result_queue = self._result_queue
        queued, out = result_queue.w, result_queue.r
        depth = self.result_depth
        in_flight = Signal(range(depth + 1))
        # `enter` fans out to the row-0 DSP clock enable, the skew, the weight load strobes and
        # the credit counter: it is one LUT of flip-flops. The credit and shadow-full flags are
        # therefore registers, computed a cycle ahead from the counters' next values (the three
        # credit compares below use only the registered count).
        has_credit = Signal(init=1)  # in_flight < depth
        taken = Signal()  # a result row leaves on `results` this cycle

        # Operand input register: a row waits here until it may enter the array.
        in_valid = Signal()
        in_row = Signal(operand_layout(rows))
        loaded = Signal(range(rows + 1))  # weight beats in the shadow registers
        started = Signal()  # a tile is active (a `first` row has entered)
        shadow_full = Signal()  # loaded == rows
        enter = Signal()  # the row in the input register enters the array this cycle
        enter_first = Signal()
        drain = Signal()  # a weight beat leaves the queue for the shadow registers this cycle
        drain_row = Signal(range(max(rows, 2)))  # one bit at least, also for rows = 1
        loaded_next = Signal.like(loaded)
        m.d.comb += [
            enter.eq(in_valid & has_credit & Mux(in_row.first, shadow_full, started)),
            enter_first.eq(enter & in_row.first),
            self.operands.ready.eq(~in_valid | enter),
            drain.eq(weight_out.valid & (~shadow_full | enter_first)),
            drain_row.eq(Mux(enter_first, 0, loaded)),
            weight_out.ready.eq(drain),
            loaded_next.eq(Mux(enter_first, drain, loaded + drain)),
        ]
        m.d.sync += [loaded.eq(loaded_next), shadow_full.eq(loaded_next == rows)]
        with m.If(self.operands.valid & self.operands.ready):
            m.d.sync += [in_valid.eq(1), in_row.eq(self.operands.payload)]
        with m.Elif(enter):
            m.d.sync += in_valid.eq(0)
        with m.If(enter_first):
            m.d.sync += started.eq(1)
        # in_flight' = in_flight + enter - taken; has_credit' = in_flight' < depth.
        m.d.sync += [
            in_flight.eq(in_flight + enter - taken),
            has_credit.eq(Mux(
                enter == taken, in_flight < depth,
                Mux(enter, in_flight < depth - 1, in_flight < depth + 1),
            )),
        ]

        # Entry register: the row, its swap flag, the weight beat and the load strobes reach the
        # PEs one cycle after the entry decision, from flip-flops. The decision (one LUT of
        # flip-flops) then drives only these registers, not the DSP clock enables and shadow
        # registers spread over the die (their routes limited the array to 138 MHz).
        entry_data = Signal.like(in_row.data, reset_less=True)
        entry_swap = Signal()
        entry_w = Signal.like(beat, reset_less=True)
        entry_load = Signal(rows)
        m.d.sync += [
            entry_data.eq(in_row.data),
            entry_swap.eq(enter_first),
            entry_w.eq(beat),
            entry_load.eq(Cat(drain & (drain_row == r) for r in range(rows))),
        ]

        # Input skew: row r's operand reaches PE(r, 0) r cycles after row 0's. The delay lines
        # are packed, one register per stage (the same flip-flops as one line per row, in fewer,
        # wider registers: fewer statements per clock edge in the simulated model): stage k
        # holds the operands of rows k+1..rows-1 delayed k+1 cycles, row r in byte rows-1-r,
        # and drops its top byte (row k+1, to PE(k+1, 0)) on the way to stage k+1.
        skew_a = [Signal((rows - 1 - k) * ow, name=f"skew_a_{k}", reset_less=True)
                  for k in range(rows - 1)]
        for k in range(rows - 1):
            if k == 0:
                m.d.sync += skew_a[0].eq(Cat(entry_data[r] for r in reversed(range(1, rows))))
            else:
                m.d.sync += skew_a[k].eq(skew_a[k - 1][: (rows - 1 - k) * ow])
        # The swap flag reaches PE(r, c) r + c cycles after entry_swap, and every PE on that
        # anti-diagonal sees the same flag: one line of rows + cols - 2 flags serves them all,
        # instead of each PE forwarding its own copy (identical flip-flops, which Yosys merges
        # into this line anyway; in the simulated model, 30 registers with a reset per clock
        # edge instead of 256 on `default`).
        swap_line = [Signal(name=f"swap_line_{k}") for k in range(rows + cols - 2)]
        for k, flag in enumerate(swap_line):
            m.d.sync += flag.eq(entry_swap if k == 0 else swap_line[k - 1])
        for r in range(rows):
            if r == 0:
                a = entry_data[0]
            else:
                a = skew_a[r - 1][(rows - 1 - r) * ow:].as_signed()
            m.d.comb += pes[r][0].a_in.eq(a)
            for c in range(1, cols):
                m.d.comb += pes[r][c].a_in.eq(pes[r][c - 1].a_out)
            for c in range(cols):
                m.d.comb += pes[r][c].swap_in.eq(entry_swap if r + c == 0
                                                 else swap_line[r + c - 1])

        # Weight load: column c's weight reaches the PEs c cycles after the beat leaves the queue,
        # in step with the load strobe of the selected PE row, which reaches column c c cycles
        # after entry_load. The strobes are packed like the skew lines: stage k holds every
        # row's strobe delayed k + 1 cycles (the same flip-flops as each PE forwarding its own,
        # in cols - 1 registers instead of rows x cols).
        load_line = [Signal(rows, name=f"load_line_{k}") for k in range(cols - 1)]
        for k, stage in enumerate(load_line):
            m.d.sync += stage.eq(entry_load if k == 0 else load_line[k - 1])
        for c in range(cols):
            w = entry_w[c]
            for stage in range(c):
                w_next = Signal(signed(ow), name=f"wdelay_{c}_{stage}", reset_less=True)
                m.d.sync += w_next.eq(w)
                w = w_next
            for r in range(rows):
                m.d.comb += [pes[r][c].w_in.eq(w),
                             pes[r][c].load_in.eq(entry_load[r] if c == 0
                                                  else load_line[c - 1][r])]

        # Partial sums flow down the columns.
        for c in range(cols):
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)

        # Output de-skew: column c leaves the bottom row c cycles after column 0; delay it by
        # cols - 1 - c cycles, then one output register for the whole row.
        # Packed like the input skew: stage k holds columns 0..cols-2-k delayed k+1 cycles,
        # column c in word c, and drops its top word (column cols-2-k, done) on the way on.
        row_out = Signal(data.ArrayLayout(signed(aw), cols), reset_less=True)
        deskew = [Signal((cols - 1 - k) * aw, name=f"deskew_{k}", reset_less=True)
                  for k in range(cols - 1)]
        for k in range(cols - 1):
            if k == 0:
                m.d.sync += deskew[0].eq(Cat(pes[rows - 1][c].psum_out for c in range(cols - 1)))
            else:
                m.d.sync += deskew[k].eq(deskew[k - 1][: (cols - 1 - k) * aw])
        for c in range(cols):
            if c == cols - 1:
                m.d.sync += row_out[c].eq(pes[rows - 1][c].psum_out)
            else:
                m.d.sync += row_out[c].eq(deskew[cols - 2 - c][c * aw:])

        # A row entering in cycle e is in row_out in cycle e + pipeline_depth: PE(rows - 1, c)
        # sees it in e + ENTRY_STAGES + rows - 1 + c, the de-skew and row_out add cols - c.
        pipeline_depth = ENTRY_STAGES + rows + cols - 1 + ProcessingElement.MAC_LATENCY
        valid_line = Signal(pipeline_depth, name="valid_line")
        m.d.sync += valid_line.eq(Cat(enter, valid_line[:-1]))
        row_out_valid = valid_line[-1]

        # Output: the queue's oldest row if it holds any, else row_out directly. row_out goes into
        # the queue when it is not taken this cycle; the credits guarantee the queue has room.
        m.d.comb += [
            self.results.valid.eq(out.valid | row_out_valid),
            self.results.payload.eq(Mux(out.valid, out.payload, row_out)),
            out.ready.eq(self.results.ready),
            queued.payload.eq(row_out),
            queued.valid.eq(row_out_valid & (out.valid | ~self.results.ready)),
        ]
        m.d.comb += taken.eq(self.results.valid & self.results.ready)
        return m
