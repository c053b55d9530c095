"""Amaranth-simulator tests of :class:`hw.dispatcher.Dispatcher`'s instruction fetch: the AR
bursts of runs started back to back on one machine, against an in-order AXI read slave."""

from __future__ import annotations

import pytest

from hw.config import preset
from hw.dispatcher import FETCH_CHUNK_BYTES, Dispatcher
from hw.isa import WORD_BYTES, Halt, encode
from hw.registers import RunState
from sim.golden import StatusCode
from tests.banked_memory_bench import finishing, run


def _runs(config, runs, latency: int) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """Start ``runs`` (``(prog_addr, prog_len)``, every word a HALT) one after another on one
    dispatcher; every run must end DONE, OK at offset 0. Returns each run's ``(araddr, beats)``
    and the cycles from each run's start to its first AR handshake."""
    dut = Dispatcher(config)
    bus_bytes = config.dma_data_bits // 8
    halt = encode(Halt())
    bursts: list[list[tuple[int, int]]] = []
    first_ar: list[int] = []
    now = {"cycle": 0, "start": 0}

    def beat(addr: int) -> int:
        if bus_bytes >= WORD_BYTES:
            return sum(halt << (8 * WORD_BYTES * i) for i in range(bus_bytes // WORD_BYTES))
        lane = (addr % WORD_BYTES) // bus_bytes
        return (halt >> (8 * bus_bytes * lane)) & ((1 << (8 * bus_bytes)) - 1)

    # R beats due: (cycle it may be sent, address); the slave answers in order, `latency`
    # cycles after the AR handshake at the earliest, and takes an AR every cycle.
    pending: list[tuple[int, int]] = []

    async def slave(ctx):
        cycle = 0
        ctx.set(dut.axi.arready, 1)
        while True:
            send = bool(pending) and pending[0][0] <= cycle
            ctx.set(dut.axi.rvalid, send)
            ctx.set(dut.axi.rdata, beat(pending[0][1]) if send else 0)
            arvalid = ctx.get(dut.axi.arvalid)
            ctx.set(dut.axi_idle, not pending and not arvalid)
            araddr, arlen = ctx.get(dut.axi.araddr), ctx.get(dut.axi.arlen)
            await ctx.tick()
            cycle += 1
            now["cycle"] = cycle
            if send:
                pending.pop(0)
            if arvalid:
                if not bursts[-1]:
                    first_ar.append(cycle - now["start"])
                bursts[-1].append((araddr, arlen + 1))
                pending.extend((cycle + latency, araddr + i * bus_bytes)
                               for i in range(arlen + 1))

    @finishing
    async def main(ctx):
        ctx.set(dut.units_idle, 1)
        for prog_addr, prog_len in runs:
            await ctx.tick().repeat(5)
            bursts.append([])
            ctx.set(dut.prog_addr, prog_addr)
            ctx.set(dut.prog_len, prog_len)
            ctx.set(dut.start, 1)
            now["start"] = now["cycle"]
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.state == RunState.DONE)
            assert (ctx.get(dut.code), ctx.get(dut.offset)) == (StatusCode.OK, 0)

    run(dut, main, slave, deadline=5000)
    return bursts, first_ar


def _check_bursts(config, prog_addr: int, prog_len: int, bursts) -> None:
    """Contiguous from ``PROG_ADDR``, each within one fetch chunk (so within 4 KiB) and the
    program."""
    bus_bytes = config.dma_data_bits // 8
    end = prog_addr + prog_len * WORD_BYTES
    addr = prog_addr & ~(bus_bytes - 1)
    assert bursts
    for araddr, beats in bursts:
        last = araddr + beats * bus_bytes - 1
        assert araddr == addr, (hex(araddr), hex(addr))
        assert araddr // FETCH_CHUNK_BYTES == last // FETCH_CHUNK_BYTES, (hex(araddr), beats)
        assert araddr >> 12 == last >> 12, (hex(araddr), beats)
        assert last < end + bus_bytes - 1 and araddr < end, (hex(araddr), beats, hex(end))
        addr = last + 1


@pytest.mark.parametrize("name, bus_bits", [("tiny", 64), ("default", 128), ("default", 256)])
@pytest.mark.parametrize("latency", [0, 6])
def test_second_run_bursts_are_sized_for_its_own_program(name, bus_bits, latency):
    """Run 1 HALTs at word 0 of a long program, so its fetch stops with more to fetch and a
    full-chunk burst next; run 2 starts 16 bytes below a 4 KiB boundary. Run 2's first burst
    must be sized from its own PROG_ADDR and go out as late after its start as a fresh
    machine's (sweep case tiny:2:757 saw a size left from the previous run requested at once:
    "AR burst crosses a 4 KiB boundary: ARADDR=0xaff0 ARLEN=3")."""
    config = preset(name).replace(dma_data_bits=bus_bits)
    runs = [(0x1000, 64), (0xAFF0, 1), (0x2000, 64), (0xAFF0, 3)]
    bursts, first_ar = _runs(config, runs, latency)
    for (prog_addr, prog_len), run_bursts in zip(runs, bursts, strict=True):
        _check_bursts(config, prog_addr, prog_len, run_bursts)
    # every run's first burst goes out as long after its start as a fresh machine's does
    assert len(set(first_ar)) == 1, first_ar
