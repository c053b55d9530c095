"""cocotb tests of the Verilated epilogue unit (module ``epilogue_unit``, hw/epilogue_unit.py).

Parameters come from the environment variable ``NMX_TB_PARAMS``, a JSON object: ``config`` (an
:class:`hw.config.AcceleratorConfig` as a dict, required; must match the Verilog), ``tag_bits``
(required), ``seed`` (default 1), ``rows`` (default 2000, rows of the random sweep).

Payloads are packed and unpacked with the Amaranth layouts of the ports themselves
(``hw.epilogue.epilogue_input_layout`` ...), so the bit positions are defined once. Endpoints
and the clocked driver loop are those of ``tb/systolic_array_tb.py``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import Const
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge

from hw import numeric
from hw.config import AcceleratorConfig
from hw.epilogue import OutWidth, epilogue_input_layout, epilogue_output_layout
from hw.numeric import PwlTable
from hw.segment_table import TableField, table_write_layout
from tb.systolic_array_tb import StreamSink, StreamSource

INT32_MIN, INT32_MAX = numeric.int_range(32)
INT16_MIN, INT16_MAX = numeric.int_range(16)
OUT_BITS = {OutWidth.INT8: 8, OutWidth.INT16: 16, OutWidth.INT32: 32}


def tb_params() -> dict:
    params = {"seed": 1, "rows": 2000, **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    missing = [k for k in ("config", "tag_bits") if k not in params]
    if missing:
        raise ValueError(f"NMX_TB_PARAMS lacks {missing}: got {params}")
    return params


def pack(layout, value: dict) -> int:
    """The bits of ``value`` in ``layout``, as a non-negative integer."""
    return Const.cast(layout.const(value)).value & ((1 << layout.size) - 1)


def random_table(rng: np.random.Generator, segments: int) -> PwlTable:
    """1..segments segments; random breakpoints with ties and int32-limit ones."""
    n = int(rng.integers(1, segments + 1))
    bp = rng.integers(INT32_MIN, INT32_MAX + 1, n - 1)
    if n > 2:
        ties = rng.integers(0, n - 1, n // 4)
        bp[ties] = bp[(ties + 1) % (n - 1)]
        bp[rng.integers(0, n - 1)] = rng.choice([INT32_MIN, INT32_MAX])
    return PwlTable(
        tuple(int(v) for v in np.sort(bp)),
        tuple(int(v) for v in rng.integers(INT16_MIN, INT16_MAX + 1, n)),
        tuple(int(v) for v in rng.integers(INT32_MIN, INT32_MAX + 1, n)),
        int(rng.integers(0, numeric.MAX_SHIFT + 1)),
    )


def padded(table: PwlTable, segments: int) -> PwlTable:
    pad = segments - table.segments
    return PwlTable(table.breakpoints + (INT32_MAX,) * pad,
                    table.slopes + (table.slopes[-1],) * pad,
                    table.intercepts + (table.intercepts[-1],) * pad, table.shift)


class TB:
    """Clock, reset and the three streams of ``epilogue_unit``."""

    def __init__(self, dut, config: AcceleratorConfig, tag_bits: int, seed: int,
                 gap_prob: float = 0.0, stall_prob: float = 0.0):
        self.dut, self.config, self.tag_bits = dut, config, tag_bits
        rng = random.Random(seed)
        self.table_write = StreamSource(dut, "table_write", 0.0, random.Random(rng.random()))
        self.rows = StreamSource(dut, "rows", gap_prob, random.Random(rng.random()))
        self.results = StreamSink(dut, "results", stall_prob, random.Random(rng.random()))
        self.in_layout = epilogue_input_layout(config, tag_bits)
        self.out_layout = epilogue_output_layout(config, tag_bits)
        self.write_layout = table_write_layout(config)
        self.cycle = 0
        self._wait: tuple[int, int, Event] | None = None
        self._endpoints = (self.table_write, self.rows, self.results)
        dut.table_clear.value = 0
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        cocotb.start_soon(self._clocked())

    async def _clocked(self) -> None:
        falling, settled = FallingEdge(self.dut.clk), ReadOnly()
        while True:
            await falling
            for ep in self._endpoints:
                ep.drive()
            await settled
            for ep in self._endpoints:
                ep.observe(self.cycle)
            self.cycle += 1
            if self._wait is not None:
                count, deadline, event = self._wait
                if len(self.results.received) >= count or self.cycle >= deadline:
                    self._wait = None
                    event.set()

    async def load_tables(self, tables: dict[int, PwlTable]) -> None:
        """Write every table field by field (LOADT order) and wait until they are visible."""
        for fn, table in tables.items():
            t = padded(table, self.config.pwl_segments)
            beats = [(TableField.SHIFT, 0, t.shift)]
            beats += [(TableField.BREAKPOINT, i, v) for i, v in enumerate(t.breakpoints)]
            beats += [(TableField.SLOPE, i, v) for i, v in enumerate(t.slopes)]
            beats += [(TableField.INTERCEPT, i, v) for i, v in enumerate(t.intercepts)]
            self.table_write.send(
                pack(self.write_layout, {"fn": fn, "field": f, "index": i, "value": v})
                for f, i, v in beats
            )
        while not self.table_write.idle:
            await RisingEdge(self.dut.clk)
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        loaded = int(self.dut.table_loaded.value)
        assert loaded == sum(1 << fn for fn in tables), f"table_loaded = {loaded:#x}"

    def send_rows(self, rows: list[dict]) -> None:
        self.rows.send(pack(self.in_layout, row) for row in rows)

    async def wait_results(self, count: int, timeout_cycles: int) -> list:
        if len(self.results.received) < count:
            event = Event()
            self._wait = (count, self.cycle + timeout_cycles, event)
            await event.wait()
        got = self.results.received
        assert len(got) >= count, f"timeout: {len(got)} of {count} rows"
        return [self.out_layout.from_bits(v) for v in got[:count]]


def random_rows(rng: np.random.Generator, n: int, lanes: int, tables: dict[int, PwlTable],
                tag_bits: int) -> list[dict]:
    """Random rows; half the lanes are ``x = v`` at or next to a breakpoint of the row's table."""
    fns = list(tables)
    rows = []
    for i in range(n):
        fn = int(rng.choice(fns))
        acc = [int(v) for v in rng.integers(INT32_MIN, INT32_MAX + 1, lanes)]
        mult = [int(v) for v in rng.integers(INT16_MIN, INT16_MAX + 1, lanes)]
        shift = [int(v) for v in rng.integers(0, numeric.MAX_SHIFT + 1, lanes)]
        bp = tables[fn].breakpoints
        for lane in range(lanes):
            if bp and rng.random() < 0.5:
                x = int(rng.choice(bp)) + int(rng.integers(-1, 2))
                acc[lane], mult[lane], shift[lane] = min(max(x, INT32_MIN), INT32_MAX), 1, 0
        rows.append({"acc": acc, "mult": mult, "shift": shift, "fn": fn,
                     "out_width": list(OutWidth)[int(rng.integers(3))],
                     "tag": i % (1 << tag_bits)})
    return rows


