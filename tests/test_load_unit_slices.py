# amaranth: UnusedElaboratable=no
"""The load unit's table-write slice (hw/load_unit.py ``_LateFlagSkid``) in Amaranth's simulator:
beats in order, one a cycle, and each beat's flag the ``mark`` given in the cycle after its
push (a ``mark`` after a cycle without a push is ignored)."""

from __future__ import annotations

import random

import pytest
from amaranth.lib import data

from hw.load_unit import _LateFlagSkid
from tests.banked_memory_bench import finishing, run


@pytest.mark.parametrize(("gap", "stall"), [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_late_flag_follows_its_beat(gap, stall):
    dut = _LateFlagSkid(data.StructLayout({"v": 8}))
    rng = random.Random(int(gap * 10) * 10 + int(stall * 10))
    count = 400
    bad = [rng.random() < 0.3 for _ in range(count)]
    got = []

    @finishing
    async def bench(ctx):
        k = 0
        pushed = None  # the beat pushed in the previous cycle
        while len(got) < count:
            ctx.set(dut.mark, bad[pushed] if pushed is not None else rng.random() < 0.5)
            valid = k < count and rng.random() >= gap
            ready = rng.random() >= stall
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload.v, k % 256)
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.o.valid) and ready:
                got.append((ctx.get(dut.o.payload.v), ctx.get(dut.flag)))
            pushed = k if valid and ctx.get(dut.i.ready) else None
            k += pushed is not None
            await ctx.tick()

    run(dut, bench, deadline=4 * count + 100)
    assert [p for p, _ in got] == [k % 256 for k in range(count)]
    assert [bool(f) for _, f in got] == bad


def test_one_beat_per_cycle():
    dut = _LateFlagSkid(data.StructLayout({"v": 8}))
    seen = []

    @finishing
    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(60):
            ctx.set(dut.i.payload.v, cycle)
            if ctx.get(dut.o.valid):
                seen.append(ctx.get(dut.o.payload.v))
            await ctx.tick()

    run(dut, bench, deadline=200)
    assert seen == list(range(seen[0], seen[0] + len(seen))) and len(seen) >= 58
