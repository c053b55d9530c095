# amaranth: UnusedElaboratable=no
"""The compute unit (hw/compute_unit.py) with its scratchpad and accumulator, in Amaranth's
simulator on ``tiny`` (4x4), against the golden model: the same instructions from the same
state must leave the same accumulator, scratchpad and scale entries, and report the same status
and word offset (tests/compute_bench.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.compute_unit import ComputeUnit
from hw.config import preset
from hw.isa import Epi, EpiDest, Gemm, GemmMode, ScaleMode, Sync, SyncTarget
from sim.golden import StatusCode
from tests.compute_bench import LOADED_FUNCTIONS, compare, golden_case, run_rtl

CFG = preset("tiny")  # 4x4 array, 1024-row scratchpad in 2 banks, 256-row accumulator, 64 entries
R, C = CFG.rows, CFG.cols
SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_rejects_bad_config():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, got 'tiny'"):
        ComputeUnit("tiny")


@pytest.mark.parametrize("mode", list(GemmMode))
@pytest.mark.parametrize("transpose", [False, True])
def test_gemm_modes_and_transpose(mode, transpose):
    case = [Gemm(mode=mode, transpose=transpose, w=100, a=600, acc=7, m=3, k_tiles=2, n_tiles=2,
                 bias=5)]
    gc = golden_case(CFG, case, seed=mode.value)
    assert gc.status.ok
    assert not np.array_equal(gc.start.acc, gc.end.acc)  # the GEMM changes what we compare
    rtl = run_rtl(CFG, gc, seed=1, stall=0.3, gap=0.3)
    compare(gc, rtl)
    assert rtl.counters["array_rows"] == 3 * 2 * 2
    assert rtl.counters["retired"] == 1


def test_m1_reduction_and_back_to_back_accumulate_forwarding():
    """m = 1: the K blocks accumulate into one row on consecutive cycles; then GEMMs into the same
    rows back to back. The read-modify-write pipeline forwards, it never stalls."""
    case = [Gemm(mode=GemmMode.OVERWRITE, w=0, a=500, acc=3, m=1, k_tiles=4, n_tiles=3),
            Gemm(mode=GemmMode.ACCUMULATE, w=48, a=501, acc=3, m=1, k_tiles=4, n_tiles=3),
            Gemm(mode=GemmMode.ACCUMULATE_BIAS, transpose=True, w=96, a=502, acc=3, m=1,
                 k_tiles=2, n_tiles=3, bias=7)]
    gc = golden_case(CFG, case, seed=4)
    assert gc.status.ok
    compare(gc, run_rtl(CFG, gc))


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_next_gemm_accumulates_onto_the_last_rows_in_flight(stall):
    """Each GEMM accumulates onto rows the one before it wrote 1 to 4 rows before its own first
    row: where the operands stream back to back (no stall), the first rows' old values come
    from the three forwarded writes of the read-modify-write pipeline (the row written in the
    cycle the value is selected, one cycle before, two cycles before) and from the transparent
    read (without stalls, the reads of a row are 1, 2, 3 and 4 cycles apart)."""
    m = 2 * R
    acc = 40
    case = [Gemm(mode=GemmMode.OVERWRITE, w=0, a=600, acc=acc, m=m, k_tiles=1, n_tiles=1)]
    for j, back in enumerate((3, 2, 2, 1, 3, 2, 1, 4)):
        acc += m - back
        case.append(Gemm(mode=GemmMode.ACCUMULATE, w=16 * (j % 4), a=600 + 8 * j, acc=acc, m=m,
                         k_tiles=1, n_tiles=1))
    gc = golden_case(CFG, case, seed=9)
    assert gc.status.ok, gc.status
    rtl = run_rtl(CFG, gc, seed=9 + int(10 * stall), stall=stall, gap=stall, max_cycles=40000)
    compare(gc, rtl)
    assert rtl.counters["retired"] == len(case)


def _hazard_cases():
    """Back-to-back instructions on the same rows, with blocks of ``m >= R`` rows so the next
    GEMM's weights preload and its operands stream while the previous GEMM is still in flight."""
    m = 2 * R
    return {
        # write after write, then read after write, on the same accumulator rows
        "gemm_waw_raw_same_rows": [
            Gemm(mode=GemmMode.OVERWRITE, w=0, a=600, acc=16, m=m, k_tiles=2, n_tiles=2),
            Gemm(mode=GemmMode.OVERWRITE, w=32, a=700, acc=16, m=m, k_tiles=1, n_tiles=2),
            Gemm(mode=GemmMode.ACCUMULATE, w=64, a=800, acc=16, m=m, k_tiles=2, n_tiles=2),
            Gemm(mode=GemmMode.ACCUMULATE_BIAS, transpose=True, w=96, a=600, acc=16 + m, m=m,
                 k_tiles=1, n_tiles=1, bias=3)],
        # the next GEMM accumulates onto rows the previous one is still writing, shifted by one
        "gemm_raw_overlapping_ranges": [
            Gemm(mode=GemmMode.BIAS, w=0, a=600, acc=40, m=m, k_tiles=3, n_tiles=1, bias=1),
            Gemm(mode=GemmMode.ACCUMULATE, w=48, a=610, acc=41, m=m, k_tiles=1, n_tiles=1),
            Gemm(mode=GemmMode.ACCUMULATE, w=64, a=620, acc=39, m=m, k_tiles=1, n_tiles=1)],
        # GEMM -> EPI in place (dest ACC) -> GEMM accumulating onto the EPI's output rows
        "gemm_epi_acc_gemm_same_rows": [
            Gemm(mode=GemmMode.OVERWRITE, w=0, a=600, acc=8, m=m, k_tiles=2, n_tiles=1),
            Epi(src=8, dst=8, dest=EpiDest.ACC, scale=2, fn=1, m=m, n_tiles=1),
            Gemm(mode=GemmMode.ACCUMULATE, w=32, a=640, acc=8, m=m, k_tiles=2, n_tiles=1)],
        # GEMM -> EPI to the scratchpad rows the next GEMM reads as operands, then as weights
        "gemm_epi_spad_feeds_next_gemm": [
            Gemm(mode=GemmMode.OVERWRITE, w=0, a=600, acc=128, m=m, k_tiles=1, n_tiles=1),
            Epi(src=128, dst=700, dest=EpiDest.SPAD, scale=0, fn=0, m=m, n_tiles=1),
            Gemm(mode=GemmMode.OVERWRITE, w=16, a=700, acc=128, m=m, k_tiles=1, n_tiles=1),
            Epi(src=128, dst=300, dest=EpiDest.SPAD, scale=4, fn=2, m=m, n_tiles=1),
            Gemm(mode=GemmMode.ACCUMULATE, w=300, a=640, acc=128, m=m, k_tiles=2, n_tiles=1)],
        # alternating buffers (the EPI of one hides behind the GEMM of the other), then a GEMM
        # that overwrites the rows the EPI before it is still reading
        "alternating_buffers_then_war": [
            Gemm(mode=GemmMode.OVERWRITE, w=0, a=600, acc=0, m=m, k_tiles=2, n_tiles=1),
            Epi(src=0, dst=400, dest=EpiDest.SPAD, scale=0, fn=1, m=m, n_tiles=1),
            Gemm(mode=GemmMode.OVERWRITE, w=32, a=640, acc=128, m=m, k_tiles=2, n_tiles=1),
            Epi(src=128, dst=500, dest=EpiDest.SPAD, scale=0, fn=1, m=m, n_tiles=1),
            Gemm(mode=GemmMode.OVERWRITE, w=64, a=680, acc=128, m=m, k_tiles=2, n_tiles=1)],
    }


