# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of :class:`hw.write_fence.WriteFence`: the slices keep every write
in order under random backpressure, and the token never passes a write still in a slice."""

from __future__ import annotations

import collections
import random

import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data

from hw.write_fence import WriteFence
from tests.banked_memory_bench import run_to_end


@pytest.mark.parametrize("writes", [{}, [("a", 8)], {"not a name": 8}, {3: 8}])
def test_rejects_bad_parameters(writes):
    with pytest.raises(ValueError, match="write"):
        WriteFence(writes)


def test_names_are_read_only():
    fence = WriteFence({"a": data.StructLayout({"v": 8}), "b": data.StructLayout({"v": 4})})
    assert fence.names == ("a", "b")
    with pytest.raises(AttributeError):
        fence.names = ("c",)


@pytest.mark.parametrize("seed, in_prob, out_prob, push_prob", [
    (1, 0.7, 0.3, 0.5), (2, 0.9, 0.9, 0.9), (3, 0.3, 0.8, 0.2), (4, 0.8, 0.1, 1.0),
])
def test_token_never_overtakes_a_write(seed, in_prob, out_prob, push_prob):
    """Bursts of writes on two streams with random valid and memory-side ready; the unit offers
    a token at random, but only while it has no write outstanding on its own side (as the load
    unit: its writes are accepted before it pushes). A token that reaches the counter while a write
    accepted from the unit before it has not yet been taken by the memory fails the test; so
    does any write out of order or lost."""
    dut = WriteFence({"a": data.StructLayout({"v": unsigned(8)}),
                      "b": data.StructLayout({"v": unsigned(16)})})
    rng = random.Random(seed)
    sent = {"a": collections.deque(), "b": collections.deque()}
    landed = {"a": 0, "b": 0}
    stats = {"tokens": 0, "held": 0}

    async def bench(ctx):
        offered = {"a": None, "b": None}
        writing = 0  # cycles left of the current burst of writes; then a quiet gap
        for _ in range(1000):
            if writing == 0 and rng.random() < 0.15:
                writing = rng.randrange(1, 8)
            writing = max(writing - 1, 0)
            for name, width in (("a", 8), ("b", 16)):
                port = getattr(dut, f"{name}_in")
                if offered[name] is None and writing and rng.random() < in_prob:
                    offered[name] = rng.randrange(1 << width)
                ctx.set(port.valid, offered[name] is not None)
                ctx.set(port.payload.v, offered[name] or 0)
                ctx.set(getattr(dut, f"{name}_out").ready, rng.random() < out_prob)
            unit_quiet = offered["a"] is None and offered["b"] is None
            ctx.set(dut.push_in.valid, unit_quiet and rng.random() < push_prob)
            ctx.set(dut.push_out.ready, rng.random() < 0.8)
            await ctx.delay(1e-8)
            in_flight = sum(len(q) for q in sent.values())
            token = ctx.get(dut.push_out.valid) and ctx.get(dut.push_out.ready)
            assert ctx.get(dut.push_in.ready) == (ctx.get(dut.push_out.ready) and in_flight == 0)
            if token:
                assert in_flight == 0, "the token overtook a write still in a slice"
                stats["tokens"] += 1
            elif ctx.get(dut.push_in.valid) and in_flight:
                stats["held"] += 1
            assert ctx.get(dut.pending) == (in_flight != 0)
            for name in ("a", "b"):
                out = getattr(dut, f"{name}_out")
                if ctx.get(out.valid) and ctx.get(out.ready):
                    assert ctx.get(out.payload.v) == sent[name].popleft()
                    landed[name] += 1
                port = getattr(dut, f"{name}_in")
                if ctx.get(port.valid) and ctx.get(port.ready):
                    sent[name].append(offered[name])
                    offered[name] = None
            await ctx.tick()

    run_to_end(dut, bench)
    assert landed["a"] > 50 and landed["b"] > 50
    assert stats["tokens"] > 5 and stats["held"] > 5
