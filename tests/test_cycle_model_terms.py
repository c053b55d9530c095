"""Terms of the cycle model that the RTL's counters showed were missing or wrong
(docs/simulation.md): whole rows read across a beat boundary, rows of several beats in a merged
run, STORE rows that cannot join a run, rows of padding only, STORE reads sharing a scratchpad
bank with a GEMM (both sides: the STORE's rows wait, the GEMM's operand stream loses cycles),
and accumulator rows (LOAD writes, EPI reads) waiting for a GEMM's result stream in their half.
Each test times a small program with chosen constants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw import numeric
from hw.config import preset
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
    Store,
    Sync,
    SyncTarget,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
)
from sim.cycle_model import CycleParams, estimate_cycles
from sim.dram_image import DramImage
from sim.golden import GoldenModel

CFG = preset("default")
L = CFG.lanes
BEAT = CFG.dma_data_bits // 8


def _image() -> bytes:
    """Zeros, an identity PWL table at 0x8000 and 64 bias entries (scale 1/512) at 0x8800."""
    img = DramImage.zeros(1 << 16)
    table = np.frombuffer(encode_pwl_table(numeric.PwlTable.identity(), CFG.pwl_segments),
                          np.uint8)
    img.data[0x8000:0x8000 + table.size] = table
    mult, shift = numeric.quantize_multiplier(1 / 512)
    entries = np.frombuffer(encode_bias_entries([0] * 64, [mult] * 64, [shift] * 64), np.uint8)
    img.data[0x8800:0x8800 + entries.size] = entries
    return img.data.tobytes()


IMAGE = _image()


def _report(instructions, params=None):
    words = Program([*instructions, Halt()]).words()
    trace = GoldenModel(CFG).run(words, IMAGE).raise_for_status().trace
    return estimate_cycles(trace, CFG, params)


def _cycles(instructions, params=None) -> int:
    return _report(instructions, params).total_cycles


def _rows(pitch: int, n: int) -> list:
    return [Dmacfg(slot=1, height=4095, width=L, pitch=pitch, pix=1, sy=1, sx=0),
            Load(geom=1, outer=n, length=L)]


def test_whole_rows_across_a_beat_cost_their_beats_in():
    # At pitch L + 1 all but one row in BEAT start inside a beat: two beats in, one out. The
    # RTL measured 1 + (BEAT - 1) / BEAT cycles a row (the model charged one more before).
    per_row = (_cycles(_rows(L + 1, 400)) - _cycles(_rows(L + 1, 64))) / 336
    assert abs(per_row - (1 + (BEAT - 1) / BEAT)) < 0.05


@pytest.mark.parametrize("contiguous", [True, False])
def test_accumulator_rows_of_several_beats_cost_their_beats(contiguous):
    # Rows of C int32 (4 beats on default), merged into runs or one request each: the RTL
    # measured 4 cycles a row either way (LOAD of 128 / 256 rows: 673 / 1185 cycles); the model
    # charged one more a row in a run before.
    row = 4 * CFG.cols
    geom = (Dmacfg(slot=1, height=1, width=4096, pitch=0, pix=row, sy=0, sx=1) if contiguous
            else Dmacfg(slot=1, height=4095, width=row, pitch=2 * row, pix=1, sy=1, sx=0))

    def load(n):
        if contiguous:
            return [geom, Load(geom=1, mem=MemSpace.ACC, inner=n, length=CFG.cols)]
        return [geom, Load(geom=1, mem=MemSpace.ACC, outer=n, length=CFG.cols)]

    per_row = (_cycles(load(256)) - _cycles(load(128))) / 128
    assert per_row == row // BEAT


def test_store_rows_that_cannot_join_a_run_are_read_every_other_cycle():
    # Whole-beat rows at twice their pitch: each its own write request, and the store unit
    # issues the next row only once the pending request left. The RTL measured 2 cycles a row
    # (STOREs of 16 / 64 / 256 such rows on default: 545 / 641 / 1025 cycles); the model
    # read them one a cycle before (1.6 a row from 16 to 64 rows).
    fill = [Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1),
            Load(geom=0, inner=64, length=L, push_next=True),
            Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True)]

    def store(n):
        return [*fill, Store(src=0, rows=n, stride=2 * L, length=L, offset=1 << 15,
                             pop_prev=True)]

    assert (_cycles(store(64)) - _cycles(store(16))) / 48 == pytest.approx(2, abs=0.05)


def test_padding_rows_take_their_own_pipeline_latency():
    blank = [Dmacfg(slot=1, height=4095, width=0, pitch=0, pix=1, sy=1, sx=0)]
    loads = [Load(geom=1, dst=9 * k, outer=9, length=L) for k in range(4)]
    base = CycleParams()
    later = dataclasses.replace(base, load_pad_done=base.load_pad_done + 5)
    # each LOAD waits for its last padding row: four LOADs in a row, 5 cycles each
    assert _cycles(blank + loads, later) - _cycles(blank + loads, base) == 20
    # rows with data do not use the constant
    assert _cycles(_rows(4 * L, 7), later) == _cycles(_rows(4 * L, 7), base)


def _gemm_and_store(src: int) -> list:
    per = CFG.scratchpad_rows // CFG.scratchpad_banks
    spad = Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1)
    return [spad, Load(geom=0, inner=256, length=L),
            Load(geom=0, dst=per, inner=128, length=L, push_next=True),
            Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
            Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1),
            Store(src=src, rows=128, stride=L, length=L, offset=1 << 15, pop_prev=True)]


def test_store_waits_for_the_scratchpad_bank_a_gemm_streams_from():
    per = CFG.scratchpad_rows // CFG.scratchpad_banks
    # the STORE's side alone (the GEMM's side, gemm_store_wait, would end the program later)
    free = dataclasses.replace(CycleParams(), store_bank_wait=0, gemm_store_wait=0)
    shared = dataclasses.replace(CycleParams(), store_bank_wait=1, gemm_store_wait=0)
    same, other = _gemm_and_store(16), _gemm_and_store(per)
    assert _cycles(same, shared) > _cycles(same, free) + 16  # reads inside the stream wait
    assert _cycles(other, shared) == _cycles(other, free)


def _store_beside_gemms(src: int, store_first: bool) -> list:
    per = CFG.scratchpad_rows // CFG.scratchpad_banks
    spad = Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1)
    store = [Store(src=src, rows=400, stride=L, length=L, offset=1 << 15, pop_prev=True)]
    gemms = [Gemm(w=0, a=per, acc=0, m=128, k_tiles=1, n_tiles=1)] * 8
    return [spad, Load(geom=0, inner=256, length=L), Load(geom=0, dst=per, inner=512, length=L),
            Load(geom=0, dst=2 * per, inner=400, length=L, push_next=True),
            Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
            *(store + gemms if store_first else gemms + store)]


@pytest.mark.parametrize("store_first", [True, False], ids=["store first", "gemms first"])
def test_gemm_operand_stream_loses_the_bank_port_to_a_store(store_first):
    # The GEMMs stream their operands from the bank the STORE reads; the port serves both in
    # turn, so the GEMMs lose about a cycle per STORE row, whichever comes first in program
    # order (RTL: 3,324 cycles either way against 2,940 with the STORE in another bank).
    per = CFG.scratchpad_rows // CFG.scratchpad_banks
    free = dataclasses.replace(CycleParams(), gemm_store_wait=0)
    one = dataclasses.replace(CycleParams(), gemm_store_wait=1)
    same, other = (_store_beside_gemms(per, store_first),
                   _store_beside_gemms(2 * per, store_first))
    assert _cycles(same, one) > _cycles(same, free) + 200  # most of 400 reads meet the stream
    assert _cycles(same, one) < _cycles(same, free) + 400 + 8  # at most one per STORE row
    assert _cycles(other, one) == _cycles(other, free)


def test_accumulator_rows_wait_for_a_gemm_result_stream_in_their_half():
    half = CFG.accumulator_rows // 2
    rows = Dmacfg(slot=2, height=4095, width=1, pitch=4 * CFG.cols + 4, pix=4, sy=1, sx=0)

    def program(dst):
        spad = Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1)
        chain = [Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1, pop_prev=True),
                 *[Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1,
                        mode=GemmMode.ACCUMULATE)] * 3]
        loads = [Load(geom=2, mem=MemSpace.ACC, offset=1024 * k, dst=dst + 8 * k, outer=8,
                      length=1) for k in range(4)]
        return [spad, Load(geom=0, inner=256, length=L, push_next=True), rows, *chain, *loads]

    def loads_done(dst):  # the last LOAD's finish (the GEMMs may end the program later)
        return max(e.finish for e in _report(program(dst)).timeline if e.mnemonic == "load")

    same, other = loads_done(half // 2), loads_done(half + half // 2)
    assert same > other + 64  # the loads' rows wait for the GEMMs' results to pass


def test_epi_loses_its_half_to_later_accumulating_gemms():
    half = CFG.accumulator_rows // 2
    table = [Loadt(kind=TableKind.PWL, dst=0, count=1, offset=0x8000),
             Loadt(kind=TableKind.BIAS, dst=0, count=64, offset=0x8800)]

    def program(src):
        spad = Dmacfg(slot=0, height=1, width=4096, pitch=0, pix=L, sy=0, sx=1)
        return [spad, *table, Load(geom=0, inner=256, length=L, push_next=True),
                Gemm(w=0, a=16, acc=src, m=128, k_tiles=1, n_tiles=1, pop_prev=True),
                Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1),
                Epi(src=src, dst=600, dest=EpiDest.SPAD, m=128, n_tiles=1),
                *[Gemm(w=0, a=16, acc=0, m=128, k_tiles=1, n_tiles=1,
                       mode=GemmMode.ACCUMULATE)] * 3]

    free = dataclasses.replace(CycleParams(), epi_bank_wait=0)
    same, other = program(half // 2), program(half + half // 2)
    assert _cycles(same) > _cycles(same, free) + 64
    assert _cycles(other) == _cycles(other, free)