@pytest.mark.parametrize("stall", [0.0, 0.3])
@pytest.mark.parametrize("name", list(_hazard_cases()))
def test_back_to_back_hazards_on_same_rows(name, stall):
    """Read-after-write, write-after-write and write-after-read between consecutive GEMMs and
    EPIs on the same accumulator (and scratchpad) rows: the program-order result, with and
    without random backpressure and gaps on every stream."""
    case = _hazard_cases()[name]
    gc = golden_case(CFG, case, seed=len(name))
    assert gc.status.ok, gc.status
    rtl = run_rtl(CFG, gc, seed=len(name) + int(10 * stall), stall=stall, gap=stall,
                  max_cycles=40000)
    compare(gc, rtl)
    assert rtl.counters["retired"] == len(case)
    assert rtl.counters["array_rows"] == sum(
        i.m * i.k_tiles * i.n_tiles for i in case if isinstance(i, Gemm))


@pytest.mark.parametrize("dest", list(EpiDest))
@pytest.mark.parametrize("scale_mode", list(ScaleMode))
def test_epi_dests_and_scale_modes(dest, scale_mode):
    case = [Epi(src=10, dst=40, dest=dest, scale_mode=scale_mode, scale=2, fn=1, m=3, n_tiles=2,
                col=2, out_shift=9)]
    gc = golden_case(CFG, case, seed=dest.value)
    assert gc.status.ok
    compare(gc, run_rtl(CFG, gc, seed=3, stall=0.3, gap=0.2))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_epi_completes_only_after_its_writes_landed(seed):
    """The EPI's writes pass a register slice; the EPI completes only once the slice is empty
    (hw/compute_unit.py, the fence rule of hw/write_fence.py). With the bias/scale SRAM's write
    port mostly not ready, a dest SCALE EPI's tokens must come after its last write was taken,
    and the next EPI's scale reads of the entries it wrote must see the new values (the bench's
    SRAM answers a read from the entries written before the read request)."""
    case = [Epi(src=10, dst=20, dest=EpiDest.SCALE, scale_mode=ScaleMode.COL, scale=2, fn=1, m=3,
                n_tiles=1, col=1, out_shift=5, push_prev=True, push_next=True),
            Epi(src=30, dst=50, dest=EpiDest.ACC, scale_mode=ScaleMode.ROW, scale=20, fn=1, m=3,
                n_tiles=1)]
    gc = golden_case(CFG, case, seed=seed)
    assert gc.status.ok
    rtl = run_rtl(CFG, gc, seed=seed, scale_write_stall=0.85)
    compare(gc, rtl)
    assert len(rtl.scale_writes) == 3
    puts = [c for c, q in rtl.token_events if q in ("c2l", "c2s")]
    assert len(puts) == 2
    assert min(puts) > rtl.scale_writes[-1], (puts, rtl.scale_writes)


