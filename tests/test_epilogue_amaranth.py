# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the epilogue with its segment table against ``hw.numeric``."""

# (The linter line above: the validation tests construct components that raise in __init__.)

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw import numeric
from hw.config import preset
from hw.epilogue import Epilogue, OutWidth
from hw.epilogue_unit import EpilogueUnit
from hw.numeric import PwlTable
from hw.segment_table import SHARED_LEVELS, SegmentTable, TableField
from tb.epilogue_tb import random_table
from tests.banked_memory_bench import run_to_end

INT32_MIN, INT32_MAX = numeric.int_range(32)
INT16_MIN, INT16_MAX = numeric.int_range(16)
OUT_BITS = {OutWidth.INT8: 8, OutWidth.INT16: 16, OutWidth.INT32: 32}
TAG_BITS = 8


def tiny(**changes):
    """The ``tiny`` preset (4 lanes, 8 functions of 64 segments) with ``changes``."""
    return preset("tiny").replace(**changes)


@dataclasses.dataclass
class Row:
    acc: list[int]
    mult: list[int]
    shift: list[int]
    fn: int
    out_width: OutWidth
    tag: int


def padded(table: PwlTable, segments: int) -> PwlTable:
    """``table`` with ``segments`` segments, padded as ``hw.isa.encode_pwl_table`` does."""
    pad = segments - table.segments
    return PwlTable(
        table.breakpoints + (INT32_MAX,) * pad,
        table.slopes + (table.slopes[-1],) * pad,
        table.intercepts + (table.intercepts[-1],) * pad,
        table.shift,
    )


def expected(row: Row, tables: dict[int, PwlTable]) -> list[int]:
    y = numeric.epilogue(
        np.array(row.acc), np.array(row.mult), np.array(row.shift), tables[row.fn],
        OUT_BITS[row.out_width],
    )
    return [int(v) for v in y]


class TB:
    """Owns the simulator of an :class:`EpilogueWithTable`; drivers are coroutines."""

    def __init__(self, config, *, seed=0, gap_prob=0.0, stall_prob=0.0):
        self.dut = EpilogueUnit(config, tag_bits=TAG_BITS)
        self.config = config
        self.rng = random.Random(seed)
        self.gap_prob = gap_prob
        self.stall_prob = stall_prob
        self.results: list[list[int]] = []
        self.tags: list[int] = []
        self.result_cycles: list[int] = []
        self.accept_cycles: list[int] = []

    async def write_table(self, ctx, fn: int, table: PwlTable, *, meta_last=False) -> None:
        """Write ``table`` (padded to ``pwl_segments``) into function ``fn``, one field per
        cycle, in the LOADT record order; with ``meta_last``, the fields of the shared ``meta``
        read last instead (the shared levels' breakpoints, then the shift)."""
        table = padded(table, self.config.pwl_segments)
        port = self.dut.table_write
        beats = [(TableField.SHIFT, 0, table.shift)]
        beats += [(TableField.BREAKPOINT, i, v) for i, v in enumerate(table.breakpoints)]
        beats += [(TableField.SLOPE, i, v) for i, v in enumerate(table.slopes)]
        beats += [(TableField.INTERCEPT, i, v) for i, v in enumerate(table.intercepts)]
        if meta_last:
            # Breakpoint i is at a shared level when i + 1 is a multiple of S / 2**SHARED_LEVELS.
            step = self.config.pwl_segments >> SHARED_LEVELS
            in_meta = [b for b in beats if b[0] == TableField.SHIFT
                       or (b[0] == TableField.BREAKPOINT and (b[1] + 1) % step == 0)]
            beats = [b for b in beats if b not in in_meta] + in_meta[1:] + in_meta[:1]
        for field, index, value in beats:
            ctx.set(port.payload, {"fn": fn, "field": field, "index": index, "value": value})
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def send_rows(self, ctx, rows: list[Row]) -> None:
        port = self.dut.rows
        for row in rows:
            while self.rng.random() < self.gap_prob:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.payload, {
                "acc": row.acc, "mult": row.mult, "shift": row.shift, "fn": row.fn,
                "out_width": row.out_width, "tag": row.tag,
            })
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def collect(self, ctx, count: int, max_cycles: int) -> None:
        port = self.dut.results
        rows = self.dut.rows
        cycle = 0
        while len(self.results) < count and cycle < max_cycles:
            ready = int(self.rng.random() >= self.stall_prob)
            ctx.set(port.ready, ready)
            _, _, valid, payload, accepted = await ctx.tick().sample(
                port.valid, port.payload, rows.valid & rows.ready)
            if accepted:
                self.accept_cycles.append(cycle)
            if valid and ready:
                self.results.append([int(v) for v in payload.data])
                self.tags.append(int(payload.tag))
                self.result_cycles.append(cycle)
            cycle += 1

    def run(self, tables: dict[int, PwlTable], rows: list[Row], during=None) -> None:
        """Load ``tables``, then stream ``rows`` through and collect their results, while
        writing the tables ``during`` (other functions) as LOADT may do concurrently."""
        loaded = []

        async def writer(ctx):
            for fn, table in tables.items():
                await self.write_table(ctx, fn, table)
            await ctx.tick().repeat(self.dut.table.write_latency)
            loaded.append(True)
            for fn, table in (during or {}).items():
                await self.write_table(ctx, fn, table)
            loaded.append("done")

        async def main(ctx):
            while not loaded:
                await ctx.tick()
            await self.collect(ctx, len(rows), max_cycles=50 * len(rows) + 200)
            while loaded[-1] != "done":
                await ctx.tick()

        async def sender(ctx):
            while not loaded:
                await ctx.tick()
            await self.send_rows(ctx, rows)

        run_to_end(self.dut, main, writer, sender)

    def check(self, tables, rows, during=None) -> None:
        self.run(tables, rows, during)
        assert len(self.results) == len(rows), "rows lost or pipeline hung"
        assert self.tags == [r.tag for r in rows], "rows reordered"
        for i, row in enumerate(rows):
            assert self.results[i] == expected(row, tables), (i, row)


