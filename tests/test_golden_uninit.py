"""On-chip memory is undefined after reset: reading what was never written is UNINIT_READ."""

from __future__ import annotations

import pytest

from hw.config import AcceleratorConfig, preset
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
    Store,
    Sync,
    SyncTarget,
    TableKind,
    encode_pwl_table,
)
from hw.numeric import PwlTable
from sim.dram_image import DramImage
from sim.golden import GoldenModel, StatusCode

CFG = preset("tiny")  # 4x4, lanes 4
GEOM = Dmacfg(slot=0, height=1, width=64, pitch=0, pix=4, sy=0, sx=1)
ACC_GEOM = Dmacfg(slot=1, height=1, width=64, pitch=0, pix=16, sy=0, sx=1)
TABLE = Loadt(kind=TableKind.PWL, dst=0, count=1, offset=2048)
SCALES = Loadt(kind=TableKind.BIAS, dst=0, count=8, offset=3072)
FENCE = [Sync(target=SyncTarget.LOAD, push_next=True),
         Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
         Sync(target=SyncTarget.STORE, pop_prev=True, push_prev=True),
         Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True),
         Sync(target=SyncTarget.LOAD, pop_next=True)]


def image():
    img = DramImage.zeros(4096)
    img.add("identity", 2048, encode_pwl_table(PwlTable.identity(), CFG.pwl_segments))
    return img


def run(instrs, cfg=CFG, *, check_hazards=True):
    prog = Program([*instrs, Halt()])
    return GoldenModel(cfg, check_hazards=check_hazards).run(prog, image())


@pytest.mark.parametrize("check_hazards", [True, False])
@pytest.mark.parametrize(
    ("instrs", "message"),
    [
        # the audit's case: a GEMM on a scratchpad nothing was loaded into
        ([Gemm(m=4, a=100, w=200)], "operand reads scratchpad row 100 lanes 0..3, which was "
                                    "never written"),
        ([GEOM, Load(dst=100, inner=4), *FENCE, Gemm(m=4, a=100, w=200)],
         "weight reads scratchpad row 200"),
        ([Store(mem=MemSpace.ACC, src=5, rows=1, stride=16, length=4)],
         "reads accumulator row 5, which was never written"),
        ([Store(mem=MemSpace.SPAD, src=7, rows=1, stride=4, length=1)],
         "source reads scratchpad row 7 lanes 0..0"),
        ([GEOM, Load(dst=0, inner=8), *FENCE, Gemm(mode=GemmMode.ACCUMULATE, w=0, a=4, m=4)],
         "reads accumulator row 0"),
        ([GEOM, Load(dst=0, inner=8), *FENCE, Gemm(mode=GemmMode.BIAS, w=0, a=4, m=4, bias=2)],
         "reads the bias of entry 2"),
        # EPI: accumulator source, then scale entries (COL: n*C entries; ROW: m entries)
        ([TABLE, *FENCE, Epi(src=3, m=1)], "reads accumulator row 3"),
        ([ACC_GEOM, Load(mem=MemSpace.ACC, geom=1, dst=0, inner=2, length=4), TABLE, *FENCE,
          Epi(src=0, m=2, scale=6)], "reads the multiplier/shift of entry 6"),
        ([ACC_GEOM, Load(mem=MemSpace.ACC, geom=1, dst=0, inner=2, length=4), TABLE, *FENCE,
          Epi(src=0, m=2, scale_mode=ScaleMode.ROW, scale=9)],
         "reads the multiplier/shift of entry 9"),
    ],
)
def test_reads_of_unwritten_memory_stop(instrs, message, check_hazards):
    res = run(instrs, check_hazards=check_hazards)
    assert res.status.code == StatusCode.UNINIT_READ, res.status
    assert message in res.status.message
    assert res.status.pc == len(instrs) - 1


def test_epi_scale_defines_multipliers_but_not_biases():
    prefix = [
        GEOM, ACC_GEOM, TABLE, SCALES,
        Load(mem=MemSpace.ACC, geom=1, dst=0, inner=4, length=1),  # rest of each row is zero
        Load(dst=0, inner=8),
        *FENCE,
        Epi(src=0, m=4, dest=EpiDest.SCALE, dst=20, scale=0),  # multipliers of entries 20..23
    ]
    res = run([*prefix, Epi(src=0, m=4, scale_mode=ScaleMode.ROW, scale=20, dest=EpiDest.SPAD,
                            dst=40), *FENCE,
               Store(mem=MemSpace.SPAD, src=40, rows=4, offset=1024, stride=4, length=4)])
    assert res.ok, res.status
    res = run([*prefix, Gemm(mode=GemmMode.BIAS, w=0, a=4, m=4, bias=20)])
    assert res.status.code == StatusCode.UNINIT_READ
    assert "reads the bias of entry 20" in res.status.message


def test_epi_to_scratchpad_defines_only_its_lanes():
    """With rows > cols an EPI writes lanes 0..C-1; a GEMM operand needs lanes 0..R-1."""
    cfg = AcceleratorConfig(rows=8, cols=4, scratchpad_rows=1024, accumulator_rows=256,
                            bias_entries=64)
    img = DramImage.zeros(4096)
    img.add("identity", 2048, encode_pwl_table(PwlTable.identity(), cfg.pwl_segments))
    prefix = [
        Dmacfg(slot=1, height=1, width=64, pitch=0, pix=16, sy=0, sx=1),
        Load(mem=MemSpace.ACC, geom=1, dst=0, inner=2, length=4),
        Loadt(kind=TableKind.BIAS, dst=0, count=8, offset=3072),
        TABLE,
        Dmacfg(slot=0, height=1, width=64, pitch=0, pix=8, sy=0, sx=1),
        Load(dst=100, inner=8, length=8),  # a full weight block
        *FENCE,
        Epi(src=0, m=2, dest=EpiDest.SPAD, dst=10),  # lanes 0..3 of rows 10, 11
    ]
    res = GoldenModel(cfg).run(Program([*prefix, Gemm(a=10, w=100, m=2), Halt()]), img)
    assert res.status.code == StatusCode.UNINIT_READ
    assert "scratchpad row 10 lanes 0..7, which has only lanes 0..3 written" in res.status.message
    # storing the 4 written lanes is fine; loading the whole row first makes the GEMM fine too
    ok = [*prefix, *FENCE, Store(src=10, rows=2, offset=1024, stride=4, length=4), Halt()]
    assert GoldenModel(cfg).run(Program(ok), img).ok
    full = [prefix[4], Load(dst=10, inner=2, length=1), *prefix[:4], *prefix[5:]]
    res = GoldenModel(cfg).run(Program([*full, Gemm(a=10, w=100, m=2), Halt()]), img)
    assert res.ok, res.status
