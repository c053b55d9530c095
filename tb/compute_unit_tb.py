"""cocotb tests of the Verilated compute unit with its scratchpad and accumulator (module
``compute_harness``, tb/compute_harness.py), against the golden model.

Parameters come from ``NMX_TB_PARAMS`` (JSON): ``preset`` (config preset name, required),
``seed`` (1), ``cases`` (number of random cases, 10), ``case_len`` (instructions per case, 4),
``max_m`` (largest m, 32), ``stall`` (probability of backpressure/gaps on every bench-driven
stream, 0.0).

The bench fills every scratchpad and accumulator row through the load ports from the golden
model's state after its prefix (tb/compute_cases.py), then runs the cases one after another on
the same machine state; after each case it reads every accumulator row back through the store
port and compares it with the golden model's, and after the last case the scratchpad and the
scale entries too. The bias/scale SRAM and the epilogue are bench models (``hw.numeric``) with
latency and random backpressure. ``utilisation`` measures back-to-back GEMMs and GEMM + EPI
pairs from the unit's counters and writes them to ``metrics.json`` in the run folder.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque

import cocotb
import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw import numeric
from hw.banked_memory import write_layout
from hw.compute_unit import (
    COUNTERS,
    epilogue_input_layout,
    scale_entry_layout,
    scale_write_layout,
    unit_command_layout,
)
from hw.config import preset
from hw.isa import Epi, EpiDest, Gemm, GemmMode
from sim.cycle_model import gemm_cycles
from tb.compute_cases import golden_case, random_case
from tb.layout_bits import pack, unpack
from tb.systolic_array_tb import StreamSink, StreamSource


def tb_params() -> dict:
    params = {"seed": 1, "cases": 10, "case_len": 4, "max_m": 32, "stall": 0.0,
              **json.loads(os.environ.get("NMX_TB_PARAMS", "{}"))}
    if "preset" not in params:
        raise ValueError(f"NMX_TB_PARAMS lacks 'preset': got {params}")
    return params


class TableModel:
    """The bias/scale SRAM's read port: ``C`` consecutive entries ``latency`` cycles after each
    request (requests accepted with random backpressure)."""

    def __init__(self, dut, prefix, tb, latency, stall, rng):
        self.req = StreamSink(dut, f"{prefix}__req", stall, rng)
        self.resp = StreamSource(dut, f"{prefix}__resp")
        self.tb, self.latency = tb, latency
        self.pending: deque = deque()
        C = tb.cfg.cols
        self.layout = data.StructLayout({"data": data.ArrayLayout(scale_entry_layout(), C)})

    @property
    def idle(self):
        return not self.pending and self.resp.idle

    def drive(self, cycle):
        while self.pending and self.pending[0][0] <= cycle:
            self.resp.send([self.pending.popleft()[1]])
        self.req.drive()
        self.resp.drive()

    def observe(self, cycle):
        n = len(self.req.received)
        self.req.observe(cycle)
        self.resp.observe(cycle)
        if len(self.req.received) > n:
            entry = self.req.received[-1]
            tb = self.tb
            ents = [{"bias": int(tb.bias[e]), "mult": int(tb.mult[e]), "shift": int(tb.shift[e])}
                    if e < tb.cfg.bias_entries else {"bias": 0, "mult": 0, "shift": 0}
                    for e in range(entry, entry + tb.cfg.cols)]
            self.pending.append((cycle + self.latency, pack(self.layout, {"data": ents})))


class EpilogueModel:
    """The epilogue: ``hw.numeric.epilogue`` per row, ``latency`` cycles, in order."""

    def __init__(self, dut, tb, latency, stall, rng):
        self.inp = StreamSink(dut, "epilogue_in", stall, rng)
        self.out = StreamSource(dut, "epilogue_out")
        self.tb, self.latency = tb, latency
        self.layout = epilogue_input_layout(tb.cfg)
        self.out_layout = data.ArrayLayout(signed(32), tb.cfg.cols)
        self.pending: deque = deque()

    @property
    def idle(self):
        return not self.pending and self.out.idle

    def drive(self, cycle):
        while self.pending and self.pending[0][0] <= cycle:
            self.out.send([self.pending.popleft()[1]])
        self.inp.drive()
        self.out.drive()

    def observe(self, cycle):
        n = len(self.inp.received)
        self.inp.observe(cycle)
        self.out.observe(cycle)
        if len(self.inp.received) > n:
            row = unpack(self.layout, self.inp.received[-1])
            y = numeric.epilogue(np.array(row["acc"], np.int64), np.array(row["mult"], np.int64),
                                 np.array(row["shift"], np.int64), self.tb.tables[row["fn"]],
                                 row["out_bits"])
            self.pending.append((cycle + self.latency,
                                 pack(self.out_layout, [int(v) for v in y])))


class TB:
    """Clock, reset, the compute harness's streams and the bench models."""

    def __init__(self, dut, cfg, seed=1, stall=0.0):
        self.dut, self.cfg = dut, cfg
        self.log = dut._log
        rng = random.Random(seed)

        def sub():
            return random.Random(rng.random())

        self.cmd = StreamSource(dut, "cmd", stall, sub())
        self.spad_load = StreamSource(dut, "spad_load")
        self.acc_load = StreamSource(dut, "acc_load")
        self.spad_req = StreamSource(dut, "spad_store__req")
        self.spad_resp = StreamSink(dut, "spad_store__resp")
        self.acc_req = StreamSource(dut, "acc_store__req")
        self.acc_resp = StreamSink(dut, "acc_store__resp")
        self.bias_port = TableModel(dut, "bias_read", self, 2, stall, sub())
        self.scale_port = TableModel(dut, "scale_read", self, 2, stall, sub())
        self.scale_write = StreamSink(dut, "scale_write", stall, sub())
        self.epilogue = EpilogueModel(dut, self, 6, stall, sub())
        self._streams = (self.cmd, self.spad_load, self.acc_load, self.spad_req, self.spad_resp,
                         self.acc_req, self.acc_resp, self.scale_write)
        self._models = (self.bias_port, self.scale_port, self.epilogue)
        self.cycle = 0
        self.busy_low = 0
        self.bias = self.mult = self.shift = None
        self.tables = []
        self._sw_layout = scale_write_layout(cfg)
        self._cmd_layout = unit_command_layout(cfg)
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self):
        d = self.dut
        d.rst.value = 1
        d.pop_l2c__available.value = 0
        d.pop_s2c__available.value = 0
        d.push_c2l__space.value = 1
        d.push_c2s__space.value = 1
        d.flush_above__valid.value = 0
        d.clear.value = 0
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        cocotb.start_soon(self._clocked())

    async def _clocked(self):
        falling, settled = FallingEdge(self.dut.clk), ReadOnly()
        while True:
            await falling
            for s in self._streams:
                s.drive()
            for mdl in self._models:
                mdl.drive(self.cycle)
            await settled
            for s in self._streams:
                s.observe(self.cycle)
            for mdl in self._models:
                mdl.observe(self.cycle)
            while self.scale_write.received:
                w = unpack(self._sw_layout, self.scale_write.received.pop())
                self.mult[w["entry"]] = w["mult"]
                self.shift[w["entry"]] = w["shift"]
            self.busy_low = 0 if self.dut.busy.value else self.busy_low + 1
            self.cycle += 1

    async def cycles(self, n):
        for _ in range(n):
            await RisingEdge(self.dut.clk)

    async def fill(self, state):
        """Write every scratchpad and accumulator row of golden-model ``state``; take its
        bias/scale entries and tables into the bench models."""
        cfg = self.cfg
        spad_l = write_layout(_bits(cfg.scratchpad_rows), _row(8, cfg.lanes), cfg.lanes)
        acc_l = write_layout(_bits(cfg.accumulator_rows), _row(32, cfg.cols))
        full = (1 << cfg.lanes) - 1
        self.spad_load.send(pack(spad_l, {"addr": r, "data": [int(v) for v in state.spad[r]],
                                          "mask": full}) for r in range(cfg.scratchpad_rows))
        self.acc_load.send(pack(acc_l, {"addr": r, "data": [int(v) for v in state.acc[r]]})
                           for r in range(cfg.accumulator_rows))
        self.bias = state.bias.astype(np.int64).copy()
        self.mult = state.mult.astype(np.int64).copy()
        self.shift = state.shift.astype(np.int64).copy()
        self.tables = state.tables
        self.dut.fn_loaded.value = sum(1 << f for f, t in enumerate(state.tables) if t is not None)
        while not (self.spad_load.idle and self.acc_load.idle):
            await self.cycles(16)

    async def run_words(self, words, first_pc, timeout=200000):
        """Issue ``words`` (word offsets from ``first_pc``) and wait until the unit is idle."""
        self.cmd.send(pack(self._cmd_layout, {"word": w, "pc": first_pc + i})
                      for i, w in enumerate(words))
        start = self.cycle
        while True:
            await self.cycles(8)
            if (self.cmd.idle and self.busy_low >= 4
                    and all(mdl.idle for mdl in self._models)):
                return
            if self.cycle - start > timeout:
                raise AssertionError(f"compute unit still busy after {timeout} cycles "
                                     f"(commands left {len(self.cmd.queue)})")

    async def read_rows(self, req, resp, count, elem_bits, elems):
        resp.received.clear()
        addr_bits = _bits(count)
        lay = data.StructLayout({"addr": unsigned(addr_bits)})
        req.send(pack(lay, {"addr": r}) for r in range(count))
        while len(resp.received) < count:
            await self.cycles(16)
        return np.array([unpack(_row(elem_bits, elems), v) for v in resp.received],
                        dtype=np.int64)

    async def read_acc(self):
        return await self.read_rows(self.acc_req, self.acc_resp, self.cfg.accumulator_rows, 32,
                                    self.cfg.cols)

    async def read_spad(self):
        return await self.read_rows(self.spad_req, self.spad_resp, self.cfg.scratchpad_rows, 8,
                                    self.cfg.lanes)

    def counters(self) -> dict:
        lay = data.StructLayout({n: unsigned(64) for n in COUNTERS})
        return unpack(lay, int(self.dut.counters.value))

    def error(self):
        d = self.dut
        return int(d.error__valid.value), int(d.error__code.value), int(d.error__pc.value)


