"""cocotb tests of the Verilated accelerator top level (``nmx_accelerator``, hw/accelerator.py).

Parameters come from ``NMX_TB_PARAMS``, a JSON object: ``config`` (the ``AcceleratorConfig``
fields, required), ``seed`` (default 1), ``programs`` (random programs per test, default 40),
``backpressure`` (probability of a pause cycle on every AXI channel, default 0.3).

:class:`TB` owns the clock, the reset, the DRAM (a cocotbext-axi ``AxiSlave`` over
:class:`Dram`, which answers SLVERR inside injected fault ranges) and the register master
(``AxiLiteMaster``); :meth:`TB.run` runs one program from the host's side, as a driver would.
Every run checks the status against ``sim.golden``: the status code and word offset of the
golden model's run of the same words (a word fetched from a fault range is DRAM_RANGE, which the
golden model cannot see), and whole-machine programs also the final DRAM image, byte for byte,
and the scratchpad and accumulator rows the golden model wrote.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiSlave
from cocotbext.axi.sparse_memory import SparseMemory

from hw.config import AcceleratorConfig
from hw.isa import (
    ALLOWED_DEPS,
    TOKEN_POPS,
    TOKEN_PUSHES,
    TOKEN_QUEUES,
    WORD_BYTES,
    Dmacfg,
    Epi,
    Gemm,
    Halt,
    Load,
    Loadt,
    Setbase,
    Store,
    Sync,
    SyncTarget,
    Unit,
    decode,
    encode,
)
from hw.registers import (
    COUNTERS,
    ID_VALUE,
    REGISTER_BYTES,
    RunState,
    by_name,
    decode_fields,
)
from sim.golden import GoldenModel, StatusCode
from tb.random_programs import illegal_word

CLOCK_NS = 10


def tb_params() -> dict:
    """Test parameters from ``NMX_TB_PARAMS`` (``config`` is required)."""
    params = {"seed": 1, "programs": 40, "backpressure": 0.3,
              **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    if "config" not in params:
        raise ValueError(f"NMX_TB_PARAMS lacks 'config': got {params}")
    return params


class Dram:
    """Byte-addressed DRAM behind the AXI slave model.

    Reads and writes that touch ``faults`` (byte ranges, both directions, SLVERR) or
    ``axi_faults`` (:class:`tb.random_programs.AxiFault`: one direction, SLVERR or DECERR) fail;
    :class:`TB` turns the slave model's SLVERR into the fault's response code. With
    :meth:`set_latency`, an access waits a random number of cycles first (the slave model serves
    one beat at a time, so this is read latency, W backpressure and late B responses). ``writes``
    counts write operations, for the no-write-after-done check.
    """

    def __init__(self, addr_bits: int, clk=None):
        self.mem = SparseMemory(2**addr_bits)
        self.faults: list[tuple[int, int]] = []
        self.axi_faults: tuple = ()
        self.clk = clk
        self.latency: tuple[random.Random, float, int] | None = None
        self.read_resp = self.write_resp = 2
        self.writes = 0

    def set_latency(self, rng: random.Random, probability: float, max_cycles: int) -> None:
        """Delay an access by 1..``max_cycles`` cycles with ``probability`` (0: no delays)."""
        self.latency = (rng, probability, max_cycles) if probability else None

    async def _delay(self) -> None:
        if self.latency is not None:
            rng, p, most = self.latency
            if rng.random() < p:
                await ClockCycles(self.clk, rng.randint(1, most))

    def _check(self, address: int, length: int, write: bool) -> None:
        for lo, hi in self.faults:
            if address < hi and lo < address + length:
                raise ValueError(f"injected fault at {address:#x}")
        for f in self.axi_faults:
            if f.write == write and f.hits(address, length):
                if write:
                    self.write_resp = f.resp
                else:
                    self.read_resp = f.resp
                raise ValueError(f"injected {f} at {address:#x}")

    async def read(self, address: int, length: int) -> bytes:
        await self._delay()
        self.read_resp = 2
        self._check(address, length, False)
        return self.mem.read(address, length)

    async def write(self, address: int, data: bytes) -> None:
        await self._delay()
        self.writes += 1
        self._check(address, len(data), True)
        self.mem.write(address, data)


def pauses(rng: random.Random, probability: float):
    """A cocotbext-axi pause generator: pause each cycle with ``probability``."""
    while True:
        yield rng.random() < probability


class TB:
    """Clock, reset, DRAM and register master around the accelerator."""

    def __init__(self, dut, config: AcceleratorConfig, seed: int = 1):
        self.dut = dut
        self.config = config
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
        self.rng = random.Random(seed)
        self.dram = Dram(config.addr_bits, dut.clk)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.axi = AxiSlave(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, target=self.dram)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self._error_codes()

    def _error_codes(self) -> None:
        """Answer a failed access with its fault's code (the slave model only sends SLVERR)."""
        dram = self.dram
        r_send = self.axi.read_if.r_channel.send
        b_send = self.axi.write_if.b_channel.send

        async def send_r(r):
            if int(r.rresp) == 2:
                r.rresp = dram.read_resp
            await r_send(r)

        async def send_b(b):
            if int(b.bresp) == 2:
                b.bresp = dram.write_resp
            dram.write_resp = 2
            await b_send(b)

        self.axi.read_if.r_channel.send = send_r
        self.axi.write_if.b_channel.send = send_b

    def set_backpressure(self, probability: float) -> None:
        """Random pauses on all five AXI channels and on the register bus."""
        channels = [
            self.axi.read_if.ar_channel, self.axi.read_if.r_channel,
            self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
            self.axi.write_if.b_channel,
            self.csr.write_if.aw_channel, self.csr.write_if.w_channel,
            self.csr.write_if.b_channel, self.csr.read_if.ar_channel,
            self.csr.read_if.r_channel,
        ]
        for ch in channels:
            ch.set_pause_generator(pauses(random.Random(self.rng.random()), probability)
                                   if probability else None)
            if not probability:
                ch.pause = False  # a removed generator leaves its last value behind

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # ------------------------------------------------------------ registers
    async def read_word(self, offset: int) -> int:
        resp = await self.csr.read(offset, REGISTER_BYTES)
        assert resp.resp == 0, f"read of {offset:#x} answered {resp.resp}"
        return int.from_bytes(resp.data, "little")

    async def write_word(self, offset: int, value: int) -> None:
        resp = await self.csr.write(offset, value.to_bytes(REGISTER_BYTES, "little"))
        assert resp.resp == 0, f"write of {offset:#x} answered {resp.resp}"

    async def read_reg(self, name: str) -> int:
        """A register's value (a 64-bit one low word first, so counters read consistently)."""
        reg = by_name(name)
        value = 0
        for w in range(reg.words):
            value |= await self.read_word(reg.offset + REGISTER_BYTES * w) << (32 * w)
        return value

    async def write_reg(self, name: str, value: int) -> None:
        reg = by_name(name)
        for w in range(reg.words):
            await self.write_word(reg.offset + REGISTER_BYTES * w, (value >> (32 * w)) & 0xFFFFFFFF)

    async def counters(self) -> dict[str, int]:
        return {name: await self.read_reg(name) for name, _ in COUNTERS}

    # ------------------------------------------------------------ running programs
    async def run(self, words: list[int], *, prog_addr: int, prog_len: int | None = None,
                  dram_limit: int = 1 << 24, irq: bool = False,
                  max_cycles: int = 100_000) -> tuple[int, int]:
        """Write ``words`` at ``prog_addr``, start, wait for DONE; return (code, offset)."""
        data = b"".join(w.to_bytes(WORD_BYTES, "little") for w in words)
        self.dram.mem.write(prog_addr, data)
        await self.write_reg("PROG_ADDR", prog_addr)
        await self.write_reg("PROG_LEN", len(words) if prog_len is None else prog_len)
        await self.write_reg("DRAM_LIMIT", dram_limit)
        ctrl = by_name("CTRL")
        irq_bit = (1 << ctrl.field("irq_enable").lsb) if irq else 0
        await self.write_reg("CTRL", irq_bit | (1 << ctrl.field("start").lsb))
        return await self.wait_done(max_cycles)

    async def wait_done(self, max_cycles: int) -> tuple[int, int]:
        """Wait for STATUS.state = DONE; the watchdog fails a run still busy after
        ``max_cycles`` and prints each unit's state. Between register polls the run state is
        sampled from the RTL's signal (cheap), so polling does not dominate the simulation."""
        start = cocotb.utils.get_sim_time("ns")
        try:
            state = self.dut.core.dispatcher.state
            int(state.value)
        except (AttributeError, ValueError):
            state = None
        while True:
            if state is None or int(state.value) == RunState.DONE:
                status = decode_fields("STATUS", await self.read_reg("STATUS"))
                if status["state"] == RunState.DONE:
                    return status["code"], await self.read_reg("STATUS_OFFSET")
            elapsed = (cocotb.utils.get_sim_time("ns") - start) / CLOCK_NS
            if elapsed > max_cycles:
                raise AssertionError(f"watchdog: not done after {max_cycles} cycles; "
                                     f"{await self.report()}")
            await ClockCycles(self.dut.clk, 8 if state is None else 32)

    async def report(self) -> str:
        """The machine's state for a hung run: status, non-zero counters, and each unit's state
        read from the RTL (queue occupancies, token counts, busy flags, outstanding AXI)."""
        status = decode_fields("STATUS", await self.read_reg("STATUS"))
        counters = await self.counters()
        busy = {k: v for k, v in counters.items() if v}
        return f"STATUS {status}, counters {busy}\n" + self.unit_state()

    def unit_state(self) -> str:
        """One line per unit of internal state (signals that a timing change may rename show
        as '?')."""
        core = self.dut.core

        def sig(path: str) -> str:
            h = core
            try:
                for part in path.split("."):
                    h = getattr(h, part)
                return str(int(h.value))
            except (AttributeError, ValueError, TypeError):
                return "?"

        def line(name: str, paths: dict[str, str]) -> str:
            return f"  {name:<10s} " + ", ".join(f"{k} {sig(p)}" for k, p in paths.items())

        queues = {f"{u} queue": f"dispatcher.{u}_queue.inner_level"
                  for u in ("load", "compute", "store")}
        queues.update({f"{u} queue head": f"dispatcher.{u}_queue.r_rdy"
                       for u in ("load", "compute", "store")})
        return "\n".join([
            line("dispatch", {"state": "dispatcher.state", "fetch_pc": "dispatcher.fetch_pc",
                              "halted": "dispatcher.halted", "fetch inflight":
                              "dispatcher.inflight", "code": "dispatcher.code",
                              "offset": "dispatcher.offset", "err_code": "dispatcher.err_code"}),
            line("queues", queues),
            line("tokens", {q: f"tokens.tokens_{q}" for q in ("l2c", "c2l", "c2s", "s2c")}),
            line("load", {"busy": "load_unit.busy", "ctrl_state": "load_unit.ctrl_state",
                          "rows issued": "load_unit.rows_issued",
                          "rows written": "load_unit.rows_written",
                          "err_pending": "load_unit.err_pending"}),
            line("compute", {"busy": "compute_unit.busy",
                             "gemm outstanding": "compute_unit.gemm_outstanding",
                             "gemm unretired": "compute_unit.gemm_unretired",
                             "epi busy": "compute_unit.epi_busy",
                             "epi running": "compute_unit.epi_running",
                             "epi unretired": "compute_unit.epi_unretired"}),
            line("store", {"busy": "store_unit.busy", "ctrl_state": "store_unit.ctrl_state",
                           "bursts inflight": "store_unit.inflight",
                           "b_error": "store_unit.b_error"}),
            line("axi", {"reads outstanding": "reads_out", "writes outstanding": "writes_out"}),
        ])


