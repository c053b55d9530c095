"""The golden model rejects programs whose result would depend on the units' relative timing."""

from __future__ import annotations

import pytest

from hw.config import preset
from hw.isa import (
    Dmacfg,
    Epi,
    Gemm,
    Halt,
    Load,
    Loadt,
    MemSpace,
    Program,
    Store,
    Sync,
    SyncTarget,
    TableKind,
    encode_pwl_table,
)
from hw.numeric import PwlTable
from sim.dram_image import DramImage
from sim.golden import GoldenModel, StatusCode

CFG = preset("tiny")
GEOM = Dmacfg(slot=0, height=1, width=64, pitch=0, pix=4, sy=0, sx=1)
RELU = Loadt(kind=TableKind.PWL, dst=0, count=1, offset=2048)
SCALES = Loadt(kind=TableKind.BIAS, dst=0, count=4, offset=3072)  # zero entries


def run(instrs):
    img = DramImage.zeros(4096)
    img.add("relu", 2048, encode_pwl_table(PwlTable.relu(), CFG.pwl_segments))
    return GoldenModel(CFG).run(Program([GEOM, *instrs, Halt()]), img)


@pytest.mark.parametrize(
    ("instrs", "message"),
    [
        # compute reads rows the load unit writes, no token
        ([Load(dst=0, inner=8), Gemm(w=0, a=4, m=4)], "read-after-write hazard on scratchpad"),
        # load overwrites rows a GEMM reads, no token back from compute
        ([Load(dst=0, inner=8, push_next=True), Gemm(w=0, a=4, m=4, pop_prev=True),
          Load(dst=0, inner=4)], "write-after-read hazard on scratchpad row 0"),
        # store reads the accumulator the GEMM writes, no token
        ([Load(dst=0, inner=8, push_next=True), Gemm(w=0, a=4, m=4, pop_prev=True),
          Store(mem=MemSpace.ACC, rows=4, offset=0, stride=16, length=4)],
         "read-after-write hazard on accumulator row 0"),
        # load reads DRAM bytes a store writes, ordered only store -> compute, not -> load
        ([Load(dst=0, inner=8, push_next=True), Gemm(w=0, a=4, m=4, pop_prev=True,
                                                     push_next=True),
          Store(mem=MemSpace.ACC, rows=4, offset=1024, stride=16, length=4, pop_prev=True),
          Load(dst=100, offset=1024, inner=4)], "read-after-write hazard on DRAM byte 1024"),
        # EPI reads a PWL table the load unit loads, no token
        ([Load(mem=MemSpace.ACC, dst=0, inner=1), SCALES,
          Sync(target=SyncTarget.LOAD, push_next=True), RELU, Epi(fn=0, pop_prev=True)],
         "read-after-write hazard on PWL function 0"),
    ],
)
def test_unordered_accesses_are_hazards(instrs, message):
    res = run(instrs)
    assert res.status.code == StatusCode.HAZARD, res.status
    assert message in res.status.message
    assert res.status.pc == len(instrs)  # the racing instruction (GEOM is word 0)


def test_tokens_and_syncs_order_a_dram_round_trip():
    res = run([
        Load(dst=0, inner=8, push_next=True),
        RELU,
        SCALES,
        Sync(target=SyncTarget.LOAD, push_next=True),  # second token covers the table
        Gemm(w=0, a=4, m=4, pop_prev=True),
        Epi(fn=0, src=0, dst=200, m=4, pop_prev=True, push_next=True),
        Store(mem=MemSpace.SPAD, src=200, rows=4, offset=1024, stride=4, length=4, pop_prev=True,
              push_prev=True),
        Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True),
        Load(dst=8, offset=1024, inner=4, pop_next=True),  # pops the SYNC's token
        Load(dst=16, offset=1024, inner=4),  # ordered after the first: same unit
    ])
    assert res.ok, res.status


def test_sync_relays_tokens_without_touching_state():
    res = run([Sync(target=SyncTarget.STORE, push_prev=True),
               Sync(target=SyncTarget.COMPUTE, pop_next=True)])
    assert res.ok, res.status
