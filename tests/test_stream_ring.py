# amaranth: UnusedElaboratable=no
"""The two-entry queues of hw/dma.py (StreamRing, StreamSkid) in Amaranth's simulator."""

from __future__ import annotations

import random

import pytest
from amaranth.lib import data

from hw.dma import StreamRing, StreamSkid
from tests.banked_memory_bench import finishing, receive, run, send


def _ring_copies(shape):
    return StreamRing(shape, rp_copies=3)


@pytest.mark.parametrize("cls", [StreamRing, StreamSkid, _ring_copies])
@pytest.mark.parametrize(("gap", "stall"), [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_beats_pass_in_order(cls, gap, stall):
    dut = cls(data.ArrayLayout(4, 3))
    rng = random.Random(int(gap * 10) * 10 + int(stall * 10))
    payloads = [[rng.randrange(16) for _ in range(3)] for _ in range(300)]
    got = []

    async def producer(ctx):
        await send(ctx, dut.i, payloads, rng, gap=gap)

    @finishing
    async def consumer(ctx):
        got.extend(await receive(ctx, dut.o, len(payloads), rng, stall=stall))

    run(dut, consumer, producer, deadline=3000)
    assert [[int(x[j]) for j in range(3)] for x in got] == payloads


@pytest.mark.parametrize("cls", [StreamRing, StreamSkid, _ring_copies])
def test_one_beat_per_cycle(cls):
    dut = cls(data.ArrayLayout(4, 2))
    seen = []

    async def producer(ctx):
        await send(ctx, dut.i, [[i % 16, i // 16] for i in range(50)], random.Random(0))

    @finishing
    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(seen) < 50:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                seen.append(cycle)
            cycle += 1

    run(dut, consumer, producer, deadline=500)
    assert seen == list(range(seen[0], seen[0] + 50))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_rp_copies_validated(bad):
    with pytest.raises((TypeError, ValueError)):
        StreamRing(4, rp_copies=bad)