def random_rows(rng: np.random.Generator, n: int, lanes: int, fns: list[int],
                near: dict[int, PwlTable] | None = None) -> list[Row]:
    """Rows of random accumulators and scales (every shift 0..47 and output width). With
    ``near``, half the lanes are ``x = v`` (multiplier 1, shift 0) at a breakpoint of the row's
    table or one off it, so every segment boundary gets hit."""
    rows = []
    for i in range(n):
        fn = int(rng.choice(fns))
        row = Row(
            acc=[int(v) for v in rng.integers(INT32_MIN, INT32_MAX + 1, lanes)],
            mult=[int(v) for v in rng.integers(INT16_MIN, INT16_MAX + 1, lanes)],
            shift=[int(v) for v in rng.integers(0, numeric.MAX_SHIFT + 1, lanes)],
            fn=fn,
            out_width=list(OutWidth)[i % 3],
            tag=i % (1 << TAG_BITS),
        )
        bp = near[fn].breakpoints if near else ()
        for lane in range(lanes):
            if bp and rng.random() < 0.5:
                x = int(rng.choice(bp)) + int(rng.integers(-1, 2))
                row.acc[lane], row.mult[lane], row.shift[lane] = (
                    min(max(x, INT32_MIN), INT32_MAX), 1, 0)
        rows.append(row)
    return rows


def test_rejects_bad_parameters():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 'tiny'"):
        Epilogue("tiny")
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 3"):
        SegmentTable(3)
    with pytest.raises(TypeError, match="tag_bits must be an integer, got 1.5"):
        Epilogue(tiny(), tag_bits=1.5)
    with pytest.raises(ValueError, match=r"tag_bits = 65: allowed range is 0..64"):
        Epilogue(tiny(), tag_bits=65)
    cfg = dataclasses.replace(tiny())
    object.__setattr__(cfg, "slope_bits", 18)
    with pytest.raises(ValueError, match="config.acc_bits = 32, config.slope_bits = 18"):
        Epilogue(cfg)


