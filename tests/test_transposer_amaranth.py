# amaranth: UnusedElaboratable=no
"""The weight-block transposer (hw/transposer.py) in Amaranth's simulator on tiny shapes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal

from hw.config import preset
from hw.transposer import Transposer
from tests.banked_memory_bench import finishing, receive, run, send


@pytest.mark.parametrize(("rows", "cols", "gap", "stall"),
                         [(4, 4, 0.0, 0.0), (4, 4, 0.3, 0.4), (3, 5, 0.2, 0.2), (5, 2, 0.0, 0.5),
                          (1, 1, 0.1, 0.1)])
def test_blocks_transpose_in_order(rows, cols, gap, stall):
    cfg = preset("tiny").replace(rows=rows, cols=cols)
    dut = Transposer(cfg)
    rng = random.Random(rows * 100 + cols)
    nrng = np.random.default_rng(rows + cols)
    blocks = [nrng.integers(-128, 128, (cols, rows)) for _ in range(5)]
    stored = [[int(x) for x in row] for b in blocks for row in b]
    got = []
    cycles = {}

    async def producer(ctx):
        await send(ctx, dut.rows, stored, rng, gap=gap)

    @finishing
    async def consumer(ctx):
        beats = await receive(ctx, dut.beats, rows * len(blocks), rng, stall=stall)
        got.extend([int(b[c]) for c in range(cols)] for b in beats)
        cycles["idle"] = ctx.get(dut.idle)

    run(dut, consumer, producer, deadline=2000)
    want = [list(map(int, row)) for b in blocks for row in b.T]
    assert got == want
    assert cycles["idle"] == 1


def test_full_rate_without_backpressure():
    """Square blocks stream at one row in and one beat out per cycle."""
    cfg = preset("tiny")
    dut = Transposer(cfg)
    nblocks = 6
    stored = [[(7 * i + j) % 256 - 128 for j in range(4)] for i in range(4 * nblocks)]
    seen = []

    async def producer(ctx):
        await send(ctx, dut.rows, stored, random.Random(0))

    @finishing
    async def consumer(ctx):
        ctx.set(dut.beats.ready, 1)
        cycle = 0
        while len(seen) < 4 * nblocks:
            _, _, valid = await ctx.tick().sample(dut.beats.valid)
            if valid:
                seen.append(cycle)
            cycle += 1

    run(dut, consumer, producer, deadline=500)
    # first beat after the first block's 4 rows; then one beat per cycle
    assert seen == list(range(seen[0], seen[0] + 4 * nblocks))
    assert seen[0] <= 5


@pytest.mark.parametrize(("rows", "cols", "emitted"), [(4, 4, 0), (4, 4, 2), (3, 5, 1), (5, 2, 3)])
def test_reset_mid_block_emits_only_later_blocks(rows, cols, emitted):
    """A reset with one block full (``emitted`` of its beats taken) and the next one partly
    collected: no beat from before it comes out, and the blocks after it are exact. The block
    buffers have no reset, so this checks that no beat reads them across a reset."""
    cfg = preset("tiny").replace(rows=rows, cols=cols)
    dut = Transposer(cfg)
    reset = Signal()
    top = ResetInserter(reset)(dut)
    nrng = np.random.default_rng(rows * 10 + cols + emitted)
    old = [nrng.integers(-128, 128, (cols, rows)) for _ in range(2)]
    new = [nrng.integers(-128, 128, (cols, rows)) for _ in range(3)]
    got, seen = [], {}

    @finishing
    async def bench(ctx):
        stored = [[int(x) for x in row] for row in old[0]] + [
            [int(x) for x in row] for row in old[1][:max(cols - 1, 1)]]
        await send(ctx, dut.rows, stored[:cols], random.Random(0))
        await receive(ctx, dut.beats, emitted, random.Random(0))
        await send(ctx, dut.rows, stored[cols:], random.Random(0))
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        seen["after_reset"] = (ctx.get(dut.idle), ctx.get(dut.beats.valid))
        seen["go"] = True
        beats = await receive(ctx, dut.beats, rows * len(new), random.Random(2), stall=0.3)
        got.extend([int(b[c]) for c in range(cols)] for b in beats)

    async def producer(ctx):
        while "go" not in seen:
            await ctx.tick()
        stored = [[int(x) for x in row] for b in new for row in b]
        await send(ctx, dut.rows, stored, random.Random(1), gap=0.2)

    run(top, bench, producer, deadline=3000)
    assert seen["after_reset"] == (1, 0)
    assert got == [list(map(int, row)) for b in new for row in b.T]


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        Transposer({"rows": 4})