def _bits(n):
    return max(1, (n - 1).bit_length())


def _row(bits, n):
    return data.ArrayLayout(signed(bits), n)


def _check(name, got, want):
    bad = np.argwhere(np.asarray(got) != np.asarray(want))
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(f"{name}: {len(bad)} mismatches; first at {i}: RTL "
                             f"{np.asarray(got)[i]}, golden {np.asarray(want)[i]}")


@cocotb.test()
async def random_sweep(dut):
    """Random valid GEMM/EPI cases, run back to back on one state: bit-exact with golden."""
    p = tb_params()
    cfg = preset(p["preset"])
    rng = np.random.default_rng(p["seed"])
    cases = [random_case(cfg, rng, p["case_len"], p["max_m"]) for _ in range(p["cases"])]
    tb = TB(dut, cfg, p["seed"], p["stall"])
    await tb.reset()
    so_far = []
    first = golden_case(cfg, [], seed=p["seed"])
    await tb.fill(first.start)
    for n, case in enumerate(cases):
        pc0 = first.first_pc + len(so_far)
        so_far += case
        gc = golden_case(cfg, so_far, seed=p["seed"])
        assert gc.status.ok, gc.status
        await tb.run_words(gc.words[len(so_far) - len(case):], pc0)
        assert tb.error()[0] == 0, f"case {n}: RTL error {tb.error()}"
        _check(f"case {n} accumulator", await tb.read_acc(), gc.end.acc)
        tb.log.info("case %d (%s) matches", n, ", ".join(type(i).__name__ for i in case))
    _check("scratchpad", await tb.read_spad(), gc.end.spad)
    _check("multipliers", tb.mult, gc.end.mult)
    _check("shifts", tb.shift, gc.end.shift)
    c = tb.counters()
    assert c["retired"] == len(so_far)
    tb.log.info("counters %s", c)


