"""The cycle model: durations, overlap through tokens, stall attribution, utilisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.config import preset
from hw.isa import Dmacfg, Gemm, Halt, Load, Program, Sync, SyncTarget
from nmx.commands.bench import bench_gemm, bench_golden, tiled_gemm
from sim.cycle_model import LOAD_DESCRIPTORS, CycleParams, estimate_cycles, gemm_cycles
from sim.dram_image import DramImage
from sim.golden import GoldenModel

CFG = preset("tiny")  # 4x4, 64-bit DMA


def trace_of(instrs, cfg=CFG, size=4096):
    res = GoldenModel(cfg).run(Program([*instrs, Halt()]), DramImage.zeros(size))
    assert res.ok, res.status
    return res.trace


GEOM = Dmacfg(slot=0, height=1, width=512, pitch=0, pix=4, sy=0, sx=1)


LOADED = [GEOM, Load(inner=64, length=4, push_next=True)]  # scratchpad rows 0..63 written


def test_gemm_cycles_hand_derived():
    """``preload + (blocks-1) * max(m, preload) + m + R + C + 5``, worked out by hand."""
    assert gemm_cycles(CFG, 5, 2, 3) == 4 + 5 * 5 + 5 + 13 == 47  # m > preload: m-bound
    assert gemm_cycles(CFG, 2, 2, 3) == 4 + 5 * 4 + 2 + 13 == 39  # m < preload: preload-bound
    assert gemm_cycles(CFG, 1, 1, 1) == 4 + 1 + 13 == 18
    tall = CFG.replace(rows=8)  # 8x4: preload is 8 rows, or 4 when transposed
    assert gemm_cycles(tall, 3, 1, 2) == 8 + 8 + 3 + 17 == 36
    assert gemm_cycles(tall, 3, 1, 2, transpose=True) == 4 + 4 + 3 + 17 == 28
    assert gemm_cycles(preset("default"), 64, 4, 4) == 16 + 15 * 64 + 64 + 37 == 1077
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        gemm_cycles(CFG, 0, 1, 1)


@given(st.integers(1, 300), st.integers(1, 12), st.integers(1, 12), st.booleans())
@settings(max_examples=200, deadline=None)
def test_gemm_cycles_properties(m, k, n, transpose):
    t = gemm_cycles(CFG, m, k, n, transpose=transpose)
    assert gemm_cycles(CFG, m + 1, k, n, transpose=transpose) > t
    assert gemm_cycles(CFG, m, k + 1, n, transpose=transpose) > t
    assert gemm_cycles(CFG, m, k, n + 1, transpose=transpose) > t
    # never faster than streaming every operand row of every block once, plus the latency
    assert t >= k * n * m + CFG.rows + CFG.cols
    # and, once m covers the preload, exactly that plus one preload and the latency
    if m >= CFG.rows:
        assert t == k * n * m + CFG.rows + CFG.rows + CFG.cols + 5


def test_small_program_timeline_hand_derived():
    """tiny (64-bit bus), latency 40, the structural defaults (CycleParams.assumed()).

    Fetch: AR at 2, the 4-word program is 8 beats from 2 + 1 + 40 = 43, word j complete at
    43 + 2 (j + 1); a word needs 2 beats + 1 cycle, so words leave at 45, 48, 51, 54 and are
    dispatched 2 cycles later: 47, 50, 53, 56. DMACFG: in the queue at 49, popped 50, executed,
    pushed at 52; the unit takes its next word at 53. LOAD of 8 rows of 4 bytes (half a beat:
    one request each): walk from 54 + 6 = 60, row r requested at 60 + r, AR one cycle later, data
    from 62 + 40 = 102; the assembler takes 2 cycles a row (beat + row), so row r is written at
    102 + 2 r + 1 + 2, the last at 119; push at 119 + 2 + 1 = 122. GEMM m=4: taken at 55, issue
    stage until 58, the l2c token is there at 123; first weight block at 123 + 4, preloaded in 4,
    4 operand rows to 135, array latency 4 + 4 + 5 and 7 of the unit: complete 155, retired 156.
    HALT dispatched 56; DONE 3 cycles after the last unit: 159.
    """
    tr = trace_of([GEOM, Load(inner=8, length=4, push_next=True), Gemm(a=4, m=4, pop_prev=True)])
    rep = estimate_cycles(tr, CFG, dataclasses.replace(CycleParams.assumed(), dram_latency=40))
    got = [(e.mnemonic, e.dispatched, e.start, e.finish) for e in rep.timeline]
    assert got == [("dmacfg", 47, 50, 52), ("load", 50, 54, 122), ("gemm", 53, 123, 156),
                   ("halt", 56, 56, 56)]
    assert rep.total_cycles == 159 and rep.macs == 4 * 16
    assert rep.units["compute"].stalls == {"starved (waiting for dispatch)": 55,
                                           "token l2c": 123 - 58}
    assert rep.utilisation == pytest.approx(64 / (16 * 159))


def test_gemm_duration_in_a_trace():
    """Weights and operands in different scratchpad banks: each further block's preload hides
    behind the previous block's rows (``gemm_cycles``); in one bank they share its read port and
    a block costs ``m + rows`` (the first block change overlaps ``gemm_overlap`` cycles)."""
    m, k, n = 5, 2, 3
    p = CycleParams.assumed()
    # issue stage (its last cycle is the issue), first weight row, the array, the unit's
    # pipeline tail, retirement
    own = p.compute_issue_cycles - 1 + p.gemm_start + p.gemm_tail + p.retire_cycles
    bank = CFG.scratchpad_rows // CFG.scratchpad_banks
    far = [GEOM, Load(inner=64, length=4), Load(dst=bank, inner=64, length=4, push_next=True)]
    rep = estimate_cycles(trace_of([*far, Gemm(w=bank, m=m, k_tiles=k, n_tiles=n,
                                               pop_prev=True)]), CFG, p)
    assert rep.units["compute"].busy == gemm_cycles(CFG, m, k, n) + own == 47 + own
    assert rep.macs == m * k * n * CFG.rows * CFG.cols
    rep = estimate_cycles(trace_of([*LOADED, Gemm(m=m, k_tiles=k, n_tiles=n, pop_prev=True)]),
                          CFG, p)
    R = CFG.rows
    same = R + (k * n - 1) * (m + R) - min(p.gemm_overlap, R - 1) + m + R + CFG.cols + 5
    assert rep.units["compute"].busy == same + own


def test_load_latency_rows_and_window():
    """A LOAD costs the DRAM latency once, 2 cycles per 1-beat row while the descriptor window
    (LOAD_DESCRIPTORS bursts outstanding) covers the latency, and one latency per window of rows
    when it does not."""
    def busy(n, lat, **kw):
        tr = trace_of([GEOM, Load(inner=n, length=4, **kw)])
        rep = estimate_cycles(tr, CFG, dataclasses.replace(CycleParams.assumed(),
                                                            dram_latency=lat))
        return rep.timeline[1].finish - rep.timeline[1].start

    assert busy(65, 10) - busy(1, 10) == 2 * 64  # bus and assembler bound
    assert busy(65, 40) - busy(1, 40) == 2 * 64
    assert busy(1, 40) - busy(1, 10) == 30  # the latency, once
    w, lat = LOAD_DESCRIPTORS, 4 * LOAD_DESCRIPTORS  # window bound: w rows per round trip
    slow = busy(2 * w + 1, lat) - busy(1, lat)
    assert 2 * w * lat / w <= slow <= 2 * w * (lat + 20) / w
    # 8-byte bus: a 4-byte row at offset 6 straddles two beats; padding rows read nothing
    geom = Dmacfg(slot=0, height=1, width=512, pitch=0, pix=8, sy=0, sx=1)
    tr = trace_of([geom, Load(offset=6, inner=3, length=4)])
    assert tr[1].beats == 6 and tr[1].rows == 3
    padded = trace_of([geom, Load(offset=0, inner=3, x0=-3, length=4)])[1]
    assert padded.beats == 0 and padded.dram_bytes == 0
    rep = estimate_cycles(trace_of([geom, Load(offset=0, inner=3, x0=-3, length=4)]), CFG)
    assert rep.total_cycles < estimate_cycles(trace_of([geom, Load(inner=3, length=4)]),
                                              CFG).total_cycles


def test_token_wait_is_attributed_and_units_overlap():
    load = Load(inner=200, length=4, push_next=True)
    rep = estimate_cycles(trace_of([GEOM, load, Gemm(m=4, pop_prev=True),
                                    Load(dst=300, inner=200, length=4)]), CFG)
    comp, ld = rep.units["compute"], rep.units["load"]
    assert comp.stalls["token l2c"] > 150
    # the second load runs while the GEMM computes: the run is shorter than the busy cycles
    first_start = rep.timeline[0].start
    assert rep.total_cycles - first_start < ld.busy + comp.busy
    assert rep.total_cycles >= ld.busy
    _, first, gemm, second, _halt = rep.timeline
    assert gemm.start >= first.finish and first.finish < second.start <= first.finish + 2
    assert second.start < gemm.finish  # overlapped
    assert "gemm" in rep.format_timeline(3)


def test_full_queue_stalls_dispatch():
    cfg = CFG.replace(instr_fifo_depth=2)
    loads = [Load(dst=i, inner=50, length=4) for i in range(6)]
    rep = estimate_cycles(trace_of([GEOM, *loads], cfg), cfg)
    assert rep.units["dispatch"].stalls["load queue full"] > 0


def _check_report_invariants(rep, cfg):
    """Properties every report has, whatever the program."""
    last = {}
    for e in rep.timeline:
        assert e.dispatched <= e.start <= e.finish <= rep.total_cycles
        last[e.unit] = max(last.get(e.unit, 0), e.finish)
    for name in ("load", "compute", "store"):
        u = rep.units[name]
        # a unit is always busy, starved or waiting for a token: the causes add up exactly
        # (the compute unit's last EPI may run on after the unit took its next instruction)
        if name == "compute":
            assert last.get(name, 0) >= u.busy + sum(u.stalls.values()), name
        else:
            assert last.get(name, 0) == u.busy + sum(u.stalls.values()), name
        assert u.busy <= rep.total_cycles
    d = rep.units["dispatch"]
    assert rep.timeline[-1].dispatched == d.busy + sum(d.stalls.values())
    assert 0 <= rep.utilisation <= 1
    assert rep.total_cycles >= -(-rep.macs // cfg.peak_macs_per_cycle)
    assert rep.utilisation == pytest.approx(rep.macs / (cfg.peak_macs_per_cycle
                                                        * rep.total_cycles))


def _serialised(program: Program) -> Program:
    """The same instructions with a full fence after each: nothing overlaps."""
    fence = [Sync(target=SyncTarget.LOAD, push_next=True),
             Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
             Sync(target=SyncTarget.STORE, pop_prev=True, push_prev=True),
             Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True),
             Sync(target=SyncTarget.LOAD, pop_next=True)]
    body = [dataclasses.replace(ins, pop_prev=False, pop_next=False, push_prev=False,
                                push_next=False) for ins in program.instructions[:-1]]
    return Program([x for ins in body for x in (ins, *fence)] + [Halt()])


def test_tiled_gemm_is_correct_and_overlapped():
    cfg = preset("default")
    r = bench_gemm(cfg, "128x64x64", m=32, repeat=1)  # checks the result against NumPy
    rep = r["report"]
    assert rep.macs == 128 * 64 * 64
    _check_report_invariants(rep, cfg)
    busy = sum(u.busy for n, u in rep.units.items() if n != "dispatch")
    assert rep.total_cycles < busy  # units overlap
    assert 0.3 < rep.utilisation <= 1.0
    # the same work without overlap: every instruction fenced, so the total is at least the sum
    # of the units' busy cycles, and overlapping DMA with compute is what the tokens buy
    program, img, _ = tiled_gemm(cfg, 128, 64, 64, 32)
    serial = GoldenModel(cfg).run(_serialised(program), img).raise_for_status()
    srep = estimate_cycles(serial.trace, cfg)
    _check_report_invariants(srep, cfg)
    assert srep.macs == rep.macs
    assert srep.total_cycles >= busy
    assert rep.total_cycles < 0.8 * srep.total_cycles


@pytest.mark.parametrize("M, tail_groups", [(256, 8), (128, 8), (64, 8), (64, 4), (256, 1)])
def test_tiled_gemm_schedule_is_exact_and_keeps_the_array_busy(M, tail_groups):
    """The first block's per-tile GEMMs, the last block's groups in alternating accumulator
    buffers (one and two blocks included): race-free, the result equals NumPy, and the model
    keeps the 256-wide GEMM's array busy (issue 8: >= 85 % end to end)."""
    cfg = preset("default")
    program, img, expected = tiled_gemm(cfg, M, 256, 256, 64, tail_groups=tail_groups)
    res = GoldenModel(cfg).run(program, img).raise_for_status()
    np.testing.assert_array_equal(res.dram.read("out", np.int8, (M, 256)), expected)
    gemms = [ins for ins in program.instructions if isinstance(ins, Gemm)]
    assert sum(g.n_tiles for g in gemms) == 16 * (M // 64)
    rep = estimate_cycles(res.trace, cfg)
    _check_report_invariants(rep, cfg)
    if M == 256:
        assert rep.utilisation > 0.9


def test_slower_dram_never_shortens_a_run():
    cfg = preset("default")
    program, img, _ = tiled_gemm(cfg, 128, 64, 64, 32)
    trace = GoldenModel(cfg).run(program, img).raise_for_status().trace
    totals = [estimate_cycles(trace, cfg, CycleParams(dram_latency=lat)).total_cycles
              for lat in (0, 10, 40, 100, 400)]
    assert totals == sorted(totals) and totals[0] < totals[-1]
    narrow = estimate_cycles(trace, cfg.replace(dma_data_bits=32)).total_cycles
    assert narrow > totals[2]  # 4x the beats of the 128-bit bus


def test_bench_golden_reports_speed():
    r = bench_golden(CFG, m=8, blocks=1, instructions=50, repeat=1)
    assert r["macs"] == 50 * 8 * 16
    # the rates are derived from the measured time (never asserted: no timed assertions)
    assert np.isfinite(r["seconds"]) and r["seconds"] > 0
    assert r["mmacs_per_s"] == pytest.approx(r["macs"] / r["seconds"] / 1e6, rel=1e-12)
    assert r["instr_per_s"] == pytest.approx((2 + 50 + 1) / r["seconds"], rel=1e-12)