def expected(row: dict, tables: dict[int, PwlTable]) -> list[int]:
    y = numeric.epilogue(np.array(row["acc"]), np.array(row["mult"]), np.array(row["shift"]),
                         tables[row["fn"]], OUT_BITS[row["out_width"]])
    return [int(v) for v in y]


async def _sweep(dut, gap_prob: float, stall_prob: float) -> dict:
    p = tb_params()
    config = AcceleratorConfig.from_dict(p["config"])
    rng = np.random.default_rng(p["seed"])
    tb = TB(dut, config, p["tag_bits"], p["seed"], gap_prob, stall_prob)
    await tb.reset()
    tables = {fn: random_table(rng, config.pwl_segments) for fn in range(config.pwl_functions)}
    await tb.load_tables(tables)
    rows = random_rows(rng, p["rows"], config.cols, tables, p["tag_bits"])
    start = tb.cycle
    tb.send_rows(rows)
    got = await tb.wait_results(len(rows), timeout_cycles=20 * len(rows) + 1000)
    mismatches = 0
    for i, (row, out) in enumerate(zip(rows, got, strict=True)):
        want = expected(row, tables)
        have = [int(v) for v in out.data]
        assert int(out.tag) == row["tag"], f"row {i}: tag {int(out.tag)}, expected {row['tag']}"
        if have != want:
            mismatches += 1
            if mismatches <= 5:
                dut._log.error(f"row {i} {row}: got {have}, expected {want}")
    assert mismatches == 0, f"{mismatches} of {len(rows)} rows differ"
    return {"rows": len(rows), "cycles": tb.results.fire_cycles[-1] - start + 1,
            "accept_cycles": tb.rows.fire_cycles, "result_cycles": tb.results.fire_cycles}


@cocotb.test()
async def random_sweep_back_to_back(dut):
    """Every function loaded, random rows with no gaps: bit-exact, one row per cycle."""
    m = await _sweep(dut, 0.0, 0.0)
    acc, res = m["accept_cycles"], m["result_cycles"]
    assert acc == list(range(acc[0], acc[0] + m["rows"])), "an input row waited"
    assert res == list(range(res[0], res[0] + m["rows"])), "a result row was late"
    dut._log.info(f"{m['rows']} rows in {m['cycles']} cycles (latency {res[0] - acc[0]})")


@cocotb.test()
async def random_sweep_with_backpressure(dut):
    """The same under input gaps (20 %) and result backpressure (50 %)."""
    await _sweep(dut, 0.2, 0.5)
