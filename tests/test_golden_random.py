"""Random programs: the vectorised golden model against a slow element-by-element reference."""

from __future__ import annotations

import numpy as np
import pytest

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
    Setbase,
    Store,
    Sync,
    SyncTarget,
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
    pwl_table_bytes,
)
from sim.dram_image import DramImage
from sim.golden import GoldenModel
from tests.golden_reference import ReferenceMachine, random_pwl_table

CONFIGS = [
    AcceleratorConfig(rows=3, cols=5, scratchpad_rows=64, scratchpad_banks=1,
                      accumulator_rows=32, bias_entries=32, pwl_functions=8, pwl_segments=64),
    AcceleratorConfig(rows=4, cols=4, scratchpad_rows=64, scratchpad_banks=2,
                      accumulator_rows=32, bias_entries=32, pwl_functions=8, pwl_segments=64),
]
DATA_END, BIAS_AT, PWL_AT, N_TABLES = 2048, 2048, 2304, 2
ACC_INIT_AT = 512  # the preamble fills the accumulator from DRAM bytes 512.. (random data)


def make_image(rng, cfg) -> DramImage:
    img = DramImage.zeros(4096)
    img.data[:DATA_END] = rng.integers(0, 256, DATA_END, dtype=np.uint8)
    n = cfg.bias_entries
    img.add("bias", BIAS_AT, encode_bias_entries(rng.integers(-(1 << 31), 1 << 31, n),
                                                 rng.integers(-(1 << 15), 1 << 15, n),
                                                 rng.integers(0, 24, n)))
    tables = b"".join(
        encode_pwl_table(random_pwl_table(rng, int(rng.integers(1, 9))), cfg.pwl_segments)
        for _ in range(N_TABLES)
    )
    img.add("pwl", PWL_AT, tables)
    return img


def preamble(cfg) -> list:
    """Write every scratchpad row, accumulator row and bias/scale entry from DRAM.

    On-chip memory is undefined after reset (the golden model stops with UNINIT_READ on a read
    of anything unwritten), so the random instructions after this may read any row.
    """
    S, A, L, C = cfg.scratchpad_rows, cfg.accumulator_rows, cfg.lanes, cfg.cols
    assert S * L <= ACC_INIT_AT and ACC_INIT_AT + A * C * 4 <= DATA_END
    return [
        Dmacfg(slot=0, height=1, width=S, pitch=0, pix=L, sy=0, sx=1),
        Load(mem=MemSpace.SPAD, geom=0, base=3, dst=0, inner=S, length=L),
        Dmacfg(slot=0, height=1, width=A, pitch=0, pix=4 * C, sy=0, sx=1),
        Load(mem=MemSpace.ACC, geom=0, base=3, offset=ACC_INIT_AT, dst=0, inner=A, length=C),
        Loadt(kind=TableKind.BIAS, dst=0, count=cfg.bias_entries, base=3, offset=BIAS_AT),
    ]


def random_program(rng, cfg, length=25) -> Program:  # noqa: C901
    R, C, L = cfg.rows, cfg.cols, cfg.lanes
    S, A, E, F = cfg.scratchpad_rows, cfg.accumulator_rows, cfg.bias_entries, cfg.pwl_functions
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    loaded: set[int] = set()
    out = preamble(cfg)
    length += len(out)
    while len(out) < length:
        kind = r(0, 10)
        if kind > 8:
            kind = 6 if loaded else 3  # favour epilogues (they need a loaded table)
        if kind == 0:
            out.append(Setbase(reg=r(0, 2), value=r(0, 512)))  # register 3 stays 0
        elif kind == 1:
            out.append(Dmacfg(slot=r(0, 3), height=r(0, 4), width=r(0, 6), pitch=r(0, 64),
                              pix=r(1, 8), sy=r(0, 2), sx=r(0, 2)))
        elif kind == 2:
            mem = MemSpace(r(0, 1))
            outer, inner = r(1, 3), r(1, 4)
            rows = S if mem == MemSpace.SPAD else A
            out.append(Load(mem=mem, geom=r(0, 3), base=r(0, 3), offset=r(0, 256),
                            dst=r(0, rows - outer * inner), outer=outer, inner=inner,
                            y0=r(-2, 2), x0=r(-2, 2),
                            length=r(1, L if mem == MemSpace.SPAD else C)))
        elif kind == 3:
            if r(0, 1):
                count = r(1, 8)
                first = r(0, E - count)
                out.append(Loadt(kind=TableKind.BIAS, dst=r(0, E - count), count=count, base=3,
                                 offset=BIAS_AT + 8 * first))
            else:
                count = r(1, N_TABLES)
                dst = r(0, F - count)
                t = r(0, N_TABLES - count)
                loaded.update(range(dst, dst + count))
                out.append(Loadt(kind=TableKind.PWL, dst=dst, count=count, base=3,
                                 offset=PWL_AT + t * pwl_table_bytes(cfg.pwl_segments)))
        elif kind in (4, 5):
            m, k, n = r(1, 3), r(1, 2), r(1, 2)
            t = r(0, 1)
            blk = C if t else R
            out.append(Gemm(mode=GemmMode(r(0, 3)), transpose=bool(t), w=r(0, S - n * k * blk),
                            a=r(0, S - k * m), acc=r(0, A - n * m), m=m, k_tiles=k, n_tiles=n,
                            bias=r(0, E - n * C)))
        elif kind == 6 and loaded:
            m, n = r(1, 3), r(1, 2)
            dest, mode = EpiDest(r(0, 2)), ScaleMode(r(0, 1))
            src = r(0, A - n * m)
            if dest == EpiDest.SPAD:
                dst = r(0, S - n * m)
            elif dest == EpiDest.ACC:
                dst = src if r(0, 1) else r(0, A - n * m)
                if dst != src and abs(dst - src) < n * m:
                    dst = src
            else:
                dst = r(0, E - n * m)
            span = n * C if mode == ScaleMode.COL else m
            scale = r(0, E - span)
            if dest == EpiDest.SCALE:  # destination entries may not overlap the scales read
                free = [d for d in range(E - n * m + 1) if d + n * m <= scale or d >= scale + span]
                if free:
                    dst = int(rng.choice(free))
                else:
                    dest, dst = EpiDest.SPAD, r(0, S - n * m)
            out.append(Epi(src=src, dst=dst, dest=dest, scale_mode=mode, scale=scale,
                           fn=int(rng.choice(sorted(loaded))), m=m, n_tiles=n, col=r(0, C - 1),
                           out_shift=r(0, 20)))
        elif kind == 7:
            mem = MemSpace(r(0, 1))
            esize = 1 if mem == MemSpace.SPAD else 4
            rows_, tiles = r(1, 3), r(1, 2)
            elems = r(1, L if mem == MemSpace.SPAD else C)
            nrows = S if mem == MemSpace.SPAD else A
            out.append(Store(mem=mem, src=r(0, nrows - rows_ * tiles), rows=rows_, tiles=tiles,
                             base=r(0, 3), offset=r(0, 600),
                             stride=tiles * elems * esize + r(0, 8), length=elems))
        elif kind == 8:
            out.append(Sync(target=SyncTarget(r(1, 3))))
    return Program([*out, Halt()])


