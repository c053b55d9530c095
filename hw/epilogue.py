# amaranth: UnusedElaboratable=no
"""The epilogue datapath: requantisation and PWL nonlinearity of one accumulator row per cycle.

Per lane (``C = cols`` lanes, one accumulator row per beat), bit-exact with
:func:`hw.numeric.epilogue` (``docs/isa.md``, "Epilogue arithmetic")::

    x   = sat32( round_shift(v * M, s) )
    seg = number of breakpoints <= x               (pipelined binary search)
    y   = sat_out( round_shift(k[seg] * x + b[seg], sh) )

Ports (``amaranth.lib.stream``):

``rows`` (in), payload :func:`epilogue_input_layout`
    ``acc``: ``C`` int32; ``mult``: ``C`` int16 and ``shift``: ``C`` x 6 bits (0..47; the scale
    entry of each lane, the same entry in every lane for ``scale_mode`` ROW); ``fn``: function;
    ``out_width``: :class:`OutWidth`; ``tag``: ``tag_bits`` bits carried through unchanged (e.g.
    the destination row).
``results`` (out), payload :func:`epilogue_output_layout`
    ``data``: ``C`` int32, each saturated to ``out_width`` and sign-extended; ``tag``.
``table`` (out), :func:`hw.segment_table.lookup_signature`
    Connect to :attr:`hw.segment_table.SegmentTable.lookup`.

Pipeline (cycle numbers after the input register; every stage has at most one multiplier or one
compare level in it)::

    1  v_lo * M, v_hi * M (two 16-bit partial products), 2**(s-1)
    2  (p_hi << 16) + p_lo          3  + 2**(s-1)
    4  >> 8 * s[5:3]                5  >> s[2:0]              6  sat32 -> x
    5      the shared ``meta`` read (addressed in stage 4)
    6..8   each lane's copies of the shared breakpoints (one level's nodes per stage)
    7..9   search levels 0..2: compare with a node of the lane's copies
    10..   search levels 3..L-1, three cycles each: address, registered read, compare
    +1..+3 slope/intercept address, registered read, output register (packed into the block
           RAM on ECP5 by scripts/ecp5_pack_outreg.py)
    +1..+6 as 1..6 for k * x + b (b + 2**(sh-1) computed beside the products, 2**(sh-1)
           decoded a stage ahead), sat to out_width
    +1     output register, then the result queue (hw.credit_queue.CreditQueue): its LUT RAM
           (+1) and the two-entry ring its read ends in (+1)

It never stalls: no register has a clock enable (an enable driven by ``results.ready`` would fan
out to every register). Backpressure is by credit: a row is accepted only while fewer than
:attr:`Epilogue.result_depth` rows are in flight or queued in the result queue, so every row
leaving the pipeline has a place. With ``results`` ready, one row per cycle flows end to end. The
queue is a :class:`hw.credit_queue.CreditQueue` (its RAM written every cycle: no fill level on a
write enable), behind an output register that keeps the latency of the FIFO it replaced. The
queue's RAM is one column slice per lane (``slices``), each read at its own copy of the read
pointer, and its read ends in a two-entry ring (``output_ring``): ``results`` leaves from the
ring's flip-flops (``payload`` through one 2:1 multiplexer), ``results.ready`` moves only the
ring's pointers, so the RAM's read ends in a flip-flop the placer can keep beside it and the
wire to the consumer (the compute unit, across the die) starts at one. That ring is one cycle of
:attr:`Epilogue.latency` and one credit.

Reset clears the credit counter, the valid line and the result queue; the data registers (rows,
products, search state, delay lines) have no reset, as a row's data reaches the queue only with
its valid bit and every stage is written by the row before it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.credit_queue import CreditQueue
from hw.dsp import PipelinedMultiplier
from hw.numeric import ACC_BITS, SCALE_BITS, SLOPE_BITS
from hw.segment_table import (
    SHARED_LEVELS,
    SHIFT_BITS,
    _check_config,
    _log2,
    lookup_signature,
)
from hw.target import kept_register

__all__ = ["Epilogue", "OutWidth", "epilogue_input_layout", "epilogue_output_layout"]

#: Width of the round-and-shift datapath: every intermediate fits in 49 signed bits.
WIDE_BITS = 49
#: Width of the partial products' split: v = v_hi * 2**16 + v_lo, v_lo unsigned.
SPLIT_BITS = 16
#: Stages of one multiply, round, shift and saturate (:func:`_round_mul_sat`).
ROUND_MUL_SAT_STAGES = 6
#: Stages from a lane's segment index to its slope and intercept in registers: address, the
#: block RAM's read, its output register (which then feeds the multiplier's input register).
SEGMENT_READ_STAGES = 3
#: Cycles from the output register's row to ``results``: the result queue's LUT RAM and its
#: output ring (:attr:`hw.credit_queue.CreditQueue.latency` with ``output_ring``).
RESULT_QUEUE_LATENCY = 2


class OutWidth(enum.Enum, shape=2):
    """Saturation width of a row's results: scratchpad (8), scale (16) or accumulator (32)."""

    INT8 = 0
    INT16 = 1
    INT32 = 2


