"""cocotb tests of the Verilated systolic array (module ``systolic_array``, hw/systolic_array.py).

Parameters come from the environment variable ``NMX_TB_PARAMS``, a JSON object:

``rows``, ``cols`` (required)
    The array's shape (must match the Verilog).
``seed`` (default 1)
    Seed of every random choice.
``tiles`` (default 8)
    Number of tiles in the back-to-back tests.

The ``back_to_back*`` tests write their cycle counts to ``metrics.json`` in the run folder (the
current directory of the simulation), keyed by test name.

The reusable parts are :class:`StreamSource`, :class:`StreamSink` and :class:`TB`, in the style of
cocotbext-axi: endpoints own a queue of payloads, ``TB`` owns the clock, the reset and one clocked
coroutine that drives every endpoint in the falling-edge half of the cycle and samples the
handshakes (after everything settled, :class:`~cocotb.triggers.ReadOnly`) that take effect at the
next rising edge. That makes the handshake accounting independent of how a simulator orders
events at the rising edge.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge

OPERAND_BITS = 8


def tb_params() -> dict:
    """The test parameters from ``NMX_TB_PARAMS`` (``rows`` and ``cols`` are required)."""
    params = {"seed": 1, "tiles": 8, **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    missing = [k for k in ("rows", "cols") if k not in params]
    if missing:
        raise ValueError(f"NMX_TB_PARAMS lacks {missing}: got {params}")
    return params


def pack_int8(values) -> int:
    """Pack int8 values into one integer, element ``i`` at bits ``8i .. 8i+7``."""
    return int.from_bytes(np.asarray(values, dtype=np.int8).tobytes(), "little")


def unpack_int32(value: int, count: int) -> np.ndarray:
    """Unpack ``count`` int32 fields (field ``i`` at bits ``32i``) from one integer."""
    return np.frombuffer(value.to_bytes(4 * count, "little"), dtype="<i4").copy()


class StreamSource:
    """Drives a valid/ready stream (``<prefix>__valid``, ``__ready``, ``__payload``).

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Port name prefix (Amaranth joins interface members with ``__``).
    gap_prob : float
        Probability of holding ``valid`` low for a cycle before each beat.
    rng : random.Random
        Source of the gaps.
    """

    def __init__(self, dut, prefix: str, gap_prob: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.gap_prob = gap_prob
        self.rng = rng or random.Random(0)
        self.queue: deque[int] = deque()
        self.fire_cycles: list[int] = []
        self._offering = False
        self._payload: int | None = None
        self.valid.value = 0

    def send(self, payloads) -> None:
        """Queue packed payloads (ints)."""
        self.queue.extend(payloads)

    @property
    def idle(self) -> bool:
        return not self.queue

    def drive(self) -> None:
        offer = bool(self.queue) and not (self.gap_prob and self.rng.random() < self.gap_prob)
        # Write only what changes: every write is a simulator call.
        if offer and self.queue[0] != self._payload:
            self._payload = self.queue[0]
            self.payload.value = self._payload
        if offer != self._offering:
            self.valid.value = int(offer)
            self._offering = offer

    def observe(self, cycle: int) -> None:
        if self._offering and self.ready.value:
            self.queue.popleft()
            self.fire_cycles.append(cycle)


class StreamSink:
    """Receives a valid/ready stream, with ``ready`` low with probability ``stall_prob``."""

    def __init__(self, dut, prefix: str, stall_prob: float = 0.0,
                 rng: random.Random | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.stall_prob = stall_prob
        self.rng = rng or random.Random(0)
        self.received: list[int] = []
        self.fire_cycles: list[int] = []
        self._ready = False
        self.ready.value = 0

    def drive(self) -> None:
        ready = not (self.stall_prob and self.rng.random() < self.stall_prob)
        if ready != self._ready:
            self.ready.value = int(ready)
            self._ready = ready

    def observe(self, cycle: int) -> None:
        if self._ready and self.valid.value:
            self.received.append(int(self.payload.value))
            self.fire_cycles.append(cycle)


class TB:
    """Clock, reset and the three streams of the systolic array.

    Parameters
    ----------
    dut : cocotb handle
        The ``systolic_array`` top level.
    rows, cols : int
        The array's shape.
    seed : int
        Seed of the random gaps and stalls.
    gap_prob, stall_prob : float
        Operand/weight ``valid`` gap probability and result ``ready`` stall probability.
    """

    def __init__(self, dut, rows: int, cols: int, seed: int = 1, gap_prob: float = 0.0,
                 stall_prob: float = 0.0):
        self.dut, self.rows, self.cols = dut, rows, cols
        self.log = dut._log
        rng = random.Random(seed)
        self.weights = StreamSource(dut, "weights", gap_prob, random.Random(rng.random()))
        self.operands = StreamSource(dut, "operands", gap_prob, random.Random(rng.random()))
        self.results = StreamSink(dut, "results", stall_prob, random.Random(rng.random()))
        self.cycle = 0
        self._wait: tuple[int, int, Event] | None = None
        self._endpoints = (self.weights, self.operands, self.results)
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        cocotb.start_soon(self._clocked())

    async def _clocked(self) -> None:
        falling, settled = FallingEdge(self.dut.clk), ReadOnly()
        endpoints = self._endpoints
        while True:
            await falling
            for ep in endpoints:
                ep.drive()
            await settled
            for ep in endpoints:
                ep.observe(self.cycle)
            self.cycle += 1
            if self._wait is not None:
                count, deadline, event = self._wait
                if len(self.results.received) >= count or self.cycle >= deadline:
                    self._wait = None
                    event.set()

    def load_tile(self, weight: np.ndarray, operand: np.ndarray) -> None:
        """Queue one tile: ``rows`` weight beats and the operand rows (first row flagged)."""
        if weight.shape != (self.rows, self.cols) or operand.shape[1:] != (self.rows,):
            raise ValueError(f"tile shapes {operand.shape} @ {weight.shape} do not fit the array")
        self.weights.send(pack_int8(row) for row in weight)
        first = 1 << (self.rows * OPERAND_BITS)
        self.operands.send(
            pack_int8(row) | (first if i == 0 else 0) for i, row in enumerate(operand)
        )

    async def wait_results(self, count: int, timeout_cycles: int) -> np.ndarray:
        """Wait until ``count`` result rows arrived; return them as an int32 array."""
        if len(self.results.received) < count:
            event = Event()
            self._wait = (count, self.cycle + timeout_cycles, event)
            await event.wait()
        if len(self.results.received) < count:
            raise AssertionError(
                f"timeout: {len(self.results.received)} of {count} result rows after "
                f"{timeout_cycles} cycles (weights left {len(self.weights.queue)}, operands "
                f"left {len(self.operands.queue)})"
            )
        return np.array([unpack_int32(v, self.cols) for v in self.results.received])

    async def expect_no_more_results(self, cycles: int) -> None:
        """Fail if another result row arrives within ``cycles`` cycles."""
        count = len(self.results.received)
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        extra = len(self.results.received) - count
        assert extra == 0, f"{extra} unexpected result rows after the last expected one"

    def check(self, got: np.ndarray, expected: np.ndarray) -> None:
        """Compare result rows with NumPy's; name the first mismatching row."""
        assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
        bad = np.flatnonzero((got != expected).any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise AssertionError(
                f"{bad.size} of {len(got)} result rows differ; first row {i}: got {got[i]}, "
                f"expected {expected[i]}"
            )


def reference(tiles) -> np.ndarray:
    """NumPy's int32 results of ``(weight, operand)`` tiles, in streaming order."""
    return np.concatenate([(a.astype(np.int64) @ w).astype(np.int32) for w, a in tiles])


def random_tile(rng: np.random.Generator, rows: int, cols: int, m: int):
    return (rng.integers(-128, 128, (rows, cols), dtype=np.int64),
            rng.integers(-128, 128, (m, rows), dtype=np.int64))


async def run_tiles(tb: TB, tiles, preload: bool = False) -> np.ndarray:
    """Stream ``tiles`` back to back and check every result row; return the results.

    With ``preload`` the first weight tile is loaded before any operand is offered, so the
    operand stream is limited by the array alone from its first row on.
    """
    if preload:
        tb.weights.send(pack_int8(row) for row in tiles[0][0])
        while not tb.weights.idle:
            await RisingEdge(tb.dut.clk)
        for _ in range(2):
            await RisingEdge(tb.dut.clk)
        a0 = tiles[0][1]
        first = 1 << (tb.rows * OPERAND_BITS)
        tb.operands.send(pack_int8(row) | (first if i == 0 else 0) for i, row in enumerate(a0))
        for w, a in tiles[1:]:
            tb.load_tile(w, a)
    else:
        for w, a in tiles:
            tb.load_tile(w, a)
    expected = reference(tiles)
    budget = 20 * (len(expected) + len(tiles) * tb.rows + tb.rows + tb.cols + 10)
    got = await tb.wait_results(len(expected), budget)
    tb.check(got, expected)
    await tb.expect_no_more_results(2 * (tb.rows + tb.cols + 4))
    return got


def record_metrics(name: str, values: dict) -> None:
    path = Path("metrics.json")
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = values
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def throughput(tb: TB, tiles) -> dict:
    """Cycle counts of a back-to-back run, from the handshake cycles."""
    rows_total = sum(len(a) for _, a in tiles)
    ops = tb.operands.fire_cycles
    res = tb.results.fire_cycles
    # The input register takes a row one cycle before it enters, and the first row of a run
    # waits for its weights, so steady state is measured from the second row on.
    steady_cycles = ops[-1] - ops[1] + 1
    total_cycles = res[-1] - ops[0] + 1
    macs = rows_total * tb.rows * tb.cols
    return {
        "rows": tb.rows, "cols": tb.cols, "tiles": len(tiles), "operand_rows": rows_total,
        "macs": macs,
        "steady_state_cycles": steady_cycles,
        "steady_state_macs_per_cycle": (rows_total - 1) * tb.rows * tb.cols / steady_cycles,
        "total_cycles": total_cycles,
        "total_macs_per_cycle": macs / total_cycles,
        "peak_macs_per_cycle": tb.rows * tb.cols,
        "steady_state_utilisation": (rows_total - 1) / steady_cycles,
        "total_utilisation": rows_total / total_cycles,
    }


@cocotb.test()
async def random_tiles(dut):
    """Random int8 tiles of several heights (shorter and taller than the array)."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    rng = np.random.default_rng(p["seed"])
    tb = TB(dut, rows, cols, p["seed"])
    await tb.reset()
    heights = [rows, 1, 2 * rows + 3, max(1, rows // 2), rows + 1, 3]
    await run_tiles(tb, [random_tile(rng, rows, cols, m) for m in heights])


@cocotb.test()
async def extremes(dut):
    """All -128, all 127, -128 x 127, zeros and identities, in both operands."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    rng = np.random.default_rng(p["seed"] + 1)
    tb = TB(dut, rows, cols, p["seed"])
    await tb.reset()
    m = rows + 2

    def full(shape, v):
        return np.full(shape, v, dtype=np.int64)

    eye_w = np.eye(rows, cols, dtype=np.int64)
    eye_a = np.eye(m, rows, dtype=np.int64)
    rand_w, rand_a = random_tile(rng, rows, cols, m)
    tiles = [
        (full((rows, cols), -128), full((m, rows), -128)),
        (full((rows, cols), 127), full((m, rows), 127)),
        (full((rows, cols), 127), full((m, rows), -128)),
        (full((rows, cols), -128), full((m, rows), 127)),
        (full((rows, cols), 0), rand_a),
        (rand_w, full((m, rows), 0)),
        (eye_w, rand_a),
        (rand_w, eye_a),
        (-eye_w * 128, full((m, rows), -128)),
    ]
    got = await run_tiles(tb, tiles)
    assert got[:m].max() == rows * 128 * 128


@cocotb.test()
async def back_to_back(dut):
    """Tiles of exactly ``rows`` operand rows, no idle cycle between them: every row checked,
    operands accepted on consecutive cycles, and the cycle counts recorded."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    rng = np.random.default_rng(p["seed"] + 2)
    tb = TB(dut, rows, cols, p["seed"])
    await tb.reset()
    tiles = [random_tile(rng, rows, cols, rows) for _ in range(p["tiles"])]
    await run_tiles(tb, tiles, preload=True)
    ops = tb.operands.fire_cycles
    idle = [(a, b) for a, b in zip(ops, ops[1:], strict=False) if b != a + 1]
    assert not idle, f"operand stream had idle cycles between handshakes: {idle[:5]}"
    res = tb.results.fire_cycles
    assert res == list(range(res[0], res[0] + len(res))), "result rows were not consecutive"
    metrics = throughput(tb, tiles)
    record_metrics("back_to_back", metrics)
    tb.log.info("back-to-back %dx%d: %s", rows, cols, metrics)


@cocotb.test()
async def back_to_back_with_stalls(dut):
    """Back-to-back tiles with random result backpressure and random gaps on both inputs."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    rng = np.random.default_rng(p["seed"] + 3)
    tb = TB(dut, rows, cols, p["seed"], gap_prob=0.25, stall_prob=0.3)
    await tb.reset()
    heights = [rows, rows + 2, 1, rows, 2 * rows]
    tiles = [random_tile(rng, rows, cols, m) for m in heights]
    await run_tiles(tb, tiles)
    record_metrics("back_to_back_with_stalls", throughput(tb, tiles))


@cocotb.test()
async def first_waits_for_weights(dut):
    """A tile's first row is held until all its weight beats arrived, which come slowly."""
    p = tb_params()
    rows, cols = p["rows"], p["cols"]
    rng = np.random.default_rng(p["seed"] + 4)
    tb = TB(dut, rows, cols, p["seed"])
    await tb.reset()
    tb.weights.gap_prob = 0.8
    tiles = [random_tile(rng, rows, cols, m) for m in (2, rows + 1, 1)]
    await run_tiles(tb, tiles)
    # The second operand row is accepted only once the first entered the array, which needs
    # every beat of the first weight tile.
    assert tb.operands.fire_cycles[1] > tb.weights.fire_cycles[rows - 1]
