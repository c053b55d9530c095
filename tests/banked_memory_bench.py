"""Amaranth-simulator helpers shared by the block-level tests (array, epilogue, memories,
compute unit, queues): runners, and stream drivers and sinks with random backpressure
(cocotbext-axi style: one coroutine per bus)."""

from __future__ import annotations

import random

from amaranth.sim import Simulator


def run(dut, main, *background, deadline: int = 20000) -> None:
    """Simulate ``dut`` with a clock: ``background`` testbenches run beside ``main``; the run
    ends when ``main`` returns (``deadline`` cycles: a hang fails the test)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.add_testbench(main)
    sim.run_until(deadline * 1e-6)
    assert done_flag(main), f"testbench did not finish within {deadline} cycles"


def run_to_end(dut, main, *background) -> None:
    """Simulate ``dut`` with a clock until ``main`` returns; ``background`` testbenches run
    beside it (no deadline: ``main`` bounds the run itself)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.add_testbench(main)
    sim.run()


def done_flag(main) -> bool:
    return getattr(main, "finished", False)


def finishing(fn):
    """Decorate a main testbench so :func:`run` can tell that it returned."""
    async def wrapper(ctx):
        await fn(ctx)
        wrapper.finished = True
    wrapper.finished = False
    return wrapper


async def send(ctx, stream, payloads, rng: random.Random, gap: float = 0.0) -> None:
    """Drive ``payloads`` on ``stream`` in order, with random idle cycles (probability ``gap``)."""
    for p in payloads:
        while rng.random() < gap:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, p)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def receive(ctx, stream, count: int, rng: random.Random, stall: float = 0.0) -> list:
    """Take ``count`` beats from ``stream`` with random backpressure; return their payloads."""
    got = []
    while len(got) < count:
        ready = int(rng.random() >= stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            got.append(payload)
    ctx.set(stream.ready, 0)
    return got
