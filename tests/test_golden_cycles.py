"""The cycle model: durations, overlap through tokens, stall attribution, utilisation."""

from __future__ import annotations

import numpy as np
import pytest

from hw.config import preset
from hw.isa import Dmacfg, Gemm, Halt, Load, Program
from nmx.commands.bench import bench_gemm, bench_golden
from sim.cycle_model import CycleParams, estimate_cycles
from sim.dram_image import DramImage
from sim.golden import GoldenModel

CFG = preset("tiny")  # 4x4, 64-bit DMA


def trace_of(instrs, cfg=CFG, size=4096):
    res = GoldenModel(cfg).run(Program([*instrs, Halt()]), DramImage.zeros(size))
    assert res.ok, res.status
    return res.trace


GEOM = Dmacfg(slot=0, height=1, width=512, pitch=0, pix=4, sy=0, sx=1)


def test_gemm_duration():
    m, k, n = 5, 2, 3
    rep = estimate_cycles(trace_of([Gemm(m=m, k_tiles=k, n_tiles=n)]), CFG)
    R, C = CFG.rows, CFG.cols
    assert rep.units["compute"].busy == R + (n * k - 1) * max(m, R) + m + R + C + 3
    assert rep.macs == m * k * n * R * C


def test_load_latency_beats_and_alignment():
    params = CycleParams(dram_latency=10)
    # 8-byte bus: a 4-byte row at offset 6 straddles two beats; 3 rows -> 6 beats
    geom = Dmacfg(slot=0, height=1, width=512, pitch=0, pix=8, sy=0, sx=1)
    tr = trace_of([geom, Load(offset=6, inner=3, length=4)])
    assert tr[1].beats == 6 and tr[1].rows == 3
    rep = estimate_cycles(tr, CFG, params)
    assert rep.units["load"].busy == 1 + 10 + 6  # DMACFG + latency + max(beats, rows)
    padded = trace_of([geom, Load(offset=0, inner=3, x0=-3, length=4)])[1]
    assert padded.beats == 0 and padded.dram_bytes == 0


def test_token_wait_is_attributed_and_units_overlap():
    load = Load(inner=200, length=4, push_next=True)
    rep = estimate_cycles(trace_of([GEOM, load, Gemm(m=4, pop_prev=True),
                                    Load(dst=300, inner=200, length=4)]), CFG)
    comp, ld = rep.units["compute"], rep.units["load"]
    assert comp.stalls["token l2c"] > 150
    # the second load runs while the GEMM computes: total < sum of busy cycles
    assert rep.total_cycles < ld.busy + comp.busy
    assert rep.total_cycles >= ld.busy
    _, first, gemm, second, _halt = rep.timeline
    assert gemm.start >= first.finish and second.start == first.finish
    assert second.start < gemm.finish  # overlapped
    assert "gemm" in rep.format_timeline(3)


def test_full_queue_stalls_dispatch():
    cfg = CFG.replace(instr_fifo_depth=2)
    loads = [Load(dst=i, inner=50, length=4) for i in range(6)]
    rep = estimate_cycles(trace_of([GEOM, *loads], cfg), cfg)
    assert rep.units["dispatch"].stalls["load queue full"] > 0


def test_tiled_gemm_is_correct_and_overlapped():
    cfg = preset("default")
    r = bench_gemm(cfg, "128x64x64", m=32, repeat=1)  # checks the result against NumPy
    rep = r["report"]
    assert rep.macs == 128 * 64 * 64
    assert rep.total_cycles < sum(u.busy for n, u in rep.units.items() if n != "dispatch")
    assert 0.3 < rep.utilisation <= 1.0
    assert rep.utilisation == pytest.approx(rep.macs / (256 * rep.total_cycles))


def test_bench_golden_reports_speed():
    r = bench_golden(CFG, m=8, blocks=1, instructions=50, repeat=1)
    assert r["macs"] == 50 * 8 * 16 and r["mmacs_per_s"] > 0
    assert np.isfinite(r["seconds"])