@pytest.mark.parametrize("cfg", CONFIGS, ids=["3x5", "4x4"])
@pytest.mark.parametrize("seed", range(16))
def test_random_program_matches_reference(cfg, seed):
    rng = np.random.default_rng(seed)
    img = make_image(rng, cfg)
    prog = random_program(rng, cfg)
    model = GoldenModel(cfg, check_hazards=False)
    res = model.run(prog, img)
    assert res.ok, res.status
    ref = ReferenceMachine(cfg)
    mem = ref.run(prog, img.data)
    np.testing.assert_array_equal(res.dram.data, mem)
    np.testing.assert_array_equal(model.spad, np.array(ref.spad))
    np.testing.assert_array_equal(model.acc, np.array(ref.acc))
    np.testing.assert_array_equal(model.mult, np.array(ref.mult))
    np.testing.assert_array_equal(model.shift, np.array(ref.shift))
    np.testing.assert_array_equal(model.bias, np.array(ref.bias))


def _fence():
    return [Sync(target=SyncTarget.LOAD, push_next=True),
            Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
            Sync(target=SyncTarget.STORE, pop_prev=True, push_prev=True),
            Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True),
            Sync(target=SyncTarget.LOAD, pop_next=True)]


@pytest.mark.parametrize("seed", range(6))
def test_fenced_random_program_is_hazard_free_and_unchanged(seed):
    cfg = CONFIGS[1]
    rng = np.random.default_rng(100 + seed)
    img = make_image(rng, cfg)
    prog = random_program(rng, cfg)
    fenced = Program([x for ins in prog.instructions[:-1] for x in (ins, *_fence())] + [Halt()])
    plain = GoldenModel(cfg, check_hazards=False).run(prog, img)
    checked = GoldenModel(cfg).run(fenced, img)
    assert checked.ok, checked.status
    np.testing.assert_array_equal(plain.dram.data, checked.dram.data)


def _garbage(ref: ReferenceMachine, rng) -> None:
    """Fill the reference's on-chip memories with random values (undefined after reset)."""
    cfg = ref.cfg
    r = lambda lo, hi, n: [int(v) for v in rng.integers(lo, hi, n)]  # noqa: E731
    ref.spad = [r(-128, 128, cfg.lanes) for _ in range(cfg.scratchpad_rows)]
    ref.acc = [r(-(1 << 31), 1 << 31, cfg.cols) for _ in range(cfg.accumulator_rows)]
    ref.bias = r(-(1 << 31), 1 << 31, cfg.bias_entries)
    ref.mult = r(-(1 << 15), 1 << 15, cfg.bias_entries)
    ref.shift = r(0, 48, cfg.bias_entries)


def test_status_ok_never_depends_on_undefined_memory():
    """UNINIT_READ is sound: whenever the golden model (which starts from zeros) reports OK, a
    machine whose on-chip memories start with random garbage stores exactly the same DRAM."""
    cfg = CONFIGS[0]
    outcomes = {"OK": 0, "UNINIT_READ": 0}
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        img = make_image(rng, cfg)
        prog = random_program(rng, cfg, length=12)
        n_pre = len(preamble(cfg))
        keep = [ins for i, ins in enumerate(prog.instructions)
                if i >= n_pre or i % 2 == 0 or rng.random() < 0.5]  # drop some initialisation
        prog = Program(keep)
        res = GoldenModel(cfg, check_hazards=False).run(prog, img)
        assert res.status.code.name in outcomes, res.status
        outcomes[res.status.code.name] += 1
        if res.ok:
            ref = ReferenceMachine(cfg)
            _garbage(ref, rng)
            np.testing.assert_array_equal(res.dram.data, ref.run(prog, img.data))
    assert min(outcomes.values()) >= 5, outcomes  # both outcomes are exercised
