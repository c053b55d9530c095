"""Run compute-queue instructions on the RTL compute unit (Amaranth simulator) and on the golden
model from the same state, and compare: the shared machinery of the compute-unit tests.

Cases and their golden runs come from :mod:`tb.compute_cases`. The RTL starts from the state the
golden model reaches after the prefix (written into the bank memories through the simulator's
back door); the bench models the bias/scale SRAM and the epilogue (``hw.numeric.epilogue``) with
random latency and backpressure, and feeds the case's words to ``cmd``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np

from hw import numeric
from hw.config import AcceleratorConfig
from tb.compute_cases import LOADED_FUNCTIONS, GoldenCase, golden_case
from tb.compute_harness import ComputeHarness
from tests.banked_memory_bench import run_to_end

__all__ = ["LOADED_FUNCTIONS", "GoldenCase", "RtlResult", "compare", "golden_case", "run_rtl"]

def _row_int(values, bits: int) -> int:
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (bits * i) for i, v in enumerate(values))


def _row_values(raw: int, bits: int, n: int) -> list[int]:
    out = []
    for i in range(n):
        v = (raw >> (bits * i)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


@dataclass
class RtlResult:
    spad: np.ndarray
    acc: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    error: tuple[int, int, int]  # valid, code, pc
    counters: dict
    cycles: int
    token_events: list
    first_array_row: int | None
    scale_writes: list  # cycles in which the scale_write port took a write


def run_rtl(cfg: AcceleratorConfig, gc: GoldenCase, *, seed: int = 0, stall: float = 0.0,
            gap: float = 0.0, table_latency: int = 2, epilogue_latency: int = 5,
            max_cycles: int = 20000, read_back: bool = True, tokens_at: int | None = None,
            flush_pc: int | None = None, scale_write_stall: float | None = None) -> RtlResult:
    """Run the case's words on :class:`tb.compute_harness.ComputeHarness` (see module docs).

    ``tokens_at``: from this cycle on, the l2c and s2c counters hold tokens (before: empty).
    ``flush_pc``: ``flush_above`` is asserted with this offset from the start.
    ``scale_write_stall``: probability that ``scale_write.ready`` is low in a cycle (default:
    ``stall``).
    Token takes and puts are recorded as (cycle, queue) in ``RtlResult.token_events``.
    """
    rng = random.Random(seed)
    dut = ComputeHarness(cfg)
    st = gc.start
    C = cfg.cols
    mult = st.mult.astype(np.int64).copy()
    shift = st.shift.astype(np.int64).copy()
    bias = st.bias.astype(np.int64).copy()
    tables = st.tables
    spad_mems = dut.scratchpad.memories
    acc_mems = dut.accumulator.memories
    spad_per = cfg.scratchpad_rows // len(spad_mems)
    acc_per = cfg.accumulator_rows // len(acc_mems)
    result = {}

    def entries(e):
        return [(int(bias[x]), int(mult[x]), int(shift[x])) if x < cfg.bias_entries else (0, 0, 0)
                for x in range(e, e + C)]

    async def bench(ctx):
        for r in range(cfg.scratchpad_rows):
            ctx.set(spad_mems[r // spad_per].data[r % spad_per], _row_int(st.spad[r], 8))
        for r in range(cfg.accumulator_rows):
            ctx.set(acc_mems[r // acc_per].data[r % acc_per], _row_int(st.acc[r], 32))
        ctx.set(dut.fn_loaded, sum(1 << f for f, t in enumerate(tables) if t is not None))
        ctx.set(dut.push_c2l.space, 1)
        ctx.set(dut.push_c2s.space, 1)
        if flush_pc is not None:
            ctx.set(dut.flush_above.valid, 1)
            ctx.set(dut.flush_above.pc, flush_pc)
        events = result["token_events"] = []
        scale_writes = result["scale_writes"] = []
        sw_stall = stall if scale_write_stall is None else scale_write_stall
        result["first_array_row"] = None
        words = deque(enumerate(gc.words, start=gc.first_pc))
        table_q = {"bias": deque(), "scale": deque()}
        epi_q = deque()
        cycle = 0
        idle_for = 0
        while cycle < max_cycles:
            # drive this cycle
            have_tokens = int(tokens_at is not None and cycle >= tokens_at)
            ctx.set(dut.pop_l2c.available, have_tokens)
            ctx.set(dut.pop_s2c.available, have_tokens)
            if words and rng.random() >= gap:
                pc, word = words[0]
                ctx.set(dut.cmd.payload.word.as_value(), word)
                ctx.set(dut.cmd.payload.pc, pc)
                ctx.set(dut.cmd.valid, 1)
            else:
                ctx.set(dut.cmd.valid, 0)
            for name in ("bias", "scale"):
                port = getattr(dut, f"{name}_read")
                ctx.set(port.req.ready, int(rng.random() >= stall))
                q = table_q[name]
                if q and q[0][0] <= cycle:
                    ctx.set(port.resp.payload.data, [
                        {"bias": b, "mult": mu, "shift": s} for b, mu, s in q[0][1]])
                    ctx.set(port.resp.valid, 1)
                else:
                    ctx.set(port.resp.valid, 0)
            ctx.set(dut.scale_write.ready, int(rng.random() >= sw_stall))
            ctx.set(dut.epilogue_in.ready, int(rng.random() >= stall))
            if epi_q and epi_q[0][0] <= cycle:
                ctx.set(dut.epilogue_out.payload, epi_q[0][1])
                ctx.set(dut.epilogue_out.valid, 1)
            else:
                ctx.set(dut.epilogue_out.valid, 0)
            ctx.set(dut.epilogue_out.valid, int(bool(epi_q) and epi_q[0][0] <= cycle))
            sampled = await ctx.tick().sample(
                dut.cmd.valid, dut.cmd.ready,
                dut.bias_read.req.valid, dut.bias_read.req.ready, dut.bias_read.req.payload,
                dut.bias_read.resp.valid, dut.bias_read.resp.ready,
                dut.scale_read.req.valid, dut.scale_read.req.ready, dut.scale_read.req.payload,
                dut.scale_read.resp.valid, dut.scale_read.resp.ready,
                dut.scale_write.valid, dut.scale_write.ready, dut.scale_write.payload,
                dut.epilogue_in.valid, dut.epilogue_in.ready, dut.epilogue_in.payload,
                dut.epilogue_out.valid, dut.epilogue_out.ready,
                dut.busy, dut.error.valid,
                dut.pop_l2c.take, dut.pop_s2c.take, dut.push_c2l.put, dut.push_c2s.put,
                dut.counters.array_rows)
            (_, _, cv, cr, bqv, bqr, bqp, bsv, bsr, sqv, sqr, sqp, ssv, ssr,
             swv, swr, swp, eiv, eir, eip, eov, eor, busy, err, *tok, rows) = sampled
            for q, strobe in zip(("l2c", "s2c", "c2l", "c2s"), tok, strict=True):
                if strobe:
                    events.append((cycle, q))
            if rows and result["first_array_row"] is None:
                result["first_array_row"] = cycle
            cycle += 1
            if cv and cr:
                words.popleft()
            for name, qv, qr, qp, sv, sr in (("bias", bqv, bqr, bqp, bsv, bsr),
                                             ("scale", sqv, sqr, sqp, ssv, ssr)):
                if sv and sr:
                    table_q[name].popleft()
                if qv and qr:
                    table_q[name].append((cycle + table_latency - 1, entries(int(qp.entry))))
            if swv and swr:
                scale_writes.append(cycle - 1)
                mult[int(swp.entry)] = int(swp.mult)
                shift[int(swp.entry)] = int(swp.shift)
            if eov and eor:
                epi_q.popleft()
            if eiv and eir:
                accs = np.array([int(eip.acc[c]) for c in range(C)], dtype=np.int64)
                mu = np.array([int(eip.mult[c]) for c in range(C)], dtype=np.int64)
                sh = np.array([int(eip.shift[c]) for c in range(C)], dtype=np.int64)
                y = numeric.epilogue(accs, mu, sh, tables[int(eip.fn)], int(eip.out_bits))
                epi_q.append((cycle + epilogue_latency - 1, [int(v) for v in y]))
            idle = not words and not busy and not epi_q and not table_q["bias"] \
                and not table_q["scale"]
            if (idle or (err and not busy)):
                idle_for += 1
                if idle_for > 3:
                    break
            else:
                idle_for = 0
        result["cycles"] = cycle
        result["error"] = (ctx.get(dut.error.valid), ctx.get(dut.error.code),
                           ctx.get(dut.error.pc))
        result["counters"] = {n: ctx.get(getattr(dut.counters, n))
                              for n in dut.compute_unit.counters.shape().members}
        if read_back:
            sp = np.zeros_like(st.spad)
            for r in range(cfg.scratchpad_rows):
                sp[r] = _row_values(ctx.get(spad_mems[r // spad_per].data[r % spad_per]), 8,
                                    cfg.lanes)
            ac = np.zeros_like(st.acc)
            for r in range(cfg.accumulator_rows):
                ac[r] = _row_values(ctx.get(acc_mems[r // acc_per].data[r % acc_per]), 32, C)
            result["spad"], result["acc"] = sp, ac

    run_to_end(dut, bench)
    assert result["cycles"] < max_cycles, f"compute unit did not finish in {max_cycles} cycles"
    return RtlResult(result.get("spad"), result.get("acc"), mult, shift, result["error"],
                     result["counters"], result["cycles"], result["token_events"],
                     result["first_array_row"], result["scale_writes"])


def compare(gc: GoldenCase, rtl: RtlResult) -> None:
    """Assert the RTL's end state and status equal the golden model's."""
    st = gc.status
    if st.ok:
        assert not rtl.error[0], f"RTL reported error {rtl.error}, golden OK"
    else:
        assert rtl.error[0], f"golden {st}, RTL no error"
        assert (rtl.error[1], rtl.error[2]) == (int(st.code), st.pc), \
            f"golden {st}, RTL code {rtl.error[1]} pc {rtl.error[2]}"
    end = gc.end
    np.testing.assert_array_equal(rtl.acc, end.acc, err_msg="accumulator")
    np.testing.assert_array_equal(rtl.spad, end.spad, err_msg="scratchpad")
    np.testing.assert_array_equal(rtl.mult, end.mult.astype(np.int64), err_msg="multipliers")
    np.testing.assert_array_equal(rtl.shift, end.shift.astype(np.int64), err_msg="shifts")
