# amaranth: UnusedElaboratable=no
"""The weight-block transposer (hw/transposer.py) in Amaranth's simulator on tiny shapes."""

from __future__ import annotations

import random

import numpy as np
import pytest

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


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        Transposer({"rows": 4})
