"""Amaranth-simulator tests of :class:`hw.credit_queue.CreditQueue` against a Python deque."""

from __future__ import annotations

import collections
import random

import pytest

from hw.credit_queue import CreditQueue
from tests.banked_memory_bench import run_to_end


@pytest.mark.parametrize("bad, error", [
    ({"width": 0}, ValueError), ({"depth": 0}, ValueError), ({"width": 2.0}, TypeError),
    ({"depth": True}, TypeError),
])
def test_rejects_bad_parameters(bad, error):
    with pytest.raises(error, match=next(iter(bad))):
        CreditQueue(**{"width": 8, "depth": 4, **bad})


def test_parameters_are_read_only():
    q = CreditQueue(8, 4)
    assert (q.width, q.depth) == (8, 4)
    with pytest.raises(AttributeError):
        q.depth = 5


@pytest.mark.parametrize("depth, push_prob, pop_prob, seed", [
    (1, 0.9, 0.5, 1), (4, 0.8, 0.3, 2), (4, 0.5, 0.9, 3), (13, 0.9, 0.2, 4), (16, 0.7, 0.7, 5),
])
def test_random_pushes_and_pops_keep_order_within_credits(depth, push_prob, pop_prob, seed):
    """Pushes only while fewer than ``depth`` entries are queued (the writer's credits, counted
    as the array counts them: an entry popped this cycle frees its credit next cycle); every
    popped entry is the oldest pushed; the queue fills up where pushes outpace pops."""
    dut = CreditQueue(16, depth)
    rng = random.Random(seed)
    model: collections.deque[int] = collections.deque()
    seen = {"popped": 0, "full": 0}

    async def bench(ctx):
        for _ in range(600):
            push = len(model) < depth and rng.random() < push_prob
            value = rng.randrange(1 << 16)
            ctx.set(dut.w.valid, push)
            ctx.set(dut.w.payload, value if push else rng.randrange(1 << 16))
            ctx.set(dut.r.ready, rng.random() < pop_prob)
            await ctx.delay(1e-8)
            valid, ready = ctx.get(dut.r.valid), ctx.get(dut.r.ready)
            assert valid == bool(model)
            popped = None
            if valid and ready:
                popped = model.popleft()
                assert ctx.get(dut.r.payload) == popped
                seen["popped"] += 1
            if push:
                model.append(value)
            seen["full"] += len(model) == depth
            await ctx.tick()

    run_to_end(dut, bench)
    assert seen["popped"] > 100
    assert seen["full"] > 0 or pop_prob > push_prob