async def _measure(tb, cfg, program, seed):
    gc = golden_case(cfg, program, seed=seed)
    assert gc.status.ok, gc.status
    await tb.fill(gc.start)
    tb.dut.clear.value = 1
    await tb.cycles(1)
    tb.dut.clear.value = 0
    start = tb.cycle
    await tb.run_words(gc.words, gc.first_pc)
    _check("accumulator", await tb.read_acc(), gc.end.acc)
    c = tb.counters()
    return {"array_rows": c["array_rows"], "busy_cycles": c["busy"],
            "array_busy_fraction": c["array_rows"] / c["busy"],
            "expected_rows": sum(i.m * i.k_tiles * i.n_tiles for i in program
                                 if isinstance(i, Gemm)),
            "bench_cycles": tb.cycle - start, "stall_interlock": c["stall_interlock"]}


@cocotb.test()
async def utilisation(dut):
    """Back-to-back GEMMs (m=64, k_tiles=4, n_tiles=4) on alternating accumulator halves, and
    GEMM + EPI pairs (dest SPAD): array busy fraction from the unit's counters."""
    p = tb_params()
    cfg = preset(p["preset"])
    R = cfg.rows
    S, A = cfg.scratchpad_rows, cfg.accumulator_rows
    bank = S // cfg.scratchpad_banks
    m, k = 64, 4
    metrics = {}
    tb = TB(dut, cfg, p["seed"])
    await tb.reset()
    for n in (4, 1):
        if n * m > A // 2 or k * m > bank:
            continue
        gemms = [Gemm(w=(g % 2) * n * k * R, a=bank + (g % 2) * k * m, acc=(g % 2) * (A // 2),
                      m=m, k_tiles=k, n_tiles=n) for g in range(6)]
        metrics[f"gemm_m{m}_k{k}_n{n}_x6"] = await _measure(tb, cfg, gemms, p["seed"])
        pairs = []
        for g in range(6):
            buf = (g % 2) * (A // 2)
            pairs.append(Gemm(mode=GemmMode.BIAS, w=(g % 2) * n * k * R,
                              a=bank + (g % 2) * k * m, acc=buf, m=m, k_tiles=k, n_tiles=n))
            pairs.append(Epi(src=buf, dst=2 * bank + (g % 2) * n * m, dest=EpiDest.SPAD,
                             scale=0, fn=0, m=m, n_tiles=n))
        metrics[f"gemm_epi_pairs_m{m}_k{k}_n{n}_x6"] = await _measure(tb, cfg, pairs, p["seed"])
    for m1, k1, n1 in ((64, 4, 4), (16, 1, 1), (1, 1, 1)):
        single = [Gemm(w=0, a=bank, acc=0, m=m1, k_tiles=k1, n_tiles=n1)]
        v = await _measure(tb, cfg, single, p["seed"])
        v["gemm_cycles_model"] = gemm_cycles(cfg, m1, k1, n1)
        metrics[f"single_gemm_m{m1}_k{k1}_n{n1}"] = v
    for name, v in metrics.items():
        tb.log.info("%s: %s", name, v)
        assert v["array_rows"] == v["expected_rows"]
    with open("metrics.json", "w") as f:
        json.dump(metrics, f, indent=1)