def epilogue_input_layout(config: AcceleratorConfig, tag_bits: int = 0) -> data.StructLayout:
    """Payload of :attr:`Epilogue.rows` (see the module docs)."""
    lanes = config.cols
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(ACC_BITS), lanes),
        "mult": data.ArrayLayout(signed(SCALE_BITS), lanes),
        "shift": data.ArrayLayout(unsigned(SHIFT_BITS), lanes),
        "fn": unsigned(_log2(config.pwl_functions)),
        "out_width": OutWidth,
        "tag": unsigned(tag_bits),
    })


def epilogue_output_layout(config: AcceleratorConfig, tag_bits: int = 0) -> data.StructLayout:
    """Payload of :attr:`Epilogue.results`: ``data`` (``cols`` int32) and ``tag``."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(ACC_BITS), config.cols),
        "tag": unsigned(tag_bits),
    })


def _saturate(value, bits: int):
    """``value`` (signed) clamped to ``bits`` bits, as a ``bits``-bit signed value."""
    top = value[bits - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(fits, value[:bits].as_signed(), Mux(value[-1], lo, hi))


class Epilogue(wiring.Component):
    """Requantise, apply a PWL table and saturate one ``cols``-lane row per cycle.

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``cols`` (lanes), ``pwl_functions``, ``pwl_segments``, ``acc_bits`` (32),
        ``scale_bits`` (16), ``slope_bits`` (16).
    tag_bits : int
        Width of the ``tag`` carried from ``rows`` to ``results`` (0..64).

    Attributes
    ----------
    rows : In(stream.Signature(epilogue_input_layout(config, tag_bits)))
        Accumulator rows with their scale entries, function and output width.
    results : Out(stream.Signature(epilogue_output_layout(config, tag_bits)))
        Result rows in input order.
    table : Out(lookup_signature(config))
        Read ports of the segment table (:class:`hw.segment_table.SegmentTable`).
    """

    def __init__(self, config: AcceleratorConfig, *, tag_bits: int = 0) -> None:
        _check_config(config)
        if config.scale_bits != SCALE_BITS:
            raise ValueError(
                f"config.scale_bits = {config.scale_bits!r}: only {SCALE_BITS}-bit multipliers "
                "are supported"
            )
        if isinstance(tag_bits, bool) or not isinstance(tag_bits, int):
            raise TypeError(f"tag_bits must be an integer, got {tag_bits!r}")
        if not 0 <= tag_bits <= 64:
            raise ValueError(f"tag_bits = {tag_bits!r}: allowed range is 0..64")
        self._config = config
        self._tag_bits = tag_bits
        super().__init__({
            "rows": In(stream.Signature(epilogue_input_layout(config, tag_bits))),
            "results": Out(stream.Signature(epilogue_output_layout(config, tag_bits))),
            "table": Out(lookup_signature(config)),
        })
        self._result_queue = CreditQueue(
            width=epilogue_output_layout(config, tag_bits).size, depth=self.result_depth,
            slices=config.cols, output_ring=True,
        )
        assert self._result_queue.latency == RESULT_QUEUE_LATENCY

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the epilogue was built for."""
        return self._config

    @property
    def lanes(self) -> int:
        """Values per row: ``cols``."""
        return self._config.cols

    @property
    def tag_bits(self) -> int:
        """Width of the tag carried with each row."""
        return self._tag_bits

    @property
    def pipeline_depth(self) -> int:
        """Cycles from a row's handshake on ``rows`` until its result is computed."""
        levels = _log2(self._config.pwl_segments)
        search = SHARED_LEVELS + 3 * (levels - SHARED_LEVELS)
        return 1 + ROUND_MUL_SAT_STAGES + search + SEGMENT_READ_STAGES + ROUND_MUL_SAT_STAGES

    @property
    def latency(self) -> int:
        """Cycles from a row's handshake on ``rows`` until it is valid on ``results`` (no
        backpressure): the pipeline, the output register and the result queue's two cycles
        (its RAM and its output ring)."""
        return self.pipeline_depth + 1 + RESULT_QUEUE_LATENCY

    @property
    def result_depth(self) -> int:
        """Rows in flight plus rows queued (in the result queue's RAM and ring) at most: enough
        credits for one row per cycle."""
        return self.latency + 1

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self._config
        levels = _log2(cfg.pwl_segments)
        fn_bits = _log2(cfg.pwl_functions)
        table = self.table
        last = self.pipeline_depth - 1  # stage whose row enters the output register

        def reg(value, shape, name, reset_less=True):
            """A register loaded with ``value`` every cycle (no enable).

            Data registers (the default) have no reset: a row's data reaches the result queue
            only with its valid bit, and every stage's data is written by the row in the stage
            before it, so no result reads a value held across a (soft) reset. Only the valid
            line and the credit counter are reset. With no reset multiplexer in front of them
            they are plain D flip-flops on the FPGA and straight assignments in Verilator's
            clock-edge code (docs/simulation.md, "Speed").
            """
            r = Signal(shape, name=name, reset_less=reset_less)
            m.d.sync += r.eq(value)
            return r

        def ram_out(value, shape, name):
            """A block RAM's read data registered with nothing in between and no reset: the
            register that ``scripts/ecp5_pack_outreg.py`` moves into the RAM's output register."""
            return reg(value, shape, name)

        def line(value, shape, name, stage=0):
            """``value`` at ``stage``; ``line[s]`` is its copy delayed to stage ``s``."""
            return _Line(lambda v, s: reg(v, shape, f"{name}_s{s}"), value, stage)

        # Credits and the input register (stage 0).
        m.submodules.result_queue = queue = self._result_queue
        in_flight = Signal(range(self.result_depth + 1))
        accept = Signal()
        taken = Signal()
        m.d.comb += [
            self.rows.ready.eq(in_flight < self.result_depth),
            accept.eq(self.rows.valid & self.rows.ready),
            taken.eq(self.results.valid & self.results.ready),
        ]
        m.d.sync += in_flight.eq(in_flight + accept - taken)
        row = reg(self.rows.payload, epilogue_input_layout(cfg, self._tag_bits), "row")
        valid = _Line(lambda v, s: reg(v, 1, f"valid_s{s}", reset_less=False),
                      reg(accept, 1, "row_valid", reset_less=False), 0)
        tag = line(row.tag, unsigned(self._tag_bits), "tag")
        fn = line(row.fn, unsigned(fn_bits), "fn")
        out_width = line(row.out_width, OutWidth, "out_width")
        # The function's shift and shared breakpoints, read a stage before x exists (stage
        # `search`, where the requantisation ends): each lane compares with its own copy of a
        # level's nodes, loaded in the stage before that level's compare, so that no register
        # drives the compares of all lanes (one did: the block's critical path, docs/fpga.md).
        # The read is still addressed 5 cycles after the row's handshake, behind LOADT's writes
        # to the table (`SegmentTable.write_latency`, 2; the accelerator's write fence and
        # tokens order them further apart).
        search = ROUND_MUL_SAT_STAGES
        m.d.comb += table.meta_addr.eq(fn[search - 2])
        meta = table.meta_data
        table_shift = line(meta.shift, unsigned(SHIFT_BITS), "table_shift", search - 1)
        shared_bp = [line(meta.bp[i], signed(ACC_BITS), f"shared_bp{i}", search - 1)
                     for i in range(len(meta.bp))]

        def lane_copy(value, name):
            """``value`` a stage later in kept flip-flops of one lane (Yosys would merge the
            lanes' plain registers: their inputs are the same)."""
            return kept_register(m, value, platform, name)

        # The PWL's rounding half 2**(sh-1), decoded from the shared shift a stage ahead, in
        # each lane's own flip-flops (below): the bias add takes it from flip-flops.
        pwl_stage = search + SHARED_LEVELS + 3 * (levels - SHARED_LEVELS) + SEGMENT_READ_STAGES
        pwl_half = _half(table_shift[pwl_stage - 1])

        results = []
        for lane in range(self.lanes):
            # Requantisation, stages 0 -> `search`: x = sat32(round_shift(v * M, s)).
            stage = 0
            # (The multipliers register the input row's operands themselves, as `row` does.)
            x, stage = _round_mul_sat(
                m, reg, self.rows.payload.acc[lane], self.rows.payload.mult[lane],
                row.shift[lane], Const(0, 1), stage,
                lambda value, _: _saturate(value, ACC_BITS), out_width, f"rq{lane}",
            )
            assert stage == search
            # Search, shared levels: one compare per stage with a node of the meta read, from
            # this lane's copies of the level's nodes.
            j = Const(0, 0)
            for level in range(SHARED_LEVELS):
                first = (1 << level) - 1
                nodes = [lane_copy(shared_bp[first + i][stage - 1],
                                   f"bp{first + i}_c{lane}").as_signed()
                         for i in range(1 << level)]
                node = nodes[0] if level == 0 else _select(nodes, j)
                j = reg(Cat(x >= node, j), unsigned(level + 1), f"seg{lane}_l{level}")
                x = reg(x, signed(ACC_BITS), f"x{lane}_l{level}")
                stage += 1
            # Deeper levels: this lane's copy of the level; address, registered read, compare.
            for level in range(SHARED_LEVELS, levels):
                m.d.comb += getattr(table, f"level{level}_addr")[lane].eq(Cat(j, fn[stage]))
                node = ram_out(getattr(table, f"level{level}_data")[lane], signed(ACC_BITS),
                               f"bp{lane}_l{level}")
                for step in "ab":
                    j = reg(j, unsigned(level), f"seg{lane}_l{level}{step}")
                    x = reg(x, signed(ACC_BITS), f"x{lane}_l{level}{step}")
                j = reg(Cat(x >= node, j), unsigned(level + 1), f"seg{lane}_l{level}")
                x = reg(x, signed(ACC_BITS), f"x{lane}_l{level}")
                stage += 3
            # Slope and intercept of the segment: address, registered read, output register.
            m.d.comb += table.seg_addr[lane].eq(Cat(j, fn[stage]))
            k = ram_out(table.slope[lane], signed(SLOPE_BITS), f"k{lane}")
            b = ram_out(table.intercept[lane], signed(ACC_BITS), f"b{lane}")
            for step in "ab":
                x = reg(x, signed(ACC_BITS), f"x{lane}_kb{step}")
            stage += SEGMENT_READ_STAGES
            # PWL: y = sat_out(round_shift(k * x + b, sh)); the multipliers register k and x.
            # The table's shift and rounding half enter the lane in its own flip-flops: one
            # register of the shift for all lanes (Yosys merged the lanes' identical ones) fed
            # every lane's shifters, the next critical path once the search had copies.
            assert stage == pwl_stage, (stage, pwl_stage)
            y, stage = _round_mul_sat(
                m, reg, x, k, table_shift[stage], reg(b, signed(ACC_BITS), f"b{lane}_r"), stage,
                _saturate_to, out_width, f"pwl{lane}", half=lane_copy(pwl_half, f"half_c{lane}"),
                copy=lane_copy,
            )
            assert stage == last, (stage, last)
            results.append(y)

        m.d.comb += [
            queue.w.valid.eq(reg(valid[last], 1, "out_valid", reset_less=False)),
            queue.w.payload.eq(reg(Cat(*results, tag[last]), len(queue.w.payload), "out_row")),
            self.results.valid.eq(queue.r.valid),
            self.results.payload.eq(queue.r.payload),
            queue.r.ready.eq(self.results.ready),
        ]
        return m


