"""Compute-queue test cases and their golden-model runs (shared by the Amaranth-simulator tests,
tests/compute_bench.py, and the Verilated sweep, tb/compute_unit_tb.py).

A *case* is a list of GEMM/EPI/SYNC instructions. :func:`golden_case` builds the golden-model
program ``prefix + case + HALT``: the prefix fills every scratchpad row, accumulator row and
bias/scale entry from a random DRAM image and loads :data:`LOADED_FUNCTIONS` PWL functions, then
fences, so every instruction of the case reads defined data. :func:`random_case` draws valid
GEMM/EPI sequences for any config, with accumulator rows that overlap often (interlock) and lie
in both accumulator halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import AcceleratorConfig
from hw.isa import (
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    Load,
    Loadt,
    MemSpace,
    Program,
    ScaleMode,
    Sync,
    SyncTarget,
    TableKind,
    encode,
    encode_bias_entries,
    encode_pwl_table,
)
from sim.dram_image import DramImage
from sim.golden import GoldenModel
from tests.golden_reference import random_pwl_table

__all__ = ["LOADED_FUNCTIONS", "GoldenCase", "golden_case", "prefix", "random_case"]

#: PWL functions the prefix loads (functions at and above this stay unloaded).
LOADED_FUNCTIONS = 3


def fence():
    return [
        Sync(target=SyncTarget.LOAD, push_next=True),
        Sync(target=SyncTarget.COMPUTE, pop_prev=True),
    ]


def prefix(cfg: AcceleratorConfig, seed: int):
    """(instructions, DRAM image) that define every on-chip row the case may read."""
    rng = np.random.default_rng(seed)
    L, C = cfg.lanes, cfg.cols
    spad = rng.integers(-128, 128, (cfg.scratchpad_rows, L), dtype=np.int8)
    acc = rng.integers(-(1 << 31), 1 << 31, (cfg.accumulator_rows, C), dtype=np.int64)
    # moderate accumulator values keep the epilogue's requantisation away from saturation
    acc[::2] >>= 12
    nb = cfg.bias_entries
    bias = rng.integers(-(1 << 31), 1 << 31, nb)
    mult = rng.integers(-(1 << 15), 1 << 15, nb)
    shift = rng.integers(0, 30, nb)
    tables = [random_pwl_table(rng, int(rng.integers(1, 9))) for _ in range(LOADED_FUNCTIONS)]
    spad_off = 0
    acc_off = spad_off + spad.size
    bias_off = acc_off + acc.size * 4
    pwl_off = bias_off + nb * 8
    blobs = b"".join(encode_pwl_table(t, cfg.pwl_segments) for t in tables)
    img = DramImage.zeros(pwl_off + len(blobs) + 64)
    img.add("spad", spad_off, spad)
    img.add("acc", acc_off, acc.astype("<i4"))
    img.add("bias", bias_off, np.frombuffer(encode_bias_entries(bias, mult, shift), np.uint8))
    img.add("pwl", pwl_off, np.frombuffer(blobs, np.uint8))
    ins = [Dmacfg(slot=0, height=1, width=4095, pitch=0, pix=L, sy=0, sx=1),
           Dmacfg(slot=1, height=1, width=4095, pitch=0, pix=4 * C, sy=0, sx=1)]
    chunk = 2048
    for r in range(0, cfg.scratchpad_rows, chunk):
        n = min(chunk, cfg.scratchpad_rows - r)
        ins.append(Load(geom=0, offset=spad_off + r * L, dst=r, outer=1, inner=n, length=L))
    for r in range(0, cfg.accumulator_rows, chunk):
        n = min(chunk, cfg.accumulator_rows - r)
        ins.append(Load(mem=MemSpace.ACC, geom=1, offset=acc_off + r * 4 * C, dst=r, outer=1,
                        inner=n, length=C))
    ins.append(Loadt(kind=TableKind.BIAS, dst=0, count=nb, offset=bias_off))
    ins.append(Loadt(kind=TableKind.PWL, dst=0, count=LOADED_FUNCTIONS, offset=pwl_off))
    return [*ins, *fence()], img


@dataclass
class GoldenCase:
    start: GoldenModel  # state after the prefix
    end: GoldenModel  # state after the whole program
    status: object
    first_pc: int  # word offset of the case's first instruction
    words: list[int]


def golden_case(cfg: AcceleratorConfig, case, seed: int = 0, extra=()) -> GoldenCase:
    """Golden runs of the prefix and of ``prefix + extra + case``; ``extra`` (e.g. token
    pushes of other units) is not sent to the RTL."""
    pre, img = prefix(cfg, seed)
    pre = [*pre, *extra]
    start = GoldenModel(cfg)
    res0 = start.run(Program([*pre, Halt()]), img)
    assert res0.ok, res0.status
    end = GoldenModel(cfg)
    res = end.run(Program([*pre, *case, Halt()]), img)
    return GoldenCase(start, end, res.status, len(pre), [encode(i) for i in case])


def random_case(cfg: AcceleratorConfig, rng: np.random.Generator, length: int,
                max_m: int = 64) -> list:
    """``length`` valid GEMM/EPI instructions (about two GEMMs per EPI) for ``cfg``."""
    R, C = cfg.rows, cfg.cols
    A, S, E = cfg.accumulator_rows, cfg.scratchpad_rows, cfg.bias_entries
    out = []

    def pick(hi):
        return int(rng.integers(0, hi + 1))

    for _ in range(length):
        m = int(rng.integers(1, max_m + 1))
        n = int(rng.integers(1, 4))
        acc_base = int(rng.choice([0, 8, A // 2, A // 2 + 8]))
        if rng.random() < 0.65 or n * C > E:
            k = int(rng.integers(1, 5))
            transpose = bool(rng.integers(0, 2))
            blk = C if transpose else R
            n = min(n, max(1, E // C))
            out.append(Gemm(mode=GemmMode(int(rng.integers(0, 4))), transpose=transpose,
                            w=pick(S - n * k * blk), a=pick(S - k * m),
                            acc=min(acc_base + pick(12), A - n * m), m=m, k_tiles=k, n_tiles=n,
                            bias=pick(E - n * C)))
            continue
        rows = n * m
        src = min(acc_base + pick(12), A - rows)
        scale_mode = ScaleMode(int(rng.integers(0, 2)))
        nscale = n * C if scale_mode == ScaleMode.COL else m
        if nscale > E:
            scale_mode, nscale = ScaleMode.COL, n * C
        scale = pick(E - nscale)
        dest = EpiDest(int(rng.integers(0, 3)))
        if dest == EpiDest.ACC:
            other = (src + A // 2) % A
            dst = src if rng.random() < 0.5 else min(other, A - rows)
            if dst != src and abs(dst - src) < rows:
                dst = src
        elif dest == EpiDest.SPAD:
            dst = pick(S - rows)
        else:
            free = [e for e in range(0, E - rows + 1) if e + rows <= scale or e >= scale + nscale]
            if free:
                dst = int(rng.choice(free))
            else:
                dest, dst = EpiDest.SPAD, pick(S - rows)
        out.append(Epi(src=src, dst=dst, dest=dest, scale_mode=scale_mode, scale=scale,
                       fn=int(rng.integers(0, LOADED_FUNCTIONS)), m=m, n_tiles=n,
                       col=int(rng.integers(0, C)), out_shift=int(rng.integers(0, 48))))
    return out
