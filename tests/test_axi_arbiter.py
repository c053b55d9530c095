# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of :class:`hw.axi_arbiter.AxiReadArbiter`: every master's requests
leave in its order with its index in the ID, a presented request stays unchanged until taken,
and R beats return to the master named by the ID, all under random backpressure."""

from __future__ import annotations

import collections
import random

import pytest

from hw.axi_arbiter import AxiReadArbiter
from tests.banked_memory_bench import run_to_end


@pytest.mark.parametrize("masters", [1, 9, True, 2.0])
def test_rejects_bad_master_counts(masters):
    with pytest.raises(ValueError, match="masters"):
        AxiReadArbiter(32, 64, 4, masters)


@pytest.mark.parametrize("masters, seed, req_prob, ready_prob", [
    (2, 1, 0.6, 0.5), (2, 2, 0.95, 0.9), (3, 3, 0.4, 0.2), (2, 4, 0.9, 0.1),
])
def test_requests_and_beats_reach_the_right_master_in_order(masters, seed, req_prob, ready_prob):
    dut = AxiReadArbiter(32, 64, 4, masters)
    rng = random.Random(seed)
    sent = [collections.deque() for _ in range(masters)]
    counts = {"ar": [0] * masters, "r": [0] * masters}

    async def bench(ctx):
        offered = [None] * masters
        presented = None
        for _ in range(1500):
            for i, inp in enumerate(dut.inputs):
                if offered[i] is None and rng.random() < req_prob:
                    offered[i] = (rng.randrange(1 << 32), rng.randrange(256), rng.randrange(16))
                ctx.set(inp.arvalid, offered[i] is not None)
                if offered[i] is not None:
                    ctx.set(inp.araddr, offered[i][0])
                    ctx.set(inp.arlen, offered[i][1])
                    ctx.set(inp.arid, offered[i][2])
                ctx.set(inp.rready, rng.random() < 0.7)
            ctx.set(dut.out.arready, rng.random() < ready_prob)
            beat_owner = rng.randrange(masters)
            beat = rng.randrange(1 << 64)
            ctx.set(dut.out.rvalid, rng.random() < 0.5)
            ctx.set(dut.out.rid, (beat_owner << 4) | 5)
            ctx.set(dut.out.rdata, beat)
            await ctx.delay(1e-8)
            out = dut.out
            if ctx.get(out.arvalid):
                current = (ctx.get(out.araddr), ctx.get(out.arlen), ctx.get(out.arid))
                if presented is not None:
                    assert current == presented, "a presented request changed before arready"
                presented = current
                if ctx.get(out.arready):
                    owner, arid = current[2] >> 4, current[2] & 15
                    assert (current[0], current[1], arid) == sent[owner].popleft()
                    counts["ar"][owner] += 1
                    presented = None
            else:
                assert presented is None
            for i, inp in enumerate(dut.inputs):
                assert ctx.get(inp.rvalid) == (ctx.get(out.rvalid) and i == beat_owner)
                if i == beat_owner:
                    assert ctx.get(out.rready) == ctx.get(inp.rready)
                    assert ctx.get(inp.rdata) == beat and ctx.get(inp.rid) == 5
                    counts["r"][i] += ctx.get(inp.rvalid) and ctx.get(inp.rready)
                if ctx.get(inp.arvalid) and ctx.get(inp.arready):
                    sent[i].append(offered[i])
                    offered[i] = None
            await ctx.tick()

    run_to_end(dut, bench)
    assert all(c > 20 for c in counts["ar"]), counts
    assert all(c > 20 for c in counts["r"]), counts