class _Line:
    """A value and its delayed copies, built on demand: ``line[s]`` is the value at stage ``s``."""

    def __init__(self, delay, value, stage: int) -> None:
        self._delay = delay
        self._values = [value]
        self._stage = stage

    def __getitem__(self, stage: int):
        if stage < self._stage:
            raise ValueError(f"stage {stage} is before the value exists (stage {self._stage})")
        while len(self._values) <= stage - self._stage:
            self._values.append(self._delay(self._values[-1], self._stage + len(self._values)))
        return self._values[stage - self._stage]


def _select(values, index):
    """``values[index]`` as a balanced 2:1 mux tree (``len(values)`` a power of two)."""
    while len(values) > 1:
        values = [Mux(index[0], hi, lo) for lo, hi in zip(values[0::2], values[1::2], strict=True)]
        index = index[1:]
    return values[0]


def _saturate_to(value, width):
    """``value`` saturated to the :class:`OutWidth` ``width``, sign-extended to 32 bits."""
    return Mux(width == OutWidth.INT8, _saturate(value, 8),
               Mux(width == OutWidth.INT16, _saturate(value, 16), _saturate(value, ACC_BITS)))


def _half(shift):
    """The rounding half ``2**(shift-1)`` (0 for shift 0), ``WIDE_BITS`` wide."""
    return (Const(1, WIDE_BITS) << shift) >> 1


