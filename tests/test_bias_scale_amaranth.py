# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the banked bias/scale SRAM against a NumPy model."""

# (The linter line above: the validation tests construct components that raise in __init__.)

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from hw.bias_scale import BiasScaleSram
from hw.config import preset
from tests.banked_memory_bench import run_to_end


def tiny(**changes):
    return preset("tiny").replace(**changes)


class Harness(wiring.Component):
    """The SRAM and a free-running cycle counter (handshake times order the two writers)."""

    def __init__(self, config):
        self.sram = BiasScaleSram(config)
        self.cycle = Signal(32)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.sram = self.sram
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


class TB:
    """Simulates a :class:`BiasScaleSram` with a NumPy model of its contents."""

    def __init__(self, config, *, seed=0, gap_prob=0.0, stall_prob=0.0):
        self.config = config
        self.harness = Harness(config)
        self.dut = self.harness.sram
        self.rng = random.Random(seed)
        self.gap_prob = gap_prob
        self.stall_prob = stall_prob
        n = config.bias_entries
        self.bias = np.zeros(n, dtype=np.int64)
        self.mult = np.zeros(n, dtype=np.int64)
        self.shift = np.zeros(n, dtype=np.int64)

    async def drive(self, ctx, port, beats) -> list[int]:
        """Send ``beats`` on ``port`` with random gaps; return the cycle of each handshake."""
        cycles = []
        for beat in beats:
            while self.rng.random() < self.gap_prob:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.payload, beat)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            cycles.append(ctx.get(self.harness.cycle))
        ctx.set(port.valid, 0)
        return cycles

    async def collect(self, ctx, port, count) -> tuple[list, list[int]]:
        got, cycles = [], []
        while len(got) < count:
            ready = int(self.rng.random() >= self.stall_prob)
            ctx.set(port.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
            if valid and ready:
                got.append(payload)
                cycles.append(ctx.get(self.harness.cycle))
        ctx.set(port.ready, 0)
        return got, cycles

    def run(self, load_writes, scale_writes, bias_reads, scale_reads):
        """Both writers concurrently; then, after the write latency, both readers."""
        dut = self.dut
        out = {}
        written = []

        async def loader(ctx):
            out["load_cycles"] = await self.drive(ctx, dut.load_write, load_writes)
            written.append("load")

        async def scaler(ctx):
            out["scale_cycles"] = await self.drive(ctx, dut.scale_write, scale_writes)
            written.append("scale")

        async def bias_reader(ctx):
            while len(written) < 2:
                await ctx.tick()
            await ctx.tick().repeat(2)
            out["bias_req"] = await self.drive(ctx, dut.bias_read, bias_reads)

        async def scale_reader(ctx):
            while len(written) < 2:
                await ctx.tick()
            await ctx.tick().repeat(2)
            out["scale_req"] = await self.drive(ctx, dut.scale_read, scale_reads)

        async def scale_collector(ctx):
            out["scale"], out["scale_resp"] = await self.collect(
                ctx, dut.scale_data, len(scale_reads))

        async def main(ctx):
            out["bias"], out["bias_resp"] = await self.collect(ctx, dut.bias_data, len(bias_reads))
            while "scale" not in out:
                await ctx.tick()

        run_to_end(self.harness, main, loader, scaler, bias_reader, scale_reader, scale_collector)
        return out


def random_traffic(rng, config, n_writes, n_reads):
    n = config.bias_entries
    load_writes = [
        {"addr": int(rng.integers(n)), "bias": int(rng.integers(-2**31, 2**31)),
         "mult": int(rng.integers(-2**15, 2**15)), "shift": int(rng.integers(0, 48))}
        for _ in range(n_writes)
    ]
    # Every entry written once by LOADT first, so the model has no undefined entries.
    load_writes = [
        {"addr": e, "bias": int(rng.integers(-2**31, 2**31)),
         "mult": int(rng.integers(-2**15, 2**15)), "shift": int(rng.integers(0, 48))}
        for e in range(n)
    ] + load_writes
    scale_writes = [
        {"addr": int(rng.integers(n)), "mult": int(rng.integers(-2**15, 2**15)),
         "shift": int(rng.integers(0, 48))}
        for _ in range(n_writes)
    ]
    bias_reads = [{"addr": int(rng.integers(n))} for _ in range(n_reads)]
    scale_reads = [{"addr": int(rng.integers(n)), "broadcast": int(rng.integers(2))}
                   for _ in range(n_reads)]
    return load_writes, scale_writes, bias_reads, scale_reads


def check(tb: TB, traffic) -> dict:
    """Run ``traffic``; compare every response with the model (writes in handshake order)."""
    load_writes, scale_writes, bias_reads, scale_reads = traffic
    out = tb.run(*traffic)
    assert len(set(out["load_cycles"]) & set(out["scale_cycles"])) == 0, "two writes at once"
    writes = sorted(
        [(c, w, True) for c, w in zip(out["load_cycles"], load_writes, strict=True)]
        + [(c, w, False) for c, w in zip(out["scale_cycles"], scale_writes, strict=True)],
        key=lambda t: t[0],
    )
    for _, w, whole in writes:
        if whole:
            tb.bias[w["addr"]] = w["bias"]
        tb.mult[w["addr"]], tb.shift[w["addr"]] = w["mult"], w["shift"]
    n, lanes = tb.config.bias_entries, tb.config.cols
    for req, got in zip(bias_reads, out["bias"], strict=True):
        entries = (req["addr"] + np.arange(lanes)) % n
        assert [int(v) for v in got.bias] == tb.bias[entries].tolist(), req
    for req, got in zip(scale_reads, out["scale"], strict=True):
        entries = (req["addr"] + (0 if req["broadcast"] else np.arange(lanes))) % n
        entries = np.broadcast_to(entries, lanes)
        assert [int(v) for v in got.mult] == tb.mult[entries].tolist(), req
        assert [int(v) for v in got.shift] == tb.shift[entries].tolist(), req
    return out


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got None"):
        BiasScaleSram(None)
    cfg = dataclasses.replace(tiny())
    object.__setattr__(cfg, "scale_bits", 8)
    with pytest.raises(ValueError, match="config.acc_bits = 32, config.scale_bits = 8"):
        BiasScaleSram(cfg)


@pytest.mark.parametrize(("cols", "entries", "banks"), [(4, 64, 4), (3, 16, 4), (5, 32, 8),
                                                        (1, 16, 1), (20, 16, 16)])
def test_banks(cols, entries, banks):
    dut = BiasScaleSram(tiny(cols=cols, bias_entries=entries))
    assert (dut.banks, dut.read_latency) == (banks, 2)
    with pytest.raises(AttributeError):
        dut.banks = 2


@pytest.mark.parametrize(("cols", "entries"), [(4, 64), (3, 16), (5, 32), (1, 16), (20, 16)])
def test_reads_return_consecutive_entries_from_any_start(cols, entries):
    cfg = tiny(cols=cols, bias_entries=entries)
    rng = np.random.default_rng(cols * 100 + entries)
    check(TB(cfg, seed=cols), random_traffic(rng, cfg, n_writes=40, n_reads=40))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_backpressure_and_concurrent_writers(seed):
    cfg = tiny(cols=3, bias_entries=16)
    rng = np.random.default_rng(seed)
    check(TB(cfg, seed=seed, gap_prob=0.3, stall_prob=0.5),
          random_traffic(rng, cfg, n_writes=60, n_reads=60))


def test_one_read_per_cycle_and_round_robin_writes():
    cfg = tiny()
    rng = np.random.default_rng(5)
    out = check(TB(cfg), random_traffic(rng, cfg, n_writes=30, n_reads=30))
    for port in ("bias", "scale"):
        req, resp = out[f"{port}_req"], out[f"{port}_resp"]
        assert req == list(range(req[0], req[0] + 30))
        assert resp == list(range(resp[0], resp[0] + 30))
    assert out["bias_resp"][0] - out["bias_req"][0] == BiasScaleSram(cfg).read_latency
    # Both writers always valid while both have beats: the grants alternate.
    both = sorted(out["load_cycles"][:30] + out["scale_cycles"])
    assert both == list(range(both[0], both[0] + 60))
