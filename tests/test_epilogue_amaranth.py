# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the epilogue with its segment table against ``hw.numeric``."""

# (The linter line above: the validation tests construct components that raise in __init__.)

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw import numeric
from hw.config import preset
from hw.epilogue import Epilogue, OutWidth
from hw.numeric import PwlTable
from hw.segment_table import SegmentTable, TableField

INT32_MIN, INT32_MAX = numeric.int_range(32)
INT16_MIN, INT16_MAX = numeric.int_range(16)
OUT_BITS = {OutWidth.INT8: 8, OutWidth.INT16: 16, OutWidth.INT32: 32}
TAG_BITS = 8


def tiny(**changes):
    """The ``tiny`` preset (4 lanes, 8 functions of 64 segments) with ``changes``."""
    return preset("tiny").replace(**changes)


class EpilogueWithTable(wiring.Component):
    """The epilogue wired to its segment table: what the compute unit instantiates."""

    def __init__(self, config, tag_bits=TAG_BITS):
        self.epilogue = Epilogue(config, tag_bits=tag_bits)
        self.table = SegmentTable(config)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.epilogue = self.epilogue
        m.submodules.table = self.table
        wiring.connect(m, self.epilogue.table, self.table.lookup)
        return m


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
        self.dut = EpilogueWithTable(config)
        self.config = config
        self.rng = random.Random(seed)
        self.gap_prob = gap_prob
        self.stall_prob = stall_prob
        self.results: list[list[int]] = []
        self.tags: list[int] = []
        self.result_cycles: list[int] = []
        self.accept_cycles: list[int] = []

    async def write_table(self, ctx, fn: int, table: PwlTable) -> None:
        """Write ``table`` (padded to ``pwl_segments``) into function ``fn``, one field per
        cycle, in the LOADT record order."""
        table = padded(table, self.config.pwl_segments)
        port = self.dut.table.write
        beats = [(TableField.SHIFT, 0, table.shift)]
        beats += [(TableField.BREAKPOINT, i, v) for i, v in enumerate(table.breakpoints)]
        beats += [(TableField.SLOPE, i, v) for i, v in enumerate(table.slopes)]
        beats += [(TableField.INTERCEPT, i, v) for i, v in enumerate(table.intercepts)]
        for field, index, value in beats:
            ctx.set(port.payload, {"fn": fn, "field": field, "index": index, "value": value})
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def send_rows(self, ctx, rows: list[Row]) -> None:
        port = self.dut.epilogue.rows
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
        port = self.dut.epilogue.results
        rows = self.dut.epilogue.rows
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

    def run(self, tables: dict[int, PwlTable], rows: list[Row]) -> None:
        """Load ``tables``, then stream ``rows`` through and collect their results."""
        loaded = []

        async def writer(ctx):
            for fn, table in tables.items():
                await self.write_table(ctx, fn, table)
            await ctx.tick().repeat(self.dut.table.write_latency)
            loaded.append(True)

        async def main(ctx):
            while not loaded:
                await ctx.tick()
            await self.collect(ctx, len(rows), max_cycles=50 * len(rows) + 200)

        async def sender(ctx):
            while not loaded:
                await ctx.tick()
            await self.send_rows(ctx, rows)

        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(writer, background=True)
        sim.add_testbench(sender, background=True)
        sim.add_testbench(main)
        sim.run()

    def check(self, tables, rows) -> None:
        self.run(tables, rows)
        assert len(self.results) == len(rows), "rows lost or pipeline hung"
        assert self.tags == [r.tag for r in rows], "rows reordered"
        for i, row in enumerate(rows):
            assert self.results[i] == expected(row, tables), (i, row)


def random_rows(rng: np.random.Generator, n: int, lanes: int, fns: list[int]) -> list[Row]:
    """Rows of random accumulators and scales (every shift 0..47 and output width)."""
    rows = []
    for i in range(n):
        rows.append(Row(
            acc=[int(v) for v in rng.integers(INT32_MIN, INT32_MAX + 1, lanes)],
            mult=[int(v) for v in rng.integers(INT16_MIN, INT16_MAX + 1, lanes)],
            shift=[int(v) for v in rng.integers(0, numeric.MAX_SHIFT + 1, lanes)],
            fn=int(rng.choice(fns)),
            out_width=list(OutWidth)[i % 3],
            tag=i % (1 << TAG_BITS),
        ))
    return rows


def test_relu_and_identity_rows_back_to_back():
    cfg = tiny()
    rng = np.random.default_rng(1)
    tables = {0: PwlTable.relu(), 5: PwlTable.identity(shift=7)}
    rows = random_rows(rng, 40, cfg.cols, [0, 5])
    tb = TB(cfg)
    tb.check(tables, rows)
