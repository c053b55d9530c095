"""Network building blocks expressed in the ISA: attention scores (Q Kᵀ), residual addition."""

from __future__ import annotations

import numpy as np

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
    TableKind,
    encode_bias_entries,
    encode_pwl_table,
)
from sim.dram_image import DramImage
from sim.golden import GoldenModel

CFG = preset("tiny")
R, C = CFG.rows, CFG.cols


def test_attention_scores_q_k_transposed():
    """S = Q Kᵀ with keys stored one per row (the transposed weight layout), no host transpose."""
    rng = np.random.default_rng(0)
    m, d, n = 5, 2 * R, 2 * C  # 5 queries, head dim 8 (2 chunks), 8 keys (2 column tiles)
    q = rng.integers(-128, 128, (m, d), dtype=np.int8)
    k = rng.integers(-128, 128, (n, d), dtype=np.int8)
    img = DramImage.zeros(2048)
    img.add("q", 0, q)
    img.add("k", 256, k)
    img.reserve("s", 1024, m * n * 4)
    kt, nt = d // R, n // C
    prog = [
        # Q as operand chunks: y walks the d/R chunks (R bytes apart), x the m query rows
        Dmacfg(slot=0, height=kt, width=m, pitch=R, pix=d, sy=1, sx=1),
        Load(geom=0, offset=0, dst=0, outer=kt, inner=m, length=R),
        # K as transposed weight blocks: block (u, t) is C key rows u*C.., bytes t*R..t*R+R-1
        Dmacfg(slot=1, height=kt, width=n, pitch=R, pix=d, sy=1, sx=1),
    ]
    for u in range(nt):
        prog.append(Load(geom=1, offset=256, dst=100 + u * kt * C, outer=kt, inner=C,
                         x0=u * C, length=R, push_next=u == nt - 1))
    prog += [
        Gemm(transpose=True, w=100, a=0, acc=0, m=m, k_tiles=kt, n_tiles=nt, pop_prev=True,
             push_next=True),
        Store(mem=MemSpace.ACC, src=0, rows=m, tiles=nt, offset=1024, stride=n * 4, length=C,
              pop_prev=True),
        Halt(),
    ]
    res = GoldenModel(CFG).run(Program(prog), img).raise_for_status()
    np.testing.assert_array_equal(res.dram.read("s", "<i4", (m, n)),
                                  q.astype(np.int64) @ k.astype(np.int64).T)


def test_residual_add_as_two_accumulating_identity_gemms():
    """int8(sx x + sy y) with two identity GEMMs (scaled identities carry the ratio sx/sy)."""
    rng = np.random.default_rng(1)
    m = 6
    x = rng.integers(-128, 128, (m, C), dtype=np.int8)
    y = rng.integers(-128, 128, (m, C), dtype=np.int8)
    # x has scale 3/64, y 1/64, the sum goes out at 1/32: sum = (3 x + y) / 2
    ident = np.concatenate([3 * np.eye(R, dtype=np.int8), np.eye(R, dtype=np.int8)])
    mult, shift = numeric.quantize_multiplier(0.5)
    img = DramImage.zeros(2048)
    img.add("x", 0, x)
    img.add("y", 64, y)
    img.add("ids", 128, ident)
    img.add("scales", 256, encode_bias_entries([0] * C, [mult] * C, [shift] * C))
    img.add("identity", 512, encode_pwl_table(numeric.PwlTable.identity(), CFG.pwl_segments))
    img.reserve("out", 1536, m * C)
    prog = Program([
        Dmacfg(slot=0, height=1, width=64, pitch=0, pix=C, sy=0, sx=1),
        Load(offset=0, dst=0, inner=m, length=C),
        Load(offset=64, dst=8, inner=m, length=C),
        Load(offset=128, dst=16, inner=2 * R, length=C),
        Loadt(kind=TableKind.BIAS, dst=0, count=C, offset=256),
        Loadt(kind=TableKind.PWL, dst=0, count=1, offset=512, push_next=True),
        Gemm(mode=GemmMode.OVERWRITE, w=16, a=0, acc=0, m=m, pop_prev=True),
        Gemm(mode=GemmMode.ACCUMULATE, w=16 + R, a=8, acc=0, m=m),
        Epi(src=0, dst=40, dest=EpiDest.SPAD, scale=0, fn=0, m=m, push_next=True),
        Store(src=40, rows=m, offset=1536, stride=C, length=C, pop_prev=True),
        Halt(),
    ])
    res = GoldenModel(CFG).run(prog, img).raise_for_status()
    acc = 3 * x.astype(np.int64) + y
    expect = numeric.epilogue(acc, mult, shift, numeric.PwlTable.identity(), 8)
    np.testing.assert_array_equal(res.dram.read("out", np.int8, (m, C)), expect)