@st.composite
def gemms(draw, region=None):
    m = draw(st.integers(1, 6))
    k = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    transpose = draw(st.booleans())
    blk = C if transpose else R
    acc_base = draw(st.sampled_from([0, 8, 128, 136])) if region is None else region
    return Gemm(mode=draw(st.sampled_from(list(GemmMode))), transpose=transpose,
                w=draw(st.integers(0, CFG.scratchpad_rows - n * k * blk)),
                a=draw(st.integers(0, CFG.scratchpad_rows - k * m)),
                acc=acc_base + draw(st.integers(0, 12)), m=m, k_tiles=k, n_tiles=n,
                bias=draw(st.integers(0, CFG.bias_entries - n * C)))


@st.composite
def epis(draw):
    m = draw(st.integers(1, 6))
    n = draw(st.integers(1, 3))
    rows = n * m
    dest = draw(st.sampled_from(list(EpiDest)))
    scale_mode = draw(st.sampled_from(list(ScaleMode)))
    src = draw(st.sampled_from([0, 8, 128, 136])) + draw(st.integers(0, 12))
    nscale = n * C if scale_mode == ScaleMode.COL else m
    scale = draw(st.integers(0, CFG.bias_entries - nscale))
    if dest == EpiDest.ACC:
        dst = src if draw(st.booleans()) else draw(st.sampled_from([64, 200]))
    elif dest == EpiDest.SPAD:
        dst = draw(st.integers(0, CFG.scratchpad_rows - rows))
    else:
        free = [e for e in range(CFG.bias_entries - rows + 1)
                if e + rows <= scale or e >= scale + nscale]
        if not free:
            dest, dst = EpiDest.SPAD, 0
        else:
            dst = draw(st.sampled_from(free))
    return Epi(src=src, dst=dst, dest=dest, scale_mode=scale_mode, scale=scale,
               fn=draw(st.integers(0, LOADED_FUNCTIONS - 1)), m=m, n_tiles=n,
               col=draw(st.integers(0, C - 1)), out_shift=draw(st.integers(0, 47)))


