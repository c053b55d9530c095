# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the systolic array at tiny sizes (the Verilator tests go bigger)."""

# (The linter line above: the validation tests construct components that raise in __init__.)

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.config import preset
from hw.systolic_array import SystolicArray
from tests.banked_memory_bench import run_to_end


def make_array(rows: int, cols: int) -> SystolicArray:
    return SystolicArray(preset("tiny").replace(rows=rows, cols=cols))


def random_tiles(rng, rows, cols, sizes):
    return [
        (rng.integers(-128, 128, (m, rows), dtype=np.int64),
         rng.integers(-128, 128, (rows, cols), dtype=np.int64))
        for m in sizes
    ]


async def offer(ctx, stream, payload) -> None:
    """Drive one beat of ``payload`` on ``stream`` and return after its handshake (valid stays
    high)."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)


def weight_beat(row) -> list[int]:
    return [int(x) for x in row]


def operand_beat(row, first: bool) -> dict:
    return {"data": [int(x) for x in row], "first": first}


@dataclasses.dataclass
class StreamRun:
    results: list[list[int]]
    result_cycles: list[int]  # cycle of each result's handshake
    operand_cycles: list[int]  # cycle of each operand row's handshake


def stream_tiles(dut, tiles, *, seed=0, gap_prob=0.0, stall_prob=0.0, max_cycles=2000,
                 weights_first=False) -> StreamRun:
    """Stream ``tiles`` (``(A, W)`` pairs) through ``dut``: weights and operands as fast as the
    array takes them (with random operand gaps and result backpressure when asked)."""
    rng = random.Random(seed)
    rows, cols = dut.rows, dut.cols
    n_rows = sum(len(a) for a, _ in tiles)
    run = StreamRun([], [], [])

    async def weights(ctx):
        for _, w in tiles:
            for row in w:
                await offer(ctx, dut.weights, weight_beat(row))
        ctx.set(dut.weights.valid, 0)

    async def operands(ctx):
        if weights_first:
            await ctx.tick().repeat(4 * rows)
        for a, _ in tiles:
            for i in range(len(a)):
                while rng.random() < gap_prob:
                    ctx.set(dut.operands.valid, 0)
                    await ctx.tick()
                await offer(ctx, dut.operands, operand_beat(a[i], i == 0))
        ctx.set(dut.operands.valid, 0)

    async def monitor(ctx):
        cycle = 0
        while len(run.results) < n_rows and cycle < max_cycles:
            ready = int(rng.random() >= stall_prob)
            ctx.set(dut.results.ready, ready)
            _, _, valid, payload, op_fire = await ctx.tick().sample(
                dut.results.valid, dut.results.payload,
                dut.operands.valid & dut.operands.ready)
            if op_fire:
                run.operand_cycles.append(cycle)
            if valid and ready:
                run.results.append([payload[c] for c in range(cols)])
                run.result_cycles.append(cycle)
            cycle += 1

    run_to_end(dut, monitor, weights, operands)
    return run


def expected(tiles) -> np.ndarray:
    return np.concatenate([a @ w for a, w in tiles]).astype(np.int32)


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 'default'"):
        SystolicArray("default")
    cfg = preset("tiny")
    object.__setattr__(cfg := dataclasses.replace(cfg), "rows", 0)
    with pytest.raises(ValueError, match=r"config.rows = 0: allowed range is 1..64"):
        SystolicArray(cfg)


def test_parameters_are_read_only():
    dut = make_array(2, 3)
    assert (dut.rows, dut.cols, dut.latency) == (2, 3, 10)
    assert dut.config == preset("tiny").replace(rows=2, cols=3)
    with pytest.raises(AttributeError):
        dut.rows = 4
    Simulator(dut)  # elaborates (and so uses) the whole hierarchy


@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (2, 3), (3, 2), (1, 1)])
def test_back_to_back_tiles_match_numpy_without_idle_cycles(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = random_tiles(rng, rows, cols, [rows, rows + 1, rows, 2 * rows + 1])
    dut = make_array(rows, cols)
    run = stream_tiles(dut, tiles, weights_first=True)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))
    n = len(run.results)
    # With the first weight tile loaded up front, every operand row entered on consecutive cycles
    # (later weight tiles loaded in the shadow of the computing ones) and results left likewise.
    assert run.operand_cycles == list(range(run.operand_cycles[0], run.operand_cycles[0] + n))
    assert run.result_cycles == list(range(run.result_cycles[0], run.result_cycles[0] + n))
    assert run.result_cycles[0] - run.operand_cycles[0] == dut.latency


@pytest.mark.parametrize(("rows", "height"), [(3, 1), (3, 2), (4, 2), (2, 5)])
def test_a_tile_takes_max_of_rows_and_height_cycles(rows, height):
    """Weight loads (``rows`` beats) hide behind tiles of ``height >= rows``; shorter tiles wait."""
    tiles = random_tiles(np.random.default_rng(rows + height), rows, 2, [height] * 5)
    run = stream_tiles(make_array(rows, 2), tiles, weights_first=True)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))
    # Results leave in entry order at a fixed latency, so their cycles show when rows entered.
    starts = run.result_cycles[::height]
    assert np.diff(starts).tolist() == [max(rows, height)] * (len(tiles) - 1)


def test_short_tiles_wait_for_their_weights():
    rows, cols = 3, 2
    rng = np.random.default_rng(5)
    tiles = random_tiles(rng, rows, cols, [1, 2, 1, 3])
    run = stream_tiles(make_array(rows, cols), tiles)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))


def test_extreme_values():
    rows, cols = 2, 2
    full = [np.full((2, 2), v, dtype=np.int64) for v in (-128, 127)]
    tiles = [(full[0], full[0]), (full[1], full[1]), (full[0], full[1]),
             (np.zeros((2, 2), np.int64), full[0]), (full[1], np.eye(2, dtype=np.int64))]
    run = stream_tiles(make_array(rows, cols), tiles)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))


@pytest.mark.parametrize("seed", [1, 2])
def test_backpressure_and_operand_gaps(seed):
    rows, cols = 2, 3
    rng = np.random.default_rng(seed)
    tiles = random_tiles(rng, rows, cols, [2, 3, 1, 4, 2])
    run = stream_tiles(make_array(rows, cols), tiles, seed=seed, gap_prob=0.3, stall_prob=0.4)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))


@settings(max_examples=10, deadline=None)
@given(
    shape=st.sampled_from([(1, 2), (2, 1), (2, 2), (3, 2)]),
    heights=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    gap_prob=st.sampled_from([0.0, 0.3]),
    stall_prob=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_random_streams_match_numpy(shape, heights, gap_prob, stall_prob, seed):
    rows, cols = shape
    tiles = random_tiles(np.random.default_rng(seed), rows, cols, heights)
    run = stream_tiles(make_array(rows, cols), tiles, seed=seed, gap_prob=gap_prob,
                       stall_prob=stall_prob)
    np.testing.assert_array_equal(np.array(run.results), expected(tiles))


def test_first_row_waits_until_the_weight_tile_is_complete():
    """Weights arrive one beat every few cycles: no result may come before all beats are in."""
    rows, cols = 3, 2
    rng = np.random.default_rng(9)
    (a, w), = random_tiles(rng, rows, cols, [2])
    dut = make_array(rows, cols)
    seen = {"weight_cycles": [], "operand_cycles": [], "results": []}

    async def weights(ctx):
        for row in w:
            await ctx.tick().repeat(5)
            await offer(ctx, dut.weights, weight_beat(row))
            ctx.set(dut.weights.valid, 0)

    async def operands(ctx):
        for i in range(len(a)):
            await offer(ctx, dut.operands, operand_beat(a[i], i == 0))
        ctx.set(dut.operands.valid, 0)

    async def monitor(ctx):
        ctx.set(dut.results.ready, 1)
        for cycle in range(60):
            _, _, weight_fire, operand_fire, valid, payload = await ctx.tick().sample(
                dut.weights.valid & dut.weights.ready, dut.operands.valid & dut.operands.ready,
                dut.results.valid, dut.results.payload)
            if weight_fire:
                seen["weight_cycles"].append(cycle)
            if operand_fire:
                seen["operand_cycles"].append(cycle)
            if valid:
                seen["results"].append([payload[c] for c in range(cols)])

    run_to_end(dut, monitor, weights, operands)
    np.testing.assert_array_equal(np.array(seen["results"]), a @ w)
    # The input register took the first row at once; the second only once the first entered the
    # array, which is after the last weight beat.
    assert len(seen["weight_cycles"]) == rows
    assert seen["operand_cycles"][0] < seen["weight_cycles"][0]
    assert seen["operand_cycles"][1] > seen["weight_cycles"][-1]


def test_rows_without_a_started_tile_are_never_computed():
    rows, cols = 2, 2
    dut = make_array(rows, cols)

    # A malformed stream: rows offered continuously, all with first = 0. The input register takes
    # one and holds it; nothing is computed and nothing comes out.
    accepted = []

    async def bench(ctx):
        ctx.set(dut.results.ready, 1)
        ctx.set(dut.operands.payload, {"data": [1] * rows, "first": 0})
        ctx.set(dut.operands.valid, 1)
        for _ in range(40):
            _, _, fire, valid = await ctx.tick().sample(
                dut.operands.valid & dut.operands.ready, dut.results.valid)
            accepted.append(fire)
            assert not valid

    run_to_end(dut, bench)
    assert sum(accepted) == 1


def test_backpressure_holds_rows_by_credit_not_by_stalling():
    """With ``results.ready`` low, the array takes ``result_depth`` rows (plus one in its input
    register) and then refuses more; every row it took comes out, in order, once ready rises."""
    rows, cols = 2, 3
    dut = make_array(rows, cols)
    rng = np.random.default_rng(5)
    (a, w), = random_tiles(rng, rows, cols, [3 * dut.result_depth])
    accepted = []
    results = []

    async def weights(ctx):
        for row in w:
            await offer(ctx, dut.weights, weight_beat(row))
        ctx.set(dut.weights.valid, 0)

    async def operands(ctx):
        for i in range(len(a)):
            await offer(ctx, dut.operands, operand_beat(a[i], i == 0))
            accepted.append(i)
        ctx.set(dut.operands.valid, 0)

    async def monitor(ctx):
        ctx.set(dut.results.ready, 0)
        await ctx.tick().repeat(4 * dut.latency)
        assert len(accepted) == dut.result_depth + 1
        ctx.set(dut.results.ready, 1)
        for _ in range(len(a) + 4 * dut.latency):
            _, _, valid, payload = await ctx.tick().sample(dut.results.valid, dut.results.payload)
            if valid:
                results.append([payload[c] for c in range(cols)])

    run_to_end(dut, monitor, weights, operands)
    np.testing.assert_array_equal(np.array(results), a @ w)


def test_parts_are_built_in_init_and_only_the_array_warns_when_unused():
    """The PEs and queues exist from ``__init__``; an array that is never elaborated draws one
    UnusedElaboratable warning (its own), not one per PE; an elaborated one draws none."""
    import subprocess
    import sys

    assert len(make_array(2, 3)._pes) == 2
    code = (
        "import gc, warnings\n"
        "from hw.config import preset\n"
        "from hw.rtl import verilog_text\n"
        "from hw.systolic_array import SystolicArray\n"
        # Amaranth reports unused elaboratables only once something has been elaborated.
        "with warnings.catch_warnings(record=True) as used:\n"
        "    warnings.simplefilter('always')\n"
        "    verilog_text(SystolicArray(preset('tiny')), 'systolic_array')\n"
        "    gc.collect()\n"
        "with warnings.catch_warnings(record=True) as unused:\n"
        "    warnings.simplefilter('always')\n"
        "    a = SystolicArray(preset('tiny'))\n"
        "    del a\n"
        "    gc.collect()\n"
        "print(len(unused), len(used), unused[0].category.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["1", "0", "UnusedElaboratable"]