def test_parameters_are_read_only():
    cfg = tiny()
    dut = Epilogue(cfg, tag_bits=5)
    assert (dut.lanes, dut.tag_bits, dut.config) == (4, 5, cfg)
    # 1 input register + 6 requantise + 3 shared levels + 3 x 3 deeper levels + 2 table read
    # + 6 PWL; the output register, the result queue's RAM and its output ring add three.
    assert (dut.pipeline_depth, dut.latency, dut.result_depth) == (28, 31, 32)
    assert Epilogue(tiny(pwl_segments=256)).latency == 31 + 2 * 3
    with pytest.raises(AttributeError):
        dut.lanes = 8
    table = SegmentTable(cfg)
    assert (table.levels, table.write_latency, table.config) == (6, 2, cfg)


def test_rows_stream_back_to_back_at_one_per_cycle():
    cfg = tiny()
    rng = np.random.default_rng(1)
    tables = {0: PwlTable.relu(), 5: PwlTable.identity(shift=7)}
    rows = random_rows(rng, 40, cfg.cols, [0, 5])
    tb = TB(cfg)
    tb.check(tables, rows)
    n = len(rows)
    first_in, first_out = tb.accept_cycles[0], tb.result_cycles[0]
    assert tb.accept_cycles == list(range(first_in, first_in + n))
    assert tb.result_cycles == list(range(first_out, first_out + n))
    assert first_out - first_in == tb.dut.epilogue.latency


@pytest.mark.parametrize("seed", [0, 1])
def test_random_backpressure_and_gaps_lose_and_reorder_nothing(seed):
    cfg = tiny()
    rng = np.random.default_rng(seed)
    tables = {fn: random_table(rng, cfg.pwl_segments) for fn in (1, 2, 7)}
    rows = random_rows(rng, 150, cfg.cols, list(tables), near=tables)
    tb = TB(cfg, seed=seed, gap_prob=0.3, stall_prob=0.5)
    tb.check(tables, rows)


def test_output_stall_longer_than_the_pipeline():
    """``results`` not ready for many cycles: the credits stop the input, nothing is lost."""
    cfg = tiny()
    rng = np.random.default_rng(7)
    tables = {3: random_table(rng, cfg.pwl_segments)}
    rows = random_rows(rng, 80, cfg.cols, [3], near=tables)
    tb = TB(cfg, seed=3, stall_prob=0.97)
    tb.check(tables, rows)


def test_writing_another_function_while_rows_stream():
    cfg = tiny()
    rng = np.random.default_rng(11)
    tables = {4: random_table(rng, cfg.pwl_segments)}
    rows = random_rows(rng, 100, cfg.cols, [4], near=tables)
    during = {fn: random_table(rng, cfg.pwl_segments) for fn in (5, 3)}
    TB(cfg, seed=2).check(tables, rows, during=during)


def test_rows_right_after_rewriting_their_function_use_the_new_table():
    """A function rewritten (the shared levels' breakpoints and the shift last) and rows of it
    handshaken from the cycle after the last write's handshake on: every result is exact with
    the new table. The accelerator hands an EPI's rows over later still (the write fence holds
    LOADT's token until its writes landed, and the compute unit waits for the token), so this
    bounds how early the epilogue may read the table (the ``meta`` read, 5 cycles after a
    row's handshake, and `SegmentTable.write_latency`)."""
    cfg = tiny()
    rng = np.random.default_rng(13)
    old, new = (random_table(rng, cfg.pwl_segments) for _ in range(2))
    fn = 6
    rows_old = random_rows(rng, 20, cfg.cols, [fn], near={fn: old})
    rows_new = random_rows(rng, 40, cfg.cols, [fn], near={fn: new})
    for i, row in enumerate(rows_new):
        row.tag = 100 + i
    tb = TB(cfg)
    dut = tb.dut
    handshakes = {"write": [], "row": []}

    async def monitor(ctx):
        cycle = 0
        while True:
            _, _, write, row = await ctx.tick().sample(
                dut.table_write.valid & dut.table_write.ready, dut.rows.valid & dut.rows.ready)
            if write:
                handshakes["write"].append(cycle)
            if row:
                handshakes["row"].append(cycle)
            cycle += 1

    async def driver(ctx):
        await tb.write_table(ctx, fn, old)
        await ctx.tick().repeat(dut.table.write_latency)
        await tb.send_rows(ctx, rows_old)
        # The old table's reads end before the rewrite starts (an EPI's c2l token does this).
        await ctx.tick().repeat(dut.epilogue.latency + 5)
        await tb.write_table(ctx, fn, new, meta_last=True)
        await tb.send_rows(ctx, rows_new)

    async def main(ctx):
        await tb.collect(ctx, len(rows_old) + len(rows_new), max_cycles=2000)

    run_to_end(dut, main, driver, monitor)
    first_new = handshakes["row"][len(rows_old)]
    assert first_new == handshakes["write"][-1] + 1
    assert tb.tags == [r.tag for r in rows_old + rows_new]
    for i, row in enumerate(rows_old):
        assert tb.results[i] == expected(row, {fn: old}), (i, row)
    for i, row in enumerate(rows_new):
        assert tb.results[len(rows_old) + i] == expected(row, {fn: new}), (i, row)