@SETTINGS
@given(case=st.lists(gemms(), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       stall=st.sampled_from([0.0, 0.3]))
def test_random_gemm_sequences_match_golden(case, seed, stall):
    gc = golden_case(CFG, case, seed=seed)
    assert gc.status.ok, gc.status
    compare(gc, run_rtl(CFG, gc, seed=seed, stall=stall, gap=stall))


@SETTINGS
@given(case=st.lists(st.one_of(gemms(), epis()), min_size=2, max_size=5),
       seed=st.integers(0, 2**16), stall=st.sampled_from([0.0, 0.3]))
def test_random_gemm_epi_mixes_keep_program_order(case, seed, stall):
    """GEMMs and EPIs on overlapping and disjoint rows: the interlock lets disjoint ones overlap,
    the result is still the program-order result."""
    gc = golden_case(CFG, case, seed=seed)
    assert gc.status.ok, gc.status
    compare(gc, run_rtl(CFG, gc, seed=seed, stall=stall, gap=stall))


def _errors():
    S, A, E = CFG.scratchpad_rows, CFG.accumulator_rows, CFG.bias_entries
    return [
        # GEMM: weights, operands, accumulator, bias (each also violating the later checks)
        (Gemm(w=S - 3, a=S, acc=A, m=2, mode=GemmMode.BIAS, bias=E), StatusCode.SPAD_RANGE),
        (Gemm(w=S - 8, transpose=True, a=S - 1, acc=A, m=2, mode=GemmMode.BIAS, bias=E),
         StatusCode.SPAD_RANGE),
        (Gemm(w=0, a=S - 3, acc=A, m=2, k_tiles=2, bias=E, mode=GemmMode.ACCUMULATE_BIAS),
         StatusCode.SPAD_RANGE),
        (Gemm(w=0, a=0, acc=A - 5, m=3, n_tiles=2, bias=E), StatusCode.ACC_RANGE),
        (Gemm(w=0, a=0, acc=0, m=3, n_tiles=2, bias=E - 5, mode=GemmMode.ACCUMULATE_BIAS),
         StatusCode.TABLE_RANGE),
        (Gemm(w=0, a=0, acc=0, m=3, n_tiles=2, bias=E - 5, mode=GemmMode.ACCUMULATE), None),
        # EPI, in the order of docs/isa.md
        (Epi(src=A - 2, m=3, fn=CFG.pwl_functions, scale=E), StatusCode.ACC_RANGE),
        (Epi(src=0, m=3, fn=CFG.pwl_functions, scale=E), StatusCode.TABLE_RANGE),
        (Epi(src=0, m=3, fn=LOADED_FUNCTIONS, scale=E), StatusCode.FN_UNLOADED),
        (Epi(src=0, m=3, n_tiles=2, fn=0, scale=E - 7), StatusCode.TABLE_RANGE),
        (Epi(src=0, m=3, n_tiles=2, fn=0, scale=E - 3, scale_mode=ScaleMode.ROW), None),
        (Epi(src=0, m=3, fn=0, scale=0, dest=EpiDest.SCALE, col=C, out_shift=48, dst=E),
         StatusCode.FIELD_RANGE),
        (Epi(src=0, m=3, fn=0, scale=0, dest=EpiDest.SCALE, col=0, out_shift=48, dst=E),
         StatusCode.FIELD_RANGE),
        (Epi(src=0, m=3, fn=0, scale=0, dest=EpiDest.SCALE, dst=E - 2), StatusCode.TABLE_RANGE),
        (Epi(src=0, m=3, fn=0, scale=0, dest=EpiDest.SCALE, dst=C - 1), StatusCode.FIELD_RANGE),
        (Epi(src=0, m=3, fn=0, scale=0, scale_mode=ScaleMode.ROW, dest=EpiDest.SCALE, dst=3),
         None),
        (Epi(src=0, m=3, fn=0, scale=0, scale_mode=ScaleMode.ROW, dest=EpiDest.SCALE, dst=2),
         StatusCode.FIELD_RANGE),
        (Epi(src=0, m=3, fn=0, dst=S - 2), StatusCode.SPAD_RANGE),
        (Epi(src=0, m=3, fn=0, dst=A - 2, dest=EpiDest.ACC), StatusCode.ACC_RANGE),
        (Epi(src=10, m=3, fn=0, dst=12, dest=EpiDest.ACC), StatusCode.FIELD_RANGE),
        (Epi(src=10, m=3, fn=0, dst=10, dest=EpiDest.ACC), None),
    ]


@pytest.mark.parametrize(("bad", "code"), _errors(), ids=lambda v: getattr(v, "name", None))
def test_checks_report_golden_code_and_offset(bad, code):
    """Each check, with the later checks also violated: the golden model's code and offset; the
    instructions before it complete, the one after it does not run."""
    before = Gemm(w=0, a=8, acc=20, m=4, k_tiles=2, n_tiles=2)
    after = Gemm(w=64, a=100, acc=40, m=4)
    gc = golden_case(CFG, [before, bad, after], seed=9)
    assert (gc.status.code if code is not None else StatusCode.OK) == (code or StatusCode.OK)
    rtl = run_rtl(CFG, gc, seed=2)
    compare(gc, rtl)
    assert rtl.counters["retired"] == (3 if code is None else 1)


@SETTINGS
@given(data=st.data())
def test_random_fields_status_matches_golden(data):
    """Fields anywhere around the limits: same status and offset as the golden model, and the
    same state (nothing after the failing instruction runs)."""
    S, A, E = CFG.scratchpad_rows, CFG.accumulator_rows, CFG.bias_entries
    draw = data.draw
    case = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            case.append(Gemm(mode=draw(st.sampled_from(list(GemmMode))),
                             transpose=draw(st.booleans()),
                             w=draw(st.integers(S - 40, S + 2)), a=draw(st.integers(S - 20, S)),
                             acc=draw(st.integers(A - 20, A)), m=draw(st.integers(1, 5)),
                             k_tiles=draw(st.integers(1, 2)), n_tiles=draw(st.integers(1, 2)),
                             bias=draw(st.integers(E - 10, E))))
        else:
            m, n = draw(st.integers(1, 5)), draw(st.integers(1, 2))
            case.append(Epi(src=draw(st.integers(A - 20, A)), dst=draw(st.integers(0, 300)),
                            dest=draw(st.sampled_from(list(EpiDest))),
                            scale_mode=draw(st.sampled_from(list(ScaleMode))),
                            scale=draw(st.integers(E - 20, E)), fn=draw(st.integers(0, 9)),
                            m=m, n_tiles=n, col=draw(st.integers(0, 5)),
                            out_shift=draw(st.integers(44, 50))))
    gc = golden_case(CFG, case, seed=draw(st.integers(0, 100)))
    compare(gc, run_rtl(CFG, gc, seed=1))


def test_flush_above_discards_later_instructions():
    """With flush_above = {valid, pc}, instructions at larger offsets are dropped unexecuted."""
    case = [Gemm(w=0, a=8, acc=20, m=4), Gemm(w=0, a=8, acc=60, m=4)]
    gc = golden_case(CFG, case[:1], seed=5)
    gc.words = [w.encode() for w in case]
    rtl = run_rtl(CFG, gc, flush_pc=gc.first_pc)
    compare(gc, rtl)
    assert rtl.counters["retired"] == 1


def test_tokens_wait_and_pushes_retire_in_program_order():
    """A GEMM that pops l2c waits for the token; a short disjoint EPI issued after a long GEMM
    finishes first but pushes its token only after the GEMM's (in-order retire)."""
    case = [Gemm(w=0, a=8, acc=0, m=12, k_tiles=3, n_tiles=2, pop_prev=True, push_next=True),
            Epi(src=128, dst=300, m=1, fn=0, push_prev=True),
            Sync(target=SyncTarget.COMPUTE, pop_next=True, push_next=True)]
    extra = [Sync(target=SyncTarget.LOAD, push_next=True)]
    gc = golden_case(CFG, case[:2], seed=6, extra=extra)
    assert gc.status.ok
    gc.words = [w.encode() for w in case]
    rtl = run_rtl(CFG, gc, tokens_at=40)
    compare(gc, rtl)
    assert rtl.first_array_row > 40
    assert rtl.counters["stall_l2c"] >= 35
    order = [q for _, q in rtl.token_events]
    # pops at issue (the SYNC issues while the GEMM runs), pushes in program order
    assert order == ["l2c", "s2c", "c2s", "c2l", "c2s"]
    assert rtl.counters["retired"] == 3