# ---------------------------------------------------------------- program generation


def _flags_for(unit: Unit, tokens: dict[str, int], cap: int, rng: random.Random) -> dict:
    flags = {}
    for flag in sorted(ALLOWED_DEPS[unit]):
        if rng.random() < 0.4:
            if flag.startswith("pop"):
                q = TOKEN_POPS[(unit, flag)]
                if tokens[q] > 0:
                    tokens[q] -= 1
                    flags[flag] = True
            else:
                q = TOKEN_PUSHES[(unit, flag)]
                if tokens[q] < cap:
                    tokens[q] += 1
                    flags[flag] = True
    return flags


def control_program(rng: random.Random, config: AcceleratorConfig, n: int) -> list[int]:
    """``n`` random valid SETBASE/SYNC instructions (tokens balanced) and a HALT."""
    tokens = dict.fromkeys(TOKEN_QUEUES, 0)
    words = []
    for _ in range(n):
        if rng.random() < 0.3:
            value = rng.choice([0, (1 << config.addr_bits) - 1,
                                rng.randrange(1 << config.addr_bits)])
            words.append(encode(Setbase(reg=rng.randrange(4), value=value)))
        else:
            target = rng.choice(list(SyncTarget))
            unit = Unit(target.value)
            words.append(encode(Sync(target=target, **_flags_for(unit, tokens,
                                                                  config.instr_fifo_depth, rng))))
    words.append(encode(Halt()))
    return words


