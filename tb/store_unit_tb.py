"""cocotb tests of the store unit (hw/store_unit.py) through ``tb.dma_harness.StoreUnitHarness``.

The golden model runs ``SETBASE...; DMACFG; LOAD (fill scratchpad rows); LOAD (fill
accumulator rows); <STOREs>; HALT`` (hazard checks off: the test has no compute unit to relay
tokens). The RTL gets the golden model's scratchpad and accumulator contents in its Python SRAM
models (which answer read requests after a random latency), the original DRAM image, and only
the STOREs; it must end with the same DRAM image byte for byte, or the same status and offset.

``NMX_TB_PARAMS``: ``config`` (required), ``seed`` (1), ``cases`` (30). ``*_hostile`` tests pause
all AXI channels and stall the SRAM read-request streams and the token counter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from hw.config import preset
from hw.isa import Dmacfg, Halt, Load, MemSpace, Program, Setbase, Store, Sync, SyncTarget
from sim.golden import GoldenModel, StatusCode
from tb.axi_models import BurstMonitor, ClockedEndpoints, Dram, UnitCommands, layout_fields
from tb.load_unit_tb import TokenCounter

DRAM_BYTES = 1 << 16
SRC_REGION = 0xA000  # where the source rows are loaded from (STOREs write below it)
FILL_ROWS = 48


def params() -> dict:
    p = {"seed": 1, "cases": 30, **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    if "config" not in p:
        raise ValueError(f"NMX_TB_PARAMS lacks 'config': {p}")
    return p


class RowMemory:
    """An SRAM model: takes ``<req>__payload.addr`` (ready low with ``stall_prob``) and answers
    each request in order on ``<resp>`` after 1..``max_latency`` cycles."""

    def __init__(
        self,
        dut,
        req: str,
        resp: str,
        rows: np.ndarray,
        addr_field,
        *,
        stall_prob: float,
        max_latency: int,
        rng: random.Random,
    ) -> None:
        self.req_valid = getattr(dut, f"{req}__valid")
        self.req_ready = getattr(dut, f"{req}__ready")
        self.req_payload = getattr(dut, f"{req}__payload")
        self.resp_valid = getattr(dut, f"{resp}__valid")
        self.resp_ready = getattr(dut, f"{resp}__ready")
        self.resp_payload = getattr(dut, f"{resp}__payload")
        self.rows, self.addr_field = rows, addr_field
        self.stall_prob, self.max_latency, self.rng = stall_prob, max_latency, rng
        self.pending: deque[tuple[int, int]] = deque()  # (due cycle, packed row)
        self.reads = 0
        self._ready = 0
        self._offer = 0
        self.req_ready.value = 0
        self.resp_valid.value = 0

    def pack(self, row: int) -> int:
        return int.from_bytes(np.ascontiguousarray(self.rows[row]).tobytes(), "little")

    def drive(self, cycle: int = 0) -> None:
        self._ready = int(not (self.stall_prob and self.rng.random() < self.stall_prob))
        self.req_ready.value = self._ready
        offer = bool(self.pending) and self.pending[0][0] <= self._cycle
        if offer:
            self.resp_payload.value = self.pending[0][1]
        self._offer = int(offer)
        self.resp_valid.value = self._offer

    _cycle = 0

    def observe(self, cycle: int) -> None:
        self._cycle = cycle + 1
        if self._offer and self.resp_ready.value:
            self.pending.popleft()
        if self._ready and self.req_valid.value:
            off, width = self.addr_field
            addr = (int(self.req_payload.value) >> off) & ((1 << width) - 1)
            due = max(
                cycle + self.rng.randint(1, self.max_latency),
                self.pending[-1][0] if self.pending else 0,
            )
            self.pending.append((due, self.pack(addr)))
            self.reads += 1


class TB(UnitCommands):
    """Clock, reset, DRAM, burst monitor, instruction stream, two SRAM models, token counters."""

    unit_name = "store unit"

    def __init__(self, dut, *, seed: int, hostile: bool) -> None:
        from hw.store_unit import acc_read_layout, spad_read_layout
        from hw.unit_ports import unit_command_layout

        p = params()
        self.dut = dut
        self.cfg = cfg = preset(p["config"])
        self.rng = r = random.Random(seed)
        stall = 0.3 if hostile else 0.0
        self.cmd_f = {name: f.offset for name, f in unit_command_layout(cfg)}
        self.spad = np.zeros((cfg.scratchpad_rows, cfg.lanes), dtype=np.int8)
        self.acc = np.zeros((cfg.accumulator_rows, cfg.cols), dtype="<i4")
        self.clocked = ClockedEndpoints(dut.clk)
        from tb.axi_models import StreamSource

        self.cmd = self.clocked.add(StreamSource(dut, "cmd", stall, random.Random(r.random())))
        lat = 6 if hostile else 1
        self.spad_mem = self.clocked.add(
            RowMemory(
                dut,
                "spad_read",
                "spad_resp",
                self.spad,
                layout_fields(spad_read_layout(cfg))["addr"],
                stall_prob=stall,
                max_latency=lat,
                rng=random.Random(r.random()),
            )
        )
        self.acc_mem = self.clocked.add(
            RowMemory(
                dut,
                "acc_read",
                "acc_resp",
                self.acc,
                layout_fields(acc_read_layout(cfg))["addr"],
                stall_prob=stall,
                max_latency=lat,
                rng=random.Random(r.random()),
            )
        )
        self.c2s = self.clocked.add(TokenCounter(dut, "pop_c2s", "pop", 0, random.Random(1)))
        self.s2c = self.clocked.add(
            TokenCounter(dut, "push_s2c", "push", stall, random.Random(r.random()))
        )
        self.dram = Dram(dut, "axi", DRAM_BYTES, rng=r, pause_prob=0.3 if hostile else 0.0)
        self.monitor = BurstMonitor(dut, "axi", cfg.dma_data_bits // 8)
        dut.dram_limit.value = DRAM_BYTES
        dut.flush_above__valid.value = 0
        dut.flush_above__pc.value = 0
        self._started = False
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self) -> None:
        await RisingEdge(self.dut.clk)
        self.dut.rst.value = 1
        self.cmd.queue.clear()
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.c2s.tokens = 0
        self.c2s.transfers = self.s2c.transfers = 0
        if not self._started:
            self._started = True
            cocotb.start_soon(self.clocked.run())
            cocotb.start_soon(self.monitor.run())


def fill_program(cfg, image: bytearray, rng: random.Random) -> list:
    """DMACFG + two LOADs filling scratchpad rows 0..FILL_ROWS-1 and accumulator rows
    0..FILL_ROWS-1 from SRC_REGION (random contents)."""
    sb, ab = cfg.lanes, 4 * cfg.cols
    image[SRC_REGION : SRC_REGION + FILL_ROWS * (sb + ab)] = bytes(
        rng.getrandbits(8) for _ in range(FILL_ROWS * (sb + ab))
    )
    return [
        Dmacfg(slot=0, height=FILL_ROWS, width=1, pitch=sb, pix=sb, sy=1, sx=0),
        Dmacfg(slot=1, height=FILL_ROWS, width=1, pitch=ab, pix=ab, sy=1, sx=0),
        Load(
            mem=MemSpace.SPAD,
            geom=0,
            base=3,
            offset=SRC_REGION,
            dst=0,
            outer=FILL_ROWS,
            inner=1,
            y0=0,
            x0=0,
            length=cfg.lanes,
        ),
        Load(
            mem=MemSpace.ACC,
            geom=1,
            base=3,
            offset=SRC_REGION + FILL_ROWS * sb,
            dst=0,
            outer=FILL_ROWS,
            inner=1,
            y0=0,
            x0=0,
            length=cfg.cols,
        ),
    ]


async def run_case(
    tb: TB, image: bytes, bases: dict[int, int], stores: list, label: str, error_ranges=()
) -> None:
    cfg = tb.cfg
    img = bytearray(image)
    fill = fill_program(cfg, img, tb.rng)
    bases = {**bases, 3: 0}
    prog = [Setbase(reg=r, value=v) for r, v in sorted(bases.items())] + fill
    first = len(prog)
    model = GoldenModel(cfg, check_hazards=False)
    result = model.run(Program([*prog, *stores, Halt()]), bytes(img))
    status = result.status
    await tb.reset()
    tb.spad[:] = model.spad
    tb.acc[:] = model.acc
    tb.dram.ram.write(0, bytes(img))
    tb.dram.error_ranges = list(error_ranges)
    for k, ins in enumerate(stores):
        tb.send(ins, first + k, bases.get(getattr(ins, "base", 0), 0))
    got = await tb.run_until_done()
    if status.code != StatusCode.OK:
        assert got == (int(status.code), status.pc), (
            f"{label}: RTL {got}, golden {status.code.name} at {status.pc} ({status.message})"
        )
        return
    assert got is None, f"{label}: RTL error {got}, golden OK"
    final = tb.dram.ram.read(0, DRAM_BYTES)
    want = result.dram.data.tobytes()
    if final != want:
        diff = [i for i in range(DRAM_BYTES) if final[i] != want[i]]
        i = diff[0]
        raise AssertionError(
            f"{label}: {len(diff)} DRAM bytes differ, first at {i:#x}: RTL "
            f"{final[i : i + 8].hex()} golden {want[i : i + 8].hex()}"
        )


def random_store(rng: random.Random, cfg, spad_ok: bool = True) -> Store:
    mem = rng.choice([MemSpace.SPAD, MemSpace.ACC])
    e = 1 if mem == MemSpace.SPAD else 4
    row = cfg.lanes if mem == MemSpace.SPAD else cfg.cols
    rows, tiles = rng.randint(1, 5), rng.randint(1, 3)
    length = rng.randint(1, row)
    src = rng.randrange(0, FILL_ROWS - rows * tiles + 1)
    stride = tiles * length * e + rng.choice([0, 0, 1, 3, 8, rng.randint(0, 300)])
    if rows == 1:
        stride = rng.randint(0, 50)
    span = (rows - 1) * stride + tiles * length * e
    if rng.random() < 0.3:
        off = 0x1000 * rng.randint(1, 8) - rng.randint(1, span)
    else:
        off = rng.randrange(0, SRC_REGION - span - 0x100)
    return Store(
        mem=mem,
        src=src,
        rows=rows,
        tiles=tiles,
        base=rng.randrange(3),
        offset=off,
        stride=stride,
        length=length,
    )


def _tb(dut, hostile: bool, salt: int) -> TB:
    p = params()
    return TB(dut, seed=p["seed"] * 1000 + salt + (500 if hostile else 0), hostile=hostile)


async def _random_stores(dut, hostile: bool) -> None:
    tb = _tb(dut, hostile, 1)
    rng = tb.rng
    image = bytes(rng.getrandbits(8) for _ in range(DRAM_BYTES))
    for case in range(params()["cases"]):
        bases = {b: rng.randrange(0, 0x100) for b in range(3)}
        stores = [random_store(rng, tb.cfg) for _ in range(rng.randint(1, 4))]
        await run_case(tb, image, bases, stores, f"case {case} {stores}")
    assert not tb.monitor.errors, tb.monitor.errors[:5]
    dut._log.info("random stores: %d AW bursts", tb.monitor.aw_bursts)


async def _store_errors(dut, hostile: bool) -> None:
    tb = _tb(dut, hostile, 2)
    cfg = tb.cfg
    image = bytes(tb.rng.getrandbits(8) for _ in range(DRAM_BYTES))
    ok = dict(
        mem=MemSpace.SPAD, src=0, rows=2, tiles=2, base=0, offset=0x100, stride=64, length=cfg.lanes
    )
    cases = {
        "length": dict(length=cfg.lanes + 1),
        "acc length": dict(mem=MemSpace.ACC, length=cfg.cols + 1),
        "spad rows": dict(src=cfg.scratchpad_rows - 3),
        "acc rows": dict(mem=MemSpace.ACC, length=1, src=cfg.accumulator_rows - 2),
        "length before rows": dict(length=cfg.lanes + 1, src=cfg.scratchpad_rows),
        "dram": dict(offset=DRAM_BYTES - 64 - 2 * cfg.lanes + 1),
        "dram, exact fit": dict(offset=DRAM_BYTES - 64 - 2 * cfg.lanes),
        "beyond addr_bits": dict(offset=2**32 - 8),
        "overlap": dict(stride=2 * cfg.lanes - 1),
        "overlap zero stride": dict(stride=0),
        "dram before overlap": dict(stride=1, offset=DRAM_BYTES - 2),
        "rows before dram": dict(src=cfg.scratchpad_rows, offset=DRAM_BYTES),
        "one row, zero stride": dict(rows=1, stride=0),
    }
    for label, change in cases.items():
        bad = Store(**{**ok, **change})
        await run_case(tb, image, {0: 0}, [Store(**ok), bad, Store(**ok)], label)


@cocotb.test()
async def random_stores(dut):
    await _random_stores(dut, hostile=False)


@cocotb.test()
async def random_stores_hostile(dut):
    await _random_stores(dut, hostile=True)


@cocotb.test()
async def store_errors(dut):
    await _store_errors(dut, hostile=False)


@cocotb.test()
async def store_errors_hostile(dut):
    await _store_errors(dut, hostile=True)


@cocotb.test()
async def write_error_response(dut):
    """A BRESP SLVERR is DRAM_RANGE at the STORE it belongs to, reported once every response
    of that STORE arrived."""
    tb = _tb(dut, True, 3)
    cfg = tb.cfg
    await tb.reset()
    tb.dram.ram.write(0, bytes(DRAM_BYTES))
    tb.dram.error_ranges = [(0x2008, 0x2009)]
    ok = Store(
        mem=MemSpace.SPAD, src=0, rows=2, tiles=2, base=0, offset=0x100, stride=64, length=cfg.lanes
    )
    tb.send(ok, 4)
    tb.send(
        Store(
            mem=MemSpace.ACC,
            src=0,
            rows=3,
            tiles=1,
            base=0,
            offset=0x2000,
            stride=64,
            length=cfg.cols,
        ),
        5,
    )
    tb.send(ok, 6)
    assert await tb.run_until_done() == (int(StatusCode.DRAM_RANGE), 5)
    assert tb.s2c.transfers == 0


@cocotb.test()
async def tokens_and_sync(dut):
    """A STORE with pop_prev waits for its c2s token (no AXI write before it); push_prev is
    given only after the write responses; a SYNC relays a token."""
    tb = _tb(dut, True, 4)
    cfg = tb.cfg
    await tb.reset()
    st = Store(
        mem=MemSpace.ACC,
        src=1,
        rows=3,
        tiles=2,
        base=0,
        offset=0x333,
        stride=200,
        length=cfg.cols,
        pop_prev=True,
        push_prev=True,
    )
    tb.send(st, 7)
    tb.send(Sync(target=SyncTarget.STORE, pop_prev=True, push_prev=True), 8)
    for _ in range(200):
        await RisingEdge(dut.clk)
    assert tb.monitor.aw_bursts == 0, "STORE wrote before its token arrived"
    assert int(dut.stall_token.value) == 1
    tb.c2s.tokens = 2
    assert await tb.run_until_done() is None
    assert tb.c2s.transfers == 2 and tb.s2c.transfers == 2
    assert tb.monitor.aw_bursts > 0 and not tb.monitor.errors


@cocotb.test()
async def throughput(dut):
    """Cycles of typical STOREs with an ideal DRAM and 1-cycle SRAM reads, to ``metrics.json``."""
    p = params()
    tb = TB(dut, seed=p["seed"], hostile=False)
    cfg = tb.cfg
    metrics = {}
    for label, mem, offset, length in [
        ("spad_aligned", MemSpace.SPAD, 0, cfg.lanes),
        ("spad_unaligned", MemSpace.SPAD, 3, cfg.lanes),
        ("acc_aligned", MemSpace.ACC, 0, cfg.cols),
        ("acc_unaligned", MemSpace.ACC, 5, cfg.cols),
    ]:
        e = 1 if mem == MemSpace.SPAD else 4
        st = Store(
            mem=mem,
            src=0,
            rows=FILL_ROWS,
            tiles=1,
            base=0,
            offset=offset,
            stride=length * e,
            length=length,
        )
        await tb.reset()
        tb.send(st, 0)
        while tb.cmd.queue:
            await RisingEdge(dut.clk)
        start = tb.clocked.cycle
        assert await tb.run_until_done() is None
        metrics[f"store_{label}"] = {
            "rows": FILL_ROWS,
            "row_bytes": length * e,
            "beat_bytes": cfg.dma_data_bits // 8,
            "cycles": tb.clocked.cycle - start - 5,
        }
    with open("metrics.json", "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    dut._log.info("throughput: %s", metrics)


@cocotb.test()
async def flush_above(dut):
    """STOREs above ``flush_above.pc`` are taken and discarded (no DRAM write); those below
    complete."""
    tb = _tb(dut, False, 5)
    cfg = tb.cfg
    await tb.reset()
    tb.dram.ram.write(0, bytes(DRAM_BYTES))
    tb.spad[:] = np.arange(tb.spad.size, dtype=np.int64).reshape(tb.spad.shape) % 97 + 1
    dut.flush_above__valid.value = 1
    dut.flush_above__pc.value = 10
    st = Store(
        mem=MemSpace.SPAD, src=0, rows=2, tiles=1, base=0, offset=0x100, stride=64, length=cfg.lanes
    )
    tb.send(st, 9)
    tb.send(dataclasses.replace(st, offset=0x400), 11)
    tb.send(dataclasses.replace(st, offset=0x800, pop_prev=True), 12)
    got = await tb.run_until_done()
    await RisingEdge(dut.clk)
    dut.flush_above__valid.value = 0
    assert got is None, got
    mem = tb.dram.ram.read(0, DRAM_BYTES)
    assert mem[0x100 : 0x100 + cfg.lanes] == tb.spad[0].tobytes()
    assert not any(mem[0x400:0x1000]), "a flushed STORE wrote DRAM"
