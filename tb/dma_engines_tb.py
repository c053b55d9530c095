"""cocotb tests of the AXI burst engines (hw/dma.py) through ``tb.dma_harness.DmaEnginesHarness``.

``NMX_TB_PARAMS`` (JSON): ``addr_bits``, ``data_bits`` (required), ``seed`` (1), ``count``
(requests per test, 40). Every test runs twice: with an ideal DRAM and with random pauses on
all five AXI channels plus random stalls on the engines' own streams.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from tb.axi_models import (
    BurstMonitor,
    ClockedEndpoints,
    Dram,
    StreamSink,
    StreamSource,
    layout_fields,
    pack,
    unpack,
)

DRAM_BYTES = 1 << 16


def params() -> dict:
    p = {"seed": 1, "count": 40, **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    for k in ("addr_bits", "data_bits"):
        if k not in p:
            raise ValueError(f"NMX_TB_PARAMS lacks {k!r}: {p}")
    return p


class TB:
    """Clock, reset, DRAM (AxiRam), burst monitor and the engines' four streams."""

    def __init__(self, dut, *, seed: int, hostile: bool) -> None:
        from hw.dma import AxiReadEngine, AxiWriteEngine

        p = params()
        self.dut = dut
        self.bw = p["data_bits"] // 8
        self.rng = random.Random(seed)
        rd = AxiReadEngine(addr_bits=p["addr_bits"], data_bits=p["data_bits"])
        wr = AxiWriteEngine(addr_bits=p["addr_bits"], data_bits=p["data_bits"])
        self.rd_req_f = layout_fields(rd.req.payload.shape())
        self.rd_data_f = layout_fields(rd.data.payload.shape())
        self.wr_req_f = layout_fields(wr.req.payload.shape())
        stall = p.get("stall", 0.3) if hostile else 0.0
        r = self.rng
        self.clocked = ClockedEndpoints(dut.clk)
        self.rd_req = self.clocked.add(
            StreamSource(dut, "rd_req", stall, random.Random(r.random()))
        )
        self.rd_data = self.clocked.add(
            StreamSink(dut, "rd_data", stall, random.Random(r.random()))
        )
        self.wr_req = self.clocked.add(
            StreamSource(dut, "wr_req", stall, random.Random(r.random()))
        )
        self.wr_data = self.clocked.add(
            StreamSource(dut, "wr_data", stall, random.Random(r.random()))
        )
        self.wr_errors = 0
        self.dram = Dram(
            dut, "axi", DRAM_BYTES, rng=r, pause_prob=p.get("pause", 0.3) if hostile else 0.0
        )
        self.monitor = BurstMonitor(dut, "axi", self.bw)
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        cocotb.start_soon(self.clocked.run())
        cocotb.start_soon(self.monitor.run())
        cocotb.start_soon(self._count_errors())

    async def _count_errors(self) -> None:
        while True:
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            if self.dut.wr_error.value:
                self.wr_errors += 1

    async def wait_idle(self, timeout: int = 200_000) -> None:
        for _ in range(timeout):
            await RisingEdge(self.dut.clk)
            if (
                self.rd_req.idle
                and self.wr_req.idle
                and self.wr_data.idle
                and not self.dut.rd_busy.value
                and not self.dut.wr_busy.value
            ):
                for _ in range(3):
                    await RisingEdge(self.dut.clk)
                return
        raise AssertionError(f"engines still busy after {timeout} cycles")

    def check_monitor(self) -> None:
        assert not self.monitor.errors, "AXI rule violations: " + "; ".join(self.monitor.errors[:5])

    def expected_beats(self, mem: bytes, addr: int, n: int, d: int, error: bool) -> list[dict]:
        bw = self.bw
        out_beats = -(-(d + n) // bw)
        buf = bytes(d) + mem[addr : addr + n] + bytes(out_beats * bw - d - n)
        beats = []
        for k in range(out_beats):
            lo = d if k == 0 else 0
            hi = (d + n - 1) % bw + 1 if k == out_beats - 1 else bw
            strb = sum(1 << j for j in range(lo, hi))
            beats.append(
                {
                    "data": int.from_bytes(buf[k * bw : (k + 1) * bw], "little"),
                    "strb": strb,
                    "last": int(k == out_beats - 1),
                }
            )
        if error:
            beats[-1]["error"] = 1
        return beats

    def random_request(self) -> tuple[int, int]:
        r = self.rng
        kind = r.random()
        if kind < 0.5:
            n = r.randint(1, 3 * self.bw)
        elif kind < 0.8:
            n = r.randint(1, 600)
        else:
            n = r.randint(256 * self.bw - 64, 256 * self.bw + 5000)
        n = min(n, DRAM_BYTES // 2)
        if r.random() < 0.3:  # next to a 4 KiB boundary
            page = r.randrange(1, DRAM_BYTES // 4096)
            addr = page * 4096 - r.randint(1, 3 * self.bw)
        else:
            addr = r.randrange(0, DRAM_BYTES - n)
        addr = min(addr, DRAM_BYTES - n)
        return addr, n


async def _reads(dut, hostile: bool, errors: bool = False) -> None:
    p = params()
    tb = TB(dut, seed=p["seed"] + (7 if hostile else 0), hostile=hostile)
    image = bytes(tb.rng.getrandbits(8) for _ in range(DRAM_BYTES))
    tb.dram.ram.write(0, image)
    if errors:
        tb.dram.error_ranges = [(0x3000, 0x3010), (0x8000, 0x9000)]
    await tb.reset()
    expected = []
    forced = [(0x2FF0, 40), (0x7000, 0x1100)] if errors else []
    for k in range(p["count"]):
        addr, n = forced[k] if k < len(forced) else tb.random_request()
        d = tb.rng.randrange(tb.bw)
        # The DRAM reads whole beats: a beat that touches an error range fails.
        lo_beat, hi_beat = addr - addr % tb.bw, -(-(addr + n) // tb.bw) * tb.bw
        bad = any(lo_beat < hi and hi_beat > lo for lo, hi in tb.dram.error_ranges)
        if bad and not errors:
            continue
        # An error beat returns garbage: compare data only for clean requests.
        beats = tb.expected_beats(image, addr, n, d, bad)
        expected.append((addr, n, d, bad, beats))
        tb.rd_req.send([pack(tb.rd_req_f, addr=addr, nbytes=n, dst_off=d)])
    await tb.wait_idle()
    got = [unpack(tb.rd_data_f, v) for v in tb.rd_data.received]
    pos = 0
    for addr, n, d, bad, beats in expected:
        mine = got[pos : pos + len(beats)]
        pos += len(beats)
        assert len(mine) == len(beats), f"request ({addr:#x}, {n}, {d}): too few beats"
        for k, (g, e) in enumerate(zip(mine, beats, strict=True)):
            where = f"request (addr {addr:#x}, {n} bytes, dst_off {d}) beat {k}"
            assert g["last"] == e["last"], f"{where}: last {g['last']}"
            assert g["strb"] == e["strb"], f"{where}: strb {g['strb']:#x}, expected {e['strb']:#x}"
            if not bad:
                assert g["data"] == e["data"], f"{where}: data {g['data']:#x} != {e['data']:#x}"
                assert g["error"] == 0, f"{where}: unexpected error flag"
        assert mine[-1]["error"] == int(bad), f"request ({addr:#x}, {n}): error {mine[-1]['error']}"
    assert pos == len(got), f"{len(got) - pos} extra beats"
    tb.check_monitor()
    assert tb.monitor.ar_bursts > len(expected) or not expected
    dut._log.info(
        "reads: %d requests, %d bursts, up to %d outstanding",
        len(expected),
        tb.monitor.ar_bursts,
        tb.monitor.max_outstanding_reads,
    )


async def _writes(dut, hostile: bool, errors: bool = False) -> None:
    p = params()
    tb = TB(dut, seed=p["seed"] + (11 if hostile else 3), hostile=hostile)
    image = bytearray(tb.rng.getrandbits(8) for _ in range(DRAM_BYTES))
    tb.dram.ram.write(0, bytes(image))
    if errors:
        tb.dram.error_ranges = [(0x5000, 0x5008)]
    await tb.reset()
    n_bad = 0
    log = []
    forced = [(0x4FF9, 30)] if errors else []
    for k in range(p["count"]):
        addr, n = forced[k] if k < len(forced) else tb.random_request()
        payload = bytes(tb.rng.getrandbits(8) for _ in range(n))
        bad = any(addr < hi and addr + n > lo for lo, hi in tb.dram.error_ranges)
        if bad and not errors:
            continue
        n_bad += bad
        image[addr : addr + n] = payload
        log.append((addr, n))
        tb.wr_req.send([pack(tb.wr_req_f, addr=addr, nbytes=n)])
        beats = -(-n // tb.bw)
        padded = payload + bytes(beats * tb.bw - n)
        tb.wr_data.send(
            int.from_bytes(padded[k * tb.bw : (k + 1) * tb.bw], "little") for k in range(beats)
        )
    await tb.wait_idle()
    got = tb.dram.ram.read(0, DRAM_BYTES)
    # The DRAM drops a beat that touches an error range; every other byte must be exact.
    bw = tb.bw
    diff = [
        i
        for i in range(DRAM_BYTES)
        if got[i] != image[i]
        and not any(lo - lo % bw <= i < hi + (-hi) % bw for lo, hi in tb.dram.error_ranges)
    ]
    if diff:
        i = diff[0]
        raise AssertionError(
            f"{len(diff)} DRAM bytes differ, first at {i:#x}: "
            f"{got[i - 8 : i + 8].hex()} expected {bytes(image[i - 8 : i + 8]).hex()}; "
            f"requests: {[(hex(a), n) for a, n in log]}"
        )
    assert (tb.wr_errors > 0) == (n_bad > 0), f"{tb.wr_errors} error responses, {n_bad} bad"
    tb.check_monitor()


@cocotb.test()
async def reads(dut):
    await _reads(dut, hostile=False)


@cocotb.test()
async def reads_hostile(dut):
    await _reads(dut, hostile=True)


@cocotb.test()
async def read_errors_hostile(dut):
    await _reads(dut, hostile=True, errors=True)


@cocotb.test()
async def writes(dut):
    await _writes(dut, hostile=False)


@cocotb.test()
async def writes_hostile(dut):
    await _writes(dut, hostile=True)


@cocotb.test()
async def write_errors_hostile(dut):
    await _writes(dut, hostile=True, errors=True)