def expected_status(config, words, prog_len, faults=(), dram=bytes(64)):
    """(code, offset) the RTL must report: the golden model's on ``dram``, cut at the first
    faulted fetch (DRAM_RANGE) in program order."""
    cuts = [(o, StatusCode.DRAM_RANGE) for o in faults if o < prog_len]
    cut, cut_code = min(cuts) if cuts else (prog_len, None)
    # The golden model runs the words before the cut: reaching the cut is NO_HALT at it.
    status = GoldenModel(config).run(list(words[:cut]), dram).status
    assert status.code not in (StatusCode.TOKEN_UNDERFLOW, StatusCode.TOKEN_OVERFLOW,
                               StatusCode.HAZARD, StatusCode.UNINIT_READ), status
    if cut_code is not None and status.code == StatusCode.NO_HALT and status.pc == cut:
        return int(cut_code), cut
    return int(status.code), status.pc


def random_case(rng: random.Random, config: AcceleratorConfig):
    """One random program run: (words, prog_addr, prog_len, fault offsets, mode)."""
    words = control_program(rng, config, rng.randrange(0, 40))
    mode = rng.choice(["ok", "ok", "no_halt", "illegal", "setbase_range",
                       "halt_mid", "fetch_fault", "fault_after_halt"])
    faults = []
    prog_len = len(words)
    if mode == "no_halt":
        words = words[:-1]
        prog_len = len(words)
    elif mode == "illegal":
        words.insert(rng.randrange(len(words)), illegal_word(rng))
        prog_len = len(words)
    elif mode == "setbase_range":
        bad = encode(Setbase(reg=rng.randrange(4),
                             value=rng.randrange(1 << config.addr_bits, 1 << 64)))
        words.insert(rng.randrange(len(words)), bad)
        prog_len = len(words)
    elif mode == "halt_mid":
        words += [illegal_word(rng) for _ in range(rng.randrange(1, 20))]
        prog_len = len(words)
    elif mode in ("fetch_fault", "fault_after_halt"):
        if mode == "fault_after_halt":
            words += [illegal_word(rng) for _ in range(rng.randrange(1, 12))]
        prog_len = len(words)
        faults.append(rng.randrange(len(words)))
    # Programs anywhere in the low 1 MiB, often close to a 4 KiB boundary.
    page = rng.randrange(1, 256) << 12
    prog_addr = page - WORD_BYTES * rng.randrange(0, 24) if rng.random() < 0.5 else (
        page + WORD_BYTES * rng.randrange(0, 256))
    return words, prog_addr, prog_len, faults, mode


# ---------------------------------------------------------------- tests


async def _setup(dut, backpressure: float | None = None) -> tuple[TB, dict]:
    params = tb_params()
    config = AcceleratorConfig.from_dict(params["config"])
    tb = TB(dut, config, params["seed"])
    tb.set_backpressure(params["backpressure"] if backpressure is None else backpressure)
    await tb.reset()
    return tb, params