def test_loaded_bits_follow_shift_writes_and_clear():
    cfg = tiny()
    table = SegmentTable(cfg)
    seen = []

    async def bench(ctx):
        async def write(fn, field, index=0, value=0):
            ctx.set(table.write.payload,
                    {"fn": fn, "field": field, "index": index, "value": value})
            ctx.set(table.write.valid, 1)
            await ctx.tick().until(table.write.ready)
            ctx.set(table.write.valid, 0)
            await ctx.tick().repeat(table.write_latency)
            seen.append(ctx.get(table.loaded))

        await write(6, TableField.BREAKPOINT, 3, 5)
        await write(6, TableField.SHIFT, 0, 47)
        await write(1, TableField.SHIFT, 0, 0)
        await write(1, TableField.SLOPE, 2, -3)
        ctx.set(table.clear, 1)
        await ctx.tick()
        ctx.set(table.clear, 0)
        seen.append(ctx.get(table.loaded))
        await write(2, TableField.SHIFT, 0, 1)

    run_to_end(table, bench)
    assert seen == [0, 1 << 6, (1 << 6) | 2, (1 << 6) | 2, 0, 1 << 2]


# Hypothesis at the corners: int32 / int16 limits, shifts 0 and 47, tied breakpoints (empty
# segments), breakpoints at the int32 limits, every output width.
INT32_CORNERS = [INT32_MIN, INT32_MIN + 1, -(1 << 16), -1, 0, 1, 1 << 16, INT32_MAX - 1, INT32_MAX]
int32s = st.one_of(st.sampled_from(INT32_CORNERS), st.integers(INT32_MIN, INT32_MAX),
                   st.integers(-300, 300))
int16s = st.one_of(st.sampled_from([INT16_MIN, INT16_MIN + 1, -1, 0, 1, INT16_MAX]),
                   st.integers(INT16_MIN, INT16_MAX))
shifts = st.one_of(st.sampled_from([0, 1, numeric.MAX_SHIFT - 1, numeric.MAX_SHIFT]),
                   st.integers(0, numeric.MAX_SHIFT))


@st.composite
def pwl_tables(draw, max_segments: int):
    n = draw(st.one_of(st.sampled_from([1, 2, max_segments]), st.integers(1, max_segments)))
    bp = sorted(draw(st.lists(int32s, min_size=n - 1, max_size=n - 1)))
    for i in draw(st.lists(st.integers(0, max(n - 3, 0)), max_size=n // 2)) if n > 2 else ():
        bp[i + 1] = bp[i]  # a tie: an empty segment
    return PwlTable(
        tuple(bp),
        tuple(draw(st.lists(int16s, min_size=n, max_size=n))),
        tuple(draw(st.lists(int32s, min_size=n, max_size=n))),
        draw(shifts),
    )


@st.composite
def lane_values(draw, table: PwlTable):
    """(acc, mult, shift) of one lane: random corners, or x = v at/next to a breakpoint."""
    if table.breakpoints and draw(st.booleans()):
        x = draw(st.sampled_from(table.breakpoints)) + draw(st.sampled_from([-1, 0, 1]))
        return min(max(x, INT32_MIN), INT32_MAX), 1, 0
    return draw(int32s), draw(int16s), draw(shifts)


@st.composite
def epilogue_cases(draw, config, max_rows: int):
    fns = draw(st.lists(st.integers(0, config.pwl_functions - 1), min_size=1, max_size=2,
                        unique=True))
    tables = {fn: draw(pwl_tables(config.pwl_segments)) for fn in fns}
    rows = []
    for i in range(draw(st.integers(1, max_rows))):
        fn = draw(st.sampled_from(fns))
        lanes = [draw(lane_values(tables[fn])) for _ in range(config.cols)]
        rows.append(Row(
            acc=[v[0] for v in lanes], mult=[v[1] for v in lanes], shift=[v[2] for v in lanes],
            fn=fn, out_width=draw(st.sampled_from(list(OutWidth))), tag=i,
        ))
    return tables, rows


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=epilogue_cases(tiny(), max_rows=12), seed=st.integers(0, 2**16))
def test_corners_match_numeric(case, seed):
    tables, rows = case
    TB(tiny(), seed=seed, stall_prob=0.3).check(tables, rows)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=epilogue_cases(tiny(), max_rows=40), seed=st.integers(0, 2**16))