def _round_mul_sat(m, reg, a, mult, shift, addend, stage, saturate, out_width, name, half=None,
                   copy=None):
    """Six stages from ``stage``: ``saturate(round_shift(a * mult + addend, shift), width)``.

    ``a`` (int32) and ``mult`` (int16) are given one stage early, at ``stage - 1``: the
    multipliers' input registers take them into ``stage`` (a DSP block's own registers on
    ECP5, :class:`hw.dsp.PipelinedMultiplier`); ``shift``, ``addend`` and ``out_width`` are at
    ``stage``. The product is two 16-bit partial products (one DSP block each) added in the next
    stage, so no stage holds more than one multiplier and one adder. Returns the result and the
    stage it is in. ``half``, if given, is ``2**(shift-1)`` at ``stage`` (else decoded here).
    ``copy(value, name)``, if given, registers ``shift`` instead of ``reg``: a shift shared by
    all lanes then reaches each lane's shifters from a register of the lane's own.
    """
    lo_mul = PipelinedMultiplier(SPLIT_BITS + 1, SCALE_BITS)
    hi_mul = PipelinedMultiplier(ACC_BITS - SPLIT_BITS, SCALE_BITS)
    m.submodules[f"{name}_mul_lo"] = lo_mul
    m.submodules[f"{name}_mul_hi"] = hi_mul
    m.d.comb += [
        lo_mul.a.eq(a[:SPLIT_BITS]),  # unsigned low half, zero-extended into 17 signed bits
        lo_mul.b.eq(mult),
        hi_mul.a.eq(a[SPLIT_BITS:].as_signed()),
        hi_mul.b.eq(mult),
    ]
    lo, hi = lo_mul.p, hi_mul.p
    # addend + 2**(shift-1) (0 for shift 0): the rounding half, added before the shift.
    if half is None:
        half = _half(shift)
    bias = reg(addend + half, signed(WIDE_BITS), f"{name}_bias")
    if copy is None:
        sh = reg(shift, unsigned(SHIFT_BITS), f"{name}_sh1")
    else:
        sh = copy(shift, f"{name}_sh1")
    product = reg((hi << SPLIT_BITS) + lo, signed(WIDE_BITS), f"{name}_prod")
    bias = reg(bias, signed(WIDE_BITS), f"{name}_bias2")
    sh = reg(sh, unsigned(SHIFT_BITS), f"{name}_sh2")
    z = reg(product + bias, signed(WIDE_BITS), f"{name}_z")
    sh = reg(sh, unsigned(SHIFT_BITS), f"{name}_sh3")
    z = reg(z >> Cat(Const(0, 3), sh[3:]), signed(WIDE_BITS), f"{name}_zc")
    sh = reg(sh[:3], unsigned(3), f"{name}_sh4")
    z = reg(z >> sh, signed(WIDE_BITS), f"{name}_zf")
    y = reg(saturate(z, out_width[stage + 5]), signed(ACC_BITS), f"{name}_y")
    return y, stage + ROUND_MUL_SAT_STAGES
