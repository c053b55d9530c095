"""Amaranth-simulator tests of :class:`hw.credit_queue.CreditQueue` against a Python deque."""

from __future__ import annotations

import collections
import random

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

from hw.credit_queue import CreditQueue
from tests.banked_memory_bench import run_to_end


@pytest.mark.parametrize("bad, error", [
    ({"width": 0}, ValueError), ({"depth": 0}, ValueError), ({"width": 2.0}, TypeError),
    ({"depth": True}, TypeError), ({"slices": 0}, ValueError), ({"slices": 9}, ValueError),
    ({"slices": 2.0}, TypeError), ({"output_ring": 1}, TypeError),
])
def test_rejects_bad_parameters(bad, error):
    with pytest.raises(error, match=next(iter(bad))):
        CreditQueue(**{"width": 8, "depth": 4, **bad})


def test_parameters_are_read_only():
    q = CreditQueue(8, 4)
    assert (q.width, q.depth, q.slices, q.output_ring, q.slots, q.latency) == (8, 4, 1, False,
                                                                               5, 1)
    with pytest.raises(AttributeError):
        q.depth = 5
    ring = CreditQueue(8, 4, slices=3, output_ring=True)
    # 3 columns of 3, 3 and 2 bits; the ring holds one of the credits' entries whenever the
    # RAM holds two or more, so 4 slots suffice
    assert (ring.slices, ring.slots, ring.latency) == (3, 4, 2)
    assert CreditQueue(8, 1, output_ring=True).slots == 2


def drive_within_credits(dut, depth, rng, cycles, probabilities):
    """Push and pop at random for ``cycles`` cycles, pushing only while fewer than ``depth``
    entries are pushed and not yet popped (the writer's credits: an entry popped this cycle
    frees its credit next cycle); ``probabilities(cycle)`` gives (push, pop) chances. Checks,
    against a deque, that ``r.valid`` is high exactly when the oldest entry was pushed
    ``dut.latency`` or more cycles ago and that ``r.payload`` is that entry. Returns the
    entries popped and the cycles the queue was full."""
    model: collections.deque[tuple[int, int]] = collections.deque()
    seen = {"popped": 0, "full": 0}

    async def bench(ctx):
        for cycle in range(cycles):
            push_prob, pop_prob = probabilities(cycle)
            push = len(model) < depth and rng.random() < push_prob
            value = rng.randrange(1 << 16)
            ctx.set(dut.w.valid, push)
            ctx.set(dut.w.payload, value if push else rng.randrange(1 << 16))
            ctx.set(dut.r.ready, rng.random() < pop_prob)
            await ctx.delay(1e-8)
            valid, ready = ctx.get(dut.r.valid), ctx.get(dut.r.ready)
            assert valid == (bool(model) and cycle - model[0][0] >= dut.latency), cycle
            if valid:
                assert ctx.get(dut.r.payload) == model[0][1]
            if valid and ready:
                model.popleft()
                seen["popped"] += 1
            if push:
                model.append((cycle, value))
            seen["full"] += len(model) == depth
            await ctx.tick()

    run_to_end(dut, bench)
    return seen


@pytest.mark.parametrize("depth, slices, ring", [
    (d, sl, r) for d in (1, 2, 4, 13, 16) for sl, r in ((1, False), (3, False), (1, True),
                                                         (4, True))
])
def test_valid_exactly_when_the_oldest_entry_is_latency_cycles_old(depth, slices, ring):
    """Credits as the epilogue counts them: ``r.valid`` is high exactly when the oldest entry
    was pushed ``latency`` or more cycles ago, and ``r.payload`` is that entry; the queue fills
    up."""
    dut = CreditQueue(16, depth, slices=slices, output_ring=ring)

    def phases(cycle):  # pushes outpace pops, pops outpace pushes, both busy
        return ((0.9, 0.2), (0.3, 0.9), (0.9, 0.9))[(cycle // 100) % 3]

    seen = drive_within_credits(dut, depth, random.Random(depth * 10 + slices + ring), 800,
                                phases)
    assert seen["popped"] > 150
    assert seen["full"] > 0


@pytest.mark.parametrize("depth, push_prob, pop_prob, seed", [
    (1, 0.9, 0.5, 1), (4, 0.8, 0.3, 2), (4, 0.5, 0.9, 3), (13, 0.9, 0.2, 4), (16, 0.7, 0.7, 5),
])
def test_random_pushes_and_pops_keep_order_within_credits(depth, push_prob, pop_prob, seed):
    """Pushes only while fewer than ``depth`` entries are queued (the writer's credits, counted
    as the array counts them); every popped entry is the oldest pushed, valid from the cycle
    after its push (``latency`` 1); the queue fills up where pushes outpace pops."""
    dut = CreditQueue(16, depth)
    assert dut.latency == 1
    seen = drive_within_credits(dut, depth, random.Random(seed), 600,
                                lambda cycle: (push_prob, pop_prob))
    assert seen["popped"] > 100
    assert seen["full"] > 0 or pop_prob > push_prob


class _ResetDriven(Elaboratable):
    """``dut`` in a ``sync`` domain whose reset the testbench drives (``rst``)."""

    def __init__(self, dut):
        self.dut = dut
        self.rst = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = domain = ClockDomain("sync")
        m.d.comb += domain.rst.eq(self.rst)
        m.submodules.dut = self.dut
        return m


@pytest.mark.parametrize("slices, ring", [(1, False), (3, False), (4, True)])
def test_push_right_after_a_reset(slices, ring):
    """A reset in the middle of traffic (pointers not at slot 0) empties the queue, and a push
    in the first cycle after it is the first entry out, in every slice: the per-slice write
    pointer copies are reset as the pointer is."""
    depth = 5
    dut = CreditQueue(16, depth, slices=slices, output_ring=ring)
    top = _ResetDriven(dut)
    rng = random.Random(slices)

    async def bench(ctx):
        for trial in range(6):
            model: collections.deque[tuple[int, int]] = collections.deque()
            for cycle in range(7 + 3 * trial):
                push = len(model) < depth and (cycle < 3 or rng.random() < 0.6)
                value = rng.randrange(1 << 16)
                ctx.set(dut.w.valid, push)
                ctx.set(dut.w.payload, value)
                ctx.set(dut.r.ready, cycle >= 3 and rng.random() < 0.5)
                await ctx.delay(1e-8)
                valid = ctx.get(dut.r.valid)
                assert valid == (bool(model) and cycle - model[0][0] >= dut.latency), (trial,
                                                                                     cycle)
                if valid:
                    assert ctx.get(dut.r.payload) == model[0][1], (trial, cycle)
                    if ctx.get(dut.r.ready):
                        model.popleft()
                if push:
                    model.append((cycle, value))
                await ctx.tick()
            ctx.set(dut.w.valid, 0)
            ctx.set(top.rst, 1)
            await ctx.tick()
            ctx.set(top.rst, 0)

    run_to_end(top, bench)