def test_corners_match_numeric_long(case, seed):
    tables, rows = case
    TB(tiny(), seed=seed, gap_prob=0.2, stall_prob=0.3).check(tables, rows)


def test_unit_without_tag_exposes_the_loaded_bits():
    unit = EpilogueUnit(tiny(), tag_bits=0)
    assert unit.latency == unit.epilogue.latency == 31
    seen = []

    async def bench(ctx):
        ctx.set(unit.table_write.payload, {"fn": 5, "field": TableField.SHIFT, "value": 3})
        ctx.set(unit.table_write.valid, 1)
        await ctx.tick()
        ctx.set(unit.table_write.valid, 0)
        await ctx.tick().repeat(unit.table.write_latency)
        seen.append(ctx.get(unit.table_loaded))
        ctx.set(unit.table_clear, 1)
        await ctx.tick()
        seen.append(ctx.get(unit.table_loaded))

    run_to_end(unit, bench)
    assert seen == [1 << 5, 0]


def test_reset_with_rows_in_flight_emits_only_later_rows():
    """A reset while rows fill the pipeline and the result FIFO (results not ready): nothing
    from before it comes out, and the rows after it are exact. The data registers have no
    reset (only the valid line, the credits and the FIFO do), so this checks that no result
    reads a data register across a reset."""
    cfg = tiny()
    rng = np.random.default_rng(5)
    tables = {fn: random_table(rng, cfg.pwl_segments) for fn in (2, 6)}
    before = random_rows(rng, 40, cfg.cols, list(tables), near=tables)
    after = random_rows(rng, 30, cfg.cols, list(tables), near=tables)
    for i, row in enumerate(after):
        row.tag = 100 + i
    tb = TB(cfg, seed=4)
    dut = tb.dut
    reset = Signal()
    top = ResetInserter(reset)(dut)
    early, go = [], []

    async def bench(ctx):
        for fn, table in tables.items():
            await tb.write_table(ctx, fn, table)
        await ctx.tick().repeat(dut.table.write_latency)
        ctx.set(dut.results.ready, 0)
        # Fill the pipeline and the FIFO, then reset with rows at every stage.
        for row in before[:dut.epilogue.result_depth + 5]:
            ctx.set(dut.rows.payload, {
                "acc": row.acc, "mult": row.mult, "shift": row.shift, "fn": row.fn,
                "out_width": row.out_width, "tag": row.tag,
            })
            ctx.set(dut.rows.valid, 1)
            await ctx.tick()
        ctx.set(dut.rows.valid, 0)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        ctx.set(dut.results.ready, 1)
        for _ in range(dut.epilogue.latency + 5):
            _, _, valid = await ctx.tick().sample(dut.results.valid)
            early.append(int(valid))
        go.append(True)
        await tb.collect(ctx, len(after), max_cycles=50 * len(after) + 200)

    async def sender(ctx):
        while not go:
            await ctx.tick()
        await tb.send_rows(ctx, after)

    run_to_end(top, bench, sender)
    assert early == [0] * len(early), "a row from before the reset came out"
    assert tb.tags == [r.tag for r in after]
    for i, row in enumerate(after):
        assert tb.results[i] == expected(row, tables), (i, row)