@cocotb.test()
async def registers(dut):
    """Reset values, RW fields, read-only bits, unmapped offsets, the ID and fingerprint."""
    tb, _ = await _setup(dut)
    assert await tb.read_reg("ID") == ID_VALUE
    assert await tb.read_reg("FINGERPRINT") == int(tb.config.fingerprint, 16)
    assert decode_fields("STATUS", await tb.read_reg("STATUS"))["state"] == RunState.IDLE
    for name in ("PROG_LEN", "DRAM_LIMIT"):
        assert await tb.read_reg(name) == 0
        value = tb.rng.getrandbits(by_name(name).width)
        await tb.write_reg(name, value)
        assert await tb.read_reg(name) == value
    await tb.write_reg("PROG_ADDR", 0x1234_5678_9ABC_DEF7)
    assert await tb.read_reg("PROG_ADDR") == 0x1234_5678_9ABC_DEF0, "bits 3:0 read as zero"
    await tb.write_reg("ID", 0)
    await tb.write_reg("STATUS", 0xFFFF_FFFF)
    assert await tb.read_reg("ID") == ID_VALUE
    assert decode_fields("STATUS", await tb.read_reg("STATUS"))["state"] == RunState.IDLE
    # Byte strobes: write only byte 1 of PROG_LEN.
    await tb.write_reg("PROG_LEN", 0x11223344)
    await tb.csr.write(by_name("PROG_LEN").offset + 1, b"\xAA")
    assert await tb.read_reg("PROG_LEN") == 0x1122AA44
    last = max(r.offset + r.width // 8 for r in (by_name(n) for n, _ in COUNTERS))
    for offset in (last, 0xFFC, by_name("ID").offset + 0x3C):
        resp = await tb.csr.read(offset, 4)
        assert resp.resp == 2, f"unmapped read at {offset:#x} answered {resp.resp}"
        wresp = await tb.csr.write(offset, b"\0\0\0\0")
        assert wresp.resp == 2, f"unmapped write at {offset:#x} answered {wresp.resp}"


@cocotb.test()
async def random_control_programs(dut):
    """Random SETBASE/SYNC/HALT programs with illegal words, NO_HALT, FIELD_RANGE, faults,
    status and offset as the golden model, counters consistent."""
    tb, params = await _setup(dut)
    rng = random.Random(params["seed"])
    modes = {}
    for i in range(params["programs"]):
        words, prog_addr, prog_len, faults, mode = random_case(rng, tb.config)
        # A fault fails the whole bus beat: every word sharing it is DRAM_RANGE.
        beat = max(WORD_BYTES, tb.config.dma_data_bits // 8)
        tb.dram.faults = []
        for o in list(faults):
            lo = (prog_addr + WORD_BYTES * o) // beat * beat
            tb.dram.faults.append((lo, lo + beat))
            faults += [k for k in range(len(words))
                       if lo <= prog_addr + WORD_BYTES * k < lo + beat and k not in faults]
        want = expected_status(tb.config, words, prog_len, faults)
        got = await tb.run(words, prog_addr=prog_addr, prog_len=prog_len)
        tb.dram.faults = []
        replay = f"program {i} (mode {mode}, seed {params['seed']}, prog_addr {prog_addr:#x})"
        assert got == want, f"{replay}: RTL (code, offset) {got}, expected {want}"
        counters = await tb.counters()
        if want[0] == StatusCode.OK:
            ran = [decode(w) for w in words[: want[1] + 1]]
            assert counters["RETIRED_DISPATCH"] == sum(
                isinstance(x, (Setbase, Halt)) for x in ran), (replay, counters)
            for unit in (Unit.LOAD, Unit.COMPUTE, Unit.STORE):
                n = sum(isinstance(x, Sync) and x.unit == unit for x in ran)
                assert counters[f"RETIRED_{unit.name}"] == n, (replay, unit, counters)
        assert counters["CYCLES"] > 0
        assert counters["ARRAY_MACS"] == 0
        modes[mode] = modes.get(mode, 0) + 1
    logging.getLogger("cocotb.tb.accelerator").info("modes run: %s", modes)


@cocotb.test()
async def run_off_the_end_and_top_of_memory(dut):
    """PROG_LEN 0 and programs without HALT end NO_HALT at PROG_LEN; words past 2**addr_bits
    are DRAM_RANGE."""
    tb, _ = await _setup(dut)
    sync = encode(Sync(target=SyncTarget.COMPUTE))
    assert await tb.run([], prog_addr=0x2000) == (StatusCode.NO_HALT, 0)
    assert await tb.run([sync] * 5, prog_addr=0x2000) == (StatusCode.NO_HALT, 5)
    # PROG_LEN shorter than the words present: the HALT at word 3 is never reached.
    assert await tb.run([sync] * 3 + [encode(Halt())], prog_addr=0x3000, prog_len=3) == (
        StatusCode.NO_HALT, 3)
    top = 1 << tb.config.addr_bits
    assert await tb.run([sync] * 2, prog_addr=top - 2 * WORD_BYTES, prog_len=6) == (
        StatusCode.DRAM_RANGE, 2)
    assert await tb.run([sync, encode(Halt())], prog_addr=top - 2 * WORD_BYTES) == (
        StatusCode.OK, 1)


@cocotb.test()
async def irq_restart_and_soft_reset(dut):
    """irq follows DONE when enabled; a new start clears it; a deadlocked program (a pop that
    no push feeds) stays BUSY, counts its token stall, and soft reset returns to IDLE."""
    tb, _ = await _setup(dut)
    halt = encode(Halt())
    assert await tb.run([halt], prog_addr=0x4000, irq=True) == (StatusCode.OK, 0)
    await RisingEdge(tb.dut.clk)
    assert tb.dut.irq.value == 1
    assert await tb.run([halt], prog_addr=0x4000, irq=False) == (StatusCode.OK, 0)
    assert tb.dut.irq.value == 0
    deadlock = [encode(Sync(target=SyncTarget.STORE, pop_prev=True)), halt]
    await tb.write_reg("PROG_ADDR", 0x5000)
    tb.dram.mem.write(0x5000, b"".join(w.to_bytes(16, "little") for w in deadlock))
    await tb.write_reg("PROG_LEN", 2)
    await tb.write_reg("CTRL", 1)
    await ClockCycles(tb.dut.clk, 300)
    status = decode_fields("STATUS", await tb.read_reg("STATUS"))
    assert status["state"] == RunState.BUSY
    first = await tb.read_reg("STALL_C2S")
    assert first > 200, first
    assert await tb.read_reg("BUSY_STORE") >= first
    # Starting again while BUSY is ignored.
    await tb.write_reg("CTRL", 1)
    assert await tb.read_reg("STALL_C2S") > first
    await tb.write_reg("CTRL", 2)
    status = decode_fields("STATUS", await tb.read_reg("STATUS"))
    assert status["state"] == RunState.IDLE
    assert await tb.run([halt], prog_addr=0x4000) == (StatusCode.OK, 0)
    assert await tb.read_reg("STALL_C2S") == 0


@cocotb.test()
async def counters_read_consistently(dut):
    """A counter's high word is latched when its low word is read: low/high pairs read while
    CYCLES runs across a 2**32 boundary are never torn (checked by monotonicity)."""
    tb, _ = await _setup(dut, backpressure=0.0)
    deadlock = [encode(Sync(target=SyncTarget.LOAD, pop_next=True)), encode(Halt())]
    tb.dram.mem.write(0x6000, b"".join(w.to_bytes(16, "little") for w in deadlock))
    await tb.write_reg("PROG_ADDR", 0x6000)
    await tb.write_reg("PROG_LEN", 2)
    await tb.write_reg("CTRL", 1)
    index = [name for name, _ in COUNTERS].index("CYCLES")
    counter = getattr(tb.dut.core, f"counters__{index}")
    for _ in range(4):  # past the counters' clear (registered start, registered again)
        await RisingEdge(tb.dut.clk)
    counter.value = (1 << 32) - 40
    values = [await tb.read_reg("CYCLES") for _ in range(12)]
    assert values == sorted(values), values
    assert values[0] < (1 << 32) < values[-1], [hex(v) for v in values]
    await tb.write_reg("CTRL", 2)


@cocotb.test()
async def random_load_programs(dut):
    """The integrated load unit through the dispatcher and the shared read port: DMACFG, LOAD
    and LOADT programs (tb/load_unit_tb.py's generators: padded walks, tables, malformed
    records) from the image's DRAM with DRAM_LIMIT = image size, interleaved with fetch; an
    illegal word sometimes follows; status and offset as
    the golden model's."""
    from tb.load_unit_tb import random_image, random_load_case, table_case

    tb, params = await _setup(dut)
    rng = random.Random(params["seed"] + 1000)
    malformed = [None, None, "bias_shift", "bias_reserved", "pwl_shift", "pwl_header",
                 "pwl_order"]
    codes = {}
    for i in range(params["programs"]):
        image = bytearray(random_image(rng))
        if rng.random() < 0.5:
            bases, body = random_load_case(rng, tb.config)
        else:
            bases, body = table_case(rng, tb.config, image, rng.choice(malformed))
        prog = [Setbase(reg=r, value=v) for r, v in sorted(bases.items())] + body
        words = [encode(ins) for ins in prog]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words) + 1), illegal_word(rng))
        words.append(encode(Halt()))
        if rng.random() < 0.3:
            image_size = rng.randrange(len(image) // 2, len(image))  # DRAM_RANGE at the limit
        else:
            image_size = len(image)
        dram = bytes(image[:image_size])
        tb.dram.mem.write(0, dram)
        prog_addr = 0x20000 + WORD_BYTES * rng.randrange(0, 512)
        want = expected_status(tb.config, words, len(words), dram=dram)
        got = await tb.run(words, prog_addr=prog_addr, dram_limit=image_size)
        replay = f"load program {i} (seed {params['seed']}, prog_addr {prog_addr:#x})"
        assert got == want, f"{replay}: RTL (code, offset) {got}, expected {want}"
        counters = await tb.counters()
        if want[0] == StatusCode.OK:
            n = sum(isinstance(decode(w), (Dmacfg, Loadt, Load)) for w in words)
            assert counters["RETIRED_LOAD"] == n, (replay, counters)
            assert counters["BUSY_LOAD"] > 0
        name = StatusCode(want[0]).name
        codes[name] = codes.get(name, 0) + 1
    logging.getLogger("cocotb.tb.accelerator").info("load programs by status: %s", codes)


# ---------------------------------------------------------------- compute programs



def compute_program(rng: random.Random, cfg: AcceleratorConfig):
    """A valid, race-free program: load int8 rows, every bias/scale entry and every PWL table,
    then random GEMMs and EPIs over them, then STOREs of scratchpad rows and of accumulator rows
    the program wrote (an l2c token orders loads before compute, a c2s token compute before the
    stores).

    Returns (instructions, DRAM image bytes).
    """
    from hw.isa import (
        Epi,
        EpiDest,
        GemmMode,
        MemSpace,
        ScaleMode,
        TableKind,
        encode_bias_entries,
        encode_pwl_table,
        pwl_table_bytes,
    )
    from tb.load_unit_tb import random_pwl

    R, C, lanes = cfg.rows, cfg.cols, cfg.lanes
    ns = 64  # scratchpad rows loaded
    SPAD_DATA = 0
    BIAS_DATA = -(-(ns * lanes) // 4096) * 4096
    PWL_DATA = BIAS_DATA + 8 * cfg.bias_entries
    OUT_DATA = PWL_DATA + cfg.pwl_functions * pwl_table_bytes(cfg.pwl_segments)
    image = bytearray(rng.getrandbits(8) for _ in range(OUT_DATA + 0x4000))
    image[SPAD_DATA:SPAD_DATA + ns * lanes] = bytes(rng.getrandbits(8) for _ in range(ns * lanes))
    n_entries = cfg.bias_entries
    image[BIAS_DATA:BIAS_DATA + 8 * n_entries] = encode_bias_entries(
        [rng.randint(-2**20, 2**20) for _ in range(n_entries)],
        [rng.randint(-2**15, 2**15 - 1) for _ in range(n_entries)],
        [rng.randint(0, 24) for _ in range(n_entries)])
    tables = b"".join(encode_pwl_table(random_pwl(rng, cfg.pwl_segments), cfg.pwl_segments)
                      for _ in range(cfg.pwl_functions))
    image[PWL_DATA:PWL_DATA + len(tables)] = tables
    prog = [
        Setbase(reg=0, value=0),
        Dmacfg(slot=0, height=ns, width=1, pitch=lanes, pix=lanes, sy=1, sx=0),
        Load(mem=MemSpace.SPAD, geom=0, base=0, offset=SPAD_DATA, dst=0, outer=ns, inner=1,
             length=lanes),
        Loadt(kind=TableKind.BIAS, dst=0, count=n_entries, base=0, offset=BIAS_DATA),
        Loadt(kind=TableKind.PWL, dst=0, count=cfg.pwl_functions, base=0, offset=PWL_DATA,
              push_next=True),
    ]
    acc_rows = min(cfg.accumulator_rows, 128)
    written: list[tuple[int, int]] = []  # accumulator regions written (start, rows)
    first = True
    for _ in range(rng.randint(2, 10)):
        if written and rng.random() < 0.45:
            src, rows = rng.choice(written)
            n = rng.randint(1, 2) if rows >= 2 else 1
            m = rng.randint(1, rows // n)
            dest = rng.choice(list(EpiDest))
            mode = rng.choice(list(ScaleMode))
            scale_n = n * C if mode == ScaleMode.COL else m
            scale = rng.randrange(0, n_entries - scale_n + 1)
            if dest == EpiDest.SPAD:
                dst = rng.randrange(0, ns - n * m + 1)
            elif dest == EpiDest.ACC:
                dst = src if rng.random() < 0.5 else rng.randrange(0, acc_rows - n * m + 1)
                if dst != src and dst < src + n * m and src < dst + n * m:
                    dst = src
            else:
                span = n * m
                choices = [e for e in range(0, n_entries - span + 1)
                           if e + span <= scale or e >= scale + scale_n]
                if not choices:
                    continue
                dst = rng.choice(choices)
            ins = Epi(src=src, dst=dst, dest=dest, scale_mode=mode, scale=scale,
                      fn=rng.randrange(cfg.pwl_functions), m=m, n_tiles=n,
                      col=rng.randrange(C), out_shift=rng.randint(0, 47), pop_prev=first)
            if dest == EpiDest.ACC:
                written.append((dst, n * m))
        else:
            transpose = rng.random() < 0.3
            blk = C if transpose else R
            k, n = rng.randint(1, 2), rng.randint(1, 2)
            m = rng.randint(1, 6)
            w = rng.randrange(0, ns - n * k * blk + 1)
            a = rng.randrange(0, ns - k * m + 1)
            acc = rng.randrange(0, acc_rows - n * m + 1)
            covered = any(s <= acc and acc + n * m <= s + r for s, r in written)
            modes = [GemmMode.OVERWRITE, GemmMode.BIAS]
            if covered:
                modes += [GemmMode.ACCUMULATE, GemmMode.ACCUMULATE_BIAS]
            ins = Gemm(mode=rng.choice(modes), transpose=transpose, w=w, a=a, acc=acc, m=m,
                       k_tiles=k, n_tiles=n, bias=rng.randrange(0, n_entries - n * C + 1),
                       pop_prev=first)
            written.append((acc, n * m))
        prog.append(ins)
        first = False
    prog.append(Sync(target=SyncTarget.COMPUTE, push_next=True))
    out, first = OUT_DATA, True
    for _ in range(rng.randint(1, 4)):
        if written and rng.random() < 0.6:
            src, rows = rng.choice(written)
            mem, e, row = MemSpace.ACC, 4, C
        else:
            src, rows, mem, e, row = rng.randrange(0, ns - 8), 8, MemSpace.SPAD, 1, lanes
        tiles = rng.randint(1, 2) if rows >= 2 else 1
        per = rng.randint(1, rows // tiles)
        length = rng.randint(1, row)
        stride = tiles * length * e + rng.randint(0, 9)
        prog.append(Store(mem=mem, src=src, rows=per, tiles=tiles, base=0, offset=out,
                          stride=stride, length=length, pop_prev=first))
        out += per * stride + tiles * length * e + rng.randint(0, 5)
        first = False
    assert out <= len(image)
    prog.append(Halt())
    return prog, bytes(image)


def break_program(rng: random.Random, cfg: AcceleratorConfig, prog: list) -> tuple[list, str]:
    """Make one GEMM, EPI, STORE or LOAD of ``prog`` fail a range check (its token flags kept),
    and sometimes put an illegal word a few words after it: the RTL must report the failing
    instruction (lowest offset), not the illegal word its dispatcher reaches first."""
    import dataclasses

    targets = [i for i, x in enumerate(prog) if isinstance(x, (Gemm, Epi, Store, Load))]
    i = rng.choice(targets)
    x = prog[i]
    if isinstance(x, Gemm):
        x = dataclasses.replace(x, acc=cfg.accumulator_rows - 1, m=2)
    elif isinstance(x, Epi):
        x = dataclasses.replace(x, src=cfg.accumulator_rows - 1, m=2)
    elif isinstance(x, Store):
        x = dataclasses.replace(x, offset=(1 << 32) - 1)
    else:
        x = dataclasses.replace(x, dst=cfg.scratchpad_rows - 1)
    prog = [*prog[:i], x, *prog[i + 1:]]
    label = f"{type(x).__name__} at {i} broken"
    if rng.random() < 0.5:
        j = rng.randint(i + 1, len(prog))
        prog.insert(j, None)  # an illegal word
        label += f", illegal word at {j}"
    return prog, label


def _row(handle, index: int) -> int:
    return int(handle[index].value)


async def compare_memories(tb: TB, model) -> tuple[int, list[str]]:
    """(rows compared, differences) between the golden model's written scratchpad and
    accumulator rows and the RTL's memories (read through the simulator's hierarchy)."""
    cfg = tb.config
    bad = []
    compared = int(np.count_nonzero(model._spad_lanes) + np.count_nonzero(model._acc_written))
    spad_banks = tb.dut.core.scratchpad.banks
    per = cfg.scratchpad_rows // cfg.scratchpad_banks
    for r in np.nonzero(model._spad_lanes)[0]:
        raw = _row(getattr(spad_banks, f"bank{r // per}"), r % per)
        got = np.frombuffer(raw.to_bytes(cfg.lanes, "little"), dtype=np.int8)
        n = int(model._spad_lanes[r])
        if not np.array_equal(got[:n], model.spad[r, :n]):
            bad.append(f"spad row {r}: rtl {got[:n].tolist()} golden {model.spad[r, :n].tolist()}")
    acc_banks = tb.dut.core.accumulator.banks
    per = cfg.accumulator_rows // 2
    for r in np.nonzero(model._acc_written)[0]:
        raw = _row(getattr(acc_banks, f"bank{r // per}"), r % per)
        got = np.frombuffer(raw.to_bytes(4 * cfg.cols, "little"), dtype="<i4")
        if not np.array_equal(got, model.acc[r]):
            bad.append(f"acc row {r}: rtl {got.tolist()} golden {model.acc[r].tolist()}")
    return compared, bad


@cocotb.test()
async def random_compute_programs(dut):
    """Whole-machine differential: LOAD/LOADT, random GEMMs (all modes, transposed) and EPIs
    (SPAD/ACC/SCALE dests, COL and ROW scales, every PWL function), STOREs of scratchpad and
    accumulator rows: status as the golden model's, the final DRAM image byte for byte, and
    every scratchpad and accumulator row the golden model wrote equal in the RTL's memories."""
    tb, params = await _setup(dut)
    rng = random.Random(params["seed"] + 2000)
    stats = {"gemm": 0, "epi": 0, "store": 0, "rows": 0, "stored": 0}
    for i in range(max(1, params["programs"] // 2)):
        prog, image = compute_program(rng, tb.config)
        label = "valid"
        if rng.random() < 0.3:
            prog, label = break_program(rng, tb.config, prog)
        words = [illegal_word(rng) if ins is None else encode(ins) for ins in prog]
        prog = [ins for ins in prog if ins is not None]
        model = GoldenModel(tb.config)
        result = model.run(list(words), image)
        want = result.status
        tb.dram.mem.write(0, image)
        prog_addr = 0x40000 + WORD_BYTES * rng.randrange(0, 256)
        got = await tb.run(words, prog_addr=prog_addr, dram_limit=len(image))
        replay = f"compute program {i} ({label}, seed {params['seed']})"
        assert got == (int(want.code), want.pc), f"{replay}: RTL {got}, golden {want}"
        # Every STORE after a failing instruction depends on it through tokens, so the final
        # DRAM image is defined for failing programs too (ISA v3, partial effects).
        final = tb.dram.mem.read(0, len(image))
        expect = result.dram.data.tobytes()
        diff = [a for a in range(len(image)) if final[a] != expect[a]]
        assert not diff, (f"{replay}: {len(diff)} DRAM bytes differ, first at "
                          f"{diff[0]:#x}: RTL {final[diff[0]]:#04x} golden "
                          f"{expect[diff[0]]:#04x}")
        stats[want.code.name] = stats.get(want.code.name, 0) + 1
        if want.ok:
            stats["stored"] += sum(a != b for a, b in zip(image, expect, strict=True))
            compared, bad = await compare_memories(tb, model)
            stats["rows"] += compared
            assert not bad, f"{replay}: {len(bad)} rows differ:\n" + "\n".join(bad[:8])
            counters = await tb.counters()
            n_compute = sum(x.unit == Unit.COMPUTE for x in prog)
            assert counters["RETIRED_COMPUTE"] == n_compute, (replay, counters)
            macs = sum(x.m * x.k_tiles * x.n_tiles for x in prog if isinstance(x, Gemm))
            assert counters["ARRAY_MACS"] == macs * tb.config.rows * tb.config.cols, counters
            n_store = sum(x.unit == Unit.STORE for x in prog)
            assert counters["RETIRED_STORE"] == n_store, (replay, counters)
        stats["gemm"] += sum(isinstance(x, Gemm) for x in prog)
        stats["epi"] += sum(isinstance(x, Epi) for x in prog)
        stats["store"] += sum(isinstance(x, Store) for x in prog)
    logging.getLogger("cocotb.tb.accelerator").info("compute programs: %s", stats)
    assert stats["rows"] > 0 and stats["stored"] > 0


def _directed_params() -> dict | None:
    params = json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))
    return params if "program" in params else None


@cocotb.test(skip=_directed_params() is None)
async def directed_program(dut):
    """A program file and DRAM image named in NMX_TB_PARAMS (``program``, ``dram``): the RTL's
    status, offset and final DRAM image equal the golden model's (e.g. examples/mlp.nmasm, a
    compiled zoo bundle). Writes ``counters.json`` and the final image ``final.dram.bin``."""
    from hw.isa import Program
    from sim.dram_image import DramImage

    tb, params = await _setup(dut)
    words = Program.split_words(open(params["program"], "rb").read(), tb.config)
    image = DramImage.load(params["dram"])
    result = GoldenModel(tb.config).run(list(words), image)
    data = image.data.tobytes()
    tb.dram.mem.write(0, data)
    prog_addr = -(-len(data) // 4096) * 4096
    wall, cpu = time.perf_counter(), time.process_time()
    got = await tb.run(words, prog_addr=prog_addr, dram_limit=len(data),
                       max_cycles=params.get("max_cycles", 2_000_000))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    want = (int(result.status.code), result.status.pc)
    assert got == want, f"{params['program']}: RTL {got}, golden {result.status}"
    final = tb.dram.mem.read(0, len(data))
    expect = result.dram.data.tobytes()
    diff = [a for a in range(len(data)) if final[a] != expect[a]]
    assert not diff, f"{len(diff)} DRAM bytes differ, first at {diff[0]:#x}"
    counters = await tb.counters()
    logging.getLogger("cocotb.tb.accelerator").info(
        "%s: %s; counters %s", params["program"], result.status, counters)
    path = os.path.join(os.getcwd(), "counters.json")
    with open(path, "w") as f:
        json.dump(counters, f, indent=2)
    # The run alone (start to DONE, register polling included): what the bench scripts read.
    with open(os.path.join(os.getcwd(), "timing.json"), "w") as f:
        json.dump({"run_wall_s": wall, "run_cpu_s": cpu, "run_seconds": wall,
                   "cycles": counters["CYCLES"]}, f)
    with open(os.path.join(os.getcwd(), "final.dram.bin"), "wb") as f:
        f.write(final)


# ---------------------------------------------------------------- random programs


def _bus_for_case(tb: TB, seed: int, index: int, backpressure: float, calm: bool) -> str:
    """A hostile bus for one case, seeded by the case alone (so a replay sees the same bus):
    random pauses on all five AXI channels and random access latency (``calm``: neither, for
    cycle measurements)."""
    if calm:
        tb.set_backpressure(0.0)
        tb.dram.set_latency(random.Random(0), 0.0, 1)
        return "calm bus"
    rng = random.Random(f"bus:{seed}:{index}")
    p = rng.choice([0.0, 0.1, backpressure, backpressure, 0.6])
    tb.rng = rng
    tb.set_backpressure(p)
    lat = rng.choice([0.0, 0.02, 0.1])
    tb.dram.set_latency(random.Random(rng.random()), lat, rng.choice([4, 16, 40]))
    return f"pauses {p}, latency {lat}"


async def run_random_case(tb: TB, case, bus: str) -> dict:
    """Run one :class:`tb.random_programs.ProgramCase` and check everything it defines: status
    and offset, the DRAM image (no stray byte, none written after DONE or outside the image),
    on-chip rows and counters of an OK run, idle AXI after the end."""
    from tb.random_programs import ProgramCase

    assert isinstance(case, ProgramCase)
    where = f"{case.config_name}:{case.seed}:{case.index} ({case.kind}; {bus})"
    replay = f"replay: {case.replay()}"
    guard = bytes(random.Random(case.index).getrandbits(8) for _ in range(256))
    tb.dram.axi_faults = ()
    tb.dram.mem.write(0, case.image + guard)
    tb.dram.axi_faults = case.faults
    cycles = tb_params().get("max_cycles", 50_000 + 500 * len(case.words))
    try:
        # the watchdog: wait_done's cycle limit, and a limit on the whole host sequence
        got = await with_timeout(
            tb.run(case.words, prog_addr=case.prog_addr, prog_len=case.prog_len,
                   dram_limit=case.dram_limit, max_cycles=cycles),
            2 * cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        raise AssertionError(f"{where}: watchdog: the host's register accesses hung\n"
                             f"{tb.unit_state()}\n{replay}") from None
    except AssertionError as e:
        raise AssertionError(f"{where}: {e}\n{replay}") from None
    writes = tb.dram.writes
    assert got == case.expect, (
        f"{where}: RTL ended {StatusCode(got[0]).name} at {got[1]}, golden "
        f"{StatusCode(case.expect[0]).name} at {case.expect[1]}\n{replay}")
    final = bytearray(tb.dram.mem.read(0, len(case.image) + len(guard)))
    expect = bytearray(case.expect_dram + guard)
    for lo, hi in case.unspecified:
        final[lo:hi] = expect[lo:hi]
    if final != expect:
        diff = [a for a in range(len(expect)) if final[a] != expect[a]]
        raise AssertionError(
            f"{where}: {len(diff)} DRAM bytes differ, first at {diff[0]:#x}: RTL "
            f"{final[diff[0]]:#04x} golden {expect[diff[0]]:#04x}\n{replay}")
    words = b"".join(w.to_bytes(WORD_BYTES, "little") for w in case.words)
    assert tb.dram.mem.read(case.prog_addr, len(words)) == words, f"{where}: program overwritten"
    await ClockCycles(tb.dut.clk, 30)
    assert tb.dram.writes == writes, f"{where}: a write after DONE\n{replay}"
    state = tb.unit_state()
    assert "reads outstanding 0," in state and state.rstrip().endswith(
        "writes outstanding 0"), f"{where}: AXI not idle after DONE:\n{state}\n{replay}"
    out = {"code": StatusCode(got[0]).name}
    if case.model is not None:
        compared, bad = await compare_memories(tb, case.model)
        assert not bad, f"{where}: {len(bad)} rows differ:\n" + "\n".join(bad[:8]) + "\n" + replay
        counters = await tb.counters()
        ran = [decode(w) for w in case.words[: case.expect[1] + 1]]
        for unit in (Unit.LOAD, Unit.COMPUTE, Unit.STORE):
            n = sum(x.unit == unit for x in ran)
            assert counters[f"RETIRED_{unit.name}"] == n, (where, unit, counters, replay)
        macs = sum(x.m * x.k_tiles * x.n_tiles for x in ran if isinstance(x, Gemm))
        assert counters["ARRAY_MACS"] == macs * tb.config.rows * tb.config.cols, (where, replay)
        out.update(rows=compared, cycles=counters["CYCLES"])
    return out


@cocotb.test()
async def random_programs(dut):
    """tb/random_programs.py's cases ``first .. first + programs - 1`` of ``seed``, each under
    its own hostile bus; with ``require_coverage``, the batch must show every feature of
    ``REQUIRED_FEATURES`` (opcodes, modes, padding edges, tokens, every status the RTL reports,
    SLVERR and DECERR on reads and writes)."""
    from tb.random_programs import REQUIRED_FEATURES, coverage, make_case

    tb, params = await _setup(dut)
    name = params.get("config_name", "tiny")
    first = params.get("first", 0)
    cases, codes, cycles, rows, ok_runs = [], {}, 0, 0, []
    for index in range(first, first + params["programs"]):
        case = make_case(tb.config, name, params["seed"], index)
        bus = _bus_for_case(tb, params["seed"], index, params["backpressure"],
                            params.get("calm", False))
        out = await run_random_case(tb, case, bus)
        if "cycles" in out:
            ok_runs.append((index, out["cycles"]))
        codes[out["code"]] = codes.get(out["code"], 0) + 1
        cycles += out.get("cycles", 0)
        rows += out.get("rows", 0)
        cases.append(case)
        if (index - first) % 25 == 24 or params.get("verbose"):
            logging.getLogger("cocotb.tb.accelerator").warning(
                "%d programs run, up to %s:%d:%d; status codes %s", index - first + 1, name,
                params["seed"], index, codes)
    cov = coverage(cases)
    log = logging.getLogger("cocotb.tb.accelerator")
    log.info("random programs %s:%d [%d, %d): %s; %d rows compared, %d cycles in OK runs",
             name, params["seed"], first, first + params["programs"], codes, rows, cycles)
    with open(os.path.join(os.getcwd(), "random_programs.json"), "w") as f:
        json.dump({"codes": codes, "coverage": cov, "ok_cycles": cycles, "rows": rows,
                   "ok_runs": ok_runs}, f, indent=1)
    if params.get("require_coverage"):
        missing = sorted(REQUIRED_FEATURES - set(cov))
        assert not missing, f"features not covered by {len(cases)} programs: {missing}"