def test_sixteen_bit_operand_as_two_gemms():
    """x = 256 hi + lo: GEMM hi W, EPI in place x256 (int32), GEMM lo W accumulated."""
    rng = np.random.default_rng(2)
    m = 5
    x = rng.integers(-(1 << 15), (1 << 15) - 128, (m, R), dtype=np.int64)
    x[0, :2] = -(1 << 15), (1 << 15) - 129  # both ends of the split's range
    hi = (x + 128) >> 8  # round to nearest: lo = x - 256 hi in -128..127
    lo = x - 256 * hi
    assert hi.min() >= -128 and hi.max() <= 127 and lo.min() >= -128 and lo.max() <= 127
    w = rng.integers(-128, 128, (R, C), dtype=np.int8)
    img = DramImage.zeros(2048)
    img.add("hi", 0, hi.astype(np.int8))
    img.add("lo", 64, lo.astype(np.int8))
    img.add("w", 128, w)
    img.add("x256", 256, encode_bias_entries([0] * C, [256] * C, [0] * C))
    img.add("identity", 512, encode_pwl_table(numeric.PwlTable.identity(), CFG.pwl_segments))
    img.reserve("out", 1536, m * C * 4)
    prog = Program([
        Dmacfg(slot=0, height=1, width=64, pitch=0, pix=R, sy=0, sx=1),
        Load(offset=0, dst=0, inner=m, length=R),
        Load(offset=64, dst=8, inner=m, length=R),
        Load(offset=128, dst=16, inner=R, length=C),
        Loadt(kind=TableKind.BIAS, dst=0, count=C, offset=256),
        Loadt(kind=TableKind.PWL, dst=0, count=1, offset=512, push_next=True),
        Gemm(w=16, a=0, acc=0, m=m, pop_prev=True),
        Epi(src=0, dst=0, dest=EpiDest.ACC, scale=0, fn=0, m=m),
        Gemm(mode=GemmMode.ACCUMULATE, w=16, a=8, acc=0, m=m, push_next=True),
        Store(mem=MemSpace.ACC, src=0, rows=m, offset=1536, stride=C * 4, length=C,
              pop_prev=True),
        Halt(),
    ])
    res = GoldenModel(CFG).run(prog, img).raise_for_status()
    np.testing.assert_array_equal(res.dram.read("out", "<i4", (m, C)), x @ w.astype(np.int64))


def test_two_sixteen_bit_operands_as_three_gemms():
    """a·b with both operands 16-bit (compiler split "ab": q·kᵀ, Σ xc²): GEMM hi_a hi_b, EPI in
    place x256, GEMM hi_a lo_b and lo_a hi_b accumulated = (a·b - lo_a·lo_b) / 256, exactly."""
    from compiler.quant.wide import WIDE_MAX, WIDE_MIN, split_int16

    rng = np.random.default_rng(3)
    m = 5
    a = rng.integers(WIDE_MIN, WIDE_MAX + 1, (m, R), dtype=np.int64)
    b = rng.integers(WIDE_MIN, WIDE_MAX + 1, (R, C), dtype=np.int64)
    a[0], b[:, 0] = WIDE_MIN, WIDE_MIN  # the largest hi·hi products
    (ha, la), (hb, lb) = split_int16(a), split_int16(b)
    img = DramImage.zeros(2048)
    for name, off, v in (("ha", 0, ha), ("la", 64, la), ("hb", 128, hb), ("lb", 192, lb)):
        img.add(name, off, v.astype(np.int8))
    img.add("x256", 256, encode_bias_entries([0] * C, [256] * C, [0] * C))
    img.add("identity", 512, encode_pwl_table(numeric.PwlTable.identity(), CFG.pwl_segments))
    img.reserve("out", 1536, m * C * 4)
    prog = Program([
        Dmacfg(slot=0, height=1, width=64, pitch=0, pix=R, sy=0, sx=1),
        Load(offset=0, dst=0, inner=m, length=R),
        Load(offset=64, dst=8, inner=m, length=R),
        Load(offset=128, dst=16, inner=R, length=C),
        Load(offset=192, dst=24, inner=R, length=C),
        Loadt(kind=TableKind.BIAS, dst=0, count=C, offset=256),
        Loadt(kind=TableKind.PWL, dst=0, count=1, offset=512, push_next=True),
        Gemm(w=16, a=0, acc=0, m=m, pop_prev=True),
        Epi(src=0, dst=0, dest=EpiDest.ACC, scale=0, fn=0, m=m),
        Gemm(mode=GemmMode.ACCUMULATE, w=24, a=0, acc=0, m=m),
        Gemm(mode=GemmMode.ACCUMULATE, w=16, a=8, acc=0, m=m, push_next=True),
        Store(mem=MemSpace.ACC, src=0, rows=m, offset=1536, stride=C * 4, length=C,
              pop_prev=True),
        Halt(),
    ])
    res = GoldenModel(CFG).run(prog, img).raise_for_status()
    got = res.dram.read("out", "<i4", (m, C)).astype(np.int64)
    np.testing.assert_array_equal(got * 256, a @ b - la @ lb)
    assert np.abs(la @ lb).max() <= R * 128 * 128  # the dropped part: <= 64 steps per product
