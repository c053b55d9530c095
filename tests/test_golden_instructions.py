"""Directed tests: each instruction of the golden model against plain NumPy / Python integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import numeric
from hw.config import preset
from hw.isa import (
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Halt,
    IsaError,
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
)
from sim.dram_image import DramImage
from sim.golden import GoldenModel, StatusCode
from tests.golden_reference import epilogue as reference_epilogue
from tests.golden_reference import random_pwl_table

CFG = preset("tiny")  # 4x4 array, 1024 x 4 scratchpad, 256 x 4 accumulator
R, C, L = CFG.rows, CFG.cols, CFG.lanes


def fence():
    """SYNCs that order everything before them before everything after them, on every unit."""
    return [
        Sync(target=SyncTarget.LOAD, push_next=True),
        Sync(target=SyncTarget.COMPUTE, pop_prev=True, push_next=True),
        Sync(target=SyncTarget.STORE, pop_prev=True, push_prev=True),
        Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True),
        Sync(target=SyncTarget.LOAD, pop_next=True),
    ]


def run(instrs, image, cfg=CFG):
    model = GoldenModel(cfg)
    res = model.run(Program([*instrs, Halt()]), image)
    return model, res


def rand_image(rng, size=1 << 14):
    img = DramImage.zeros(size)
    img.data[:] = rng.integers(0, 256, size, dtype=np.uint8)
    return img


def ref_load(mem, g, ins, base, esize, width):
    """Element-by-element reference of LOAD's padded 2-D walk."""
    rows = []
    for i in range(ins.outer):
        for j in range(ins.inner):
            y, x = ins.y0 + i * g["sy"], ins.x0 + j * g["sx"]
            row = []
            for e in range(ins.length):
                ob = e * esize
                px = x + ob // g["pix"]
                if 0 <= y < g["height"] and 0 <= px < g["width"]:
                    a = base + ins.offset + y * g["pitch"] + x * g["pix"] + ob
                    row.append(int.from_bytes(bytes(mem[a : a + esize]), "little", signed=True))
                else:
                    row.append(0)
            rows.append(row + [0] * (width - ins.length))
    return np.array(rows)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mem", [MemSpace.SPAD, MemSpace.ACC])
def test_load_padded_strided(seed, mem):
    rng = np.random.default_rng(seed)
    img = rand_image(rng)
    esize, width = (1, L) if mem == MemSpace.SPAD else (4, C)
    g = dict(height=int(rng.integers(1, 6)), width=int(rng.integers(1, 6)),
             pitch=int(rng.integers(0, 200)), pix=int(rng.integers(1, 9)),
             sy=int(rng.integers(0, 3)), sx=int(rng.integers(0, 3)))
    ins = Load(mem=mem, geom=2, base=1, offset=int(rng.integers(0, 100)), dst=5,
               outer=int(rng.integers(1, 5)), inner=int(rng.integers(1, 5)),
               y0=int(rng.integers(-2, 3)), x0=int(rng.integers(-2, 3)),
               length=int(rng.integers(1, width + 1)))
    model, res = run([Setbase(reg=1, value=1000), Dmacfg(slot=2, **g), ins], img)
    assert res.ok, res.status
    target = model.spad if mem == MemSpace.SPAD else model.acc
    got = target[5 : 5 + ins.outer * ins.inner]
    np.testing.assert_array_equal(got, ref_load(img.data, g, ins, 1000, esize, width))


def test_conv2d_via_padded_strided_loads():
    """3x3 conv, stride 2, padding 1, NHWC, done as one accumulating GEMM over im2col loads."""
    rng = np.random.default_rng(1)
    H = W = 5
    cin, cout, k, s, p = 4, 4, 3, 2, 1
    x = rng.integers(-128, 128, (H, W, cin), dtype=np.int8)
    wt = rng.integers(-128, 128, (k, k, cin, cout), dtype=np.int8)
    oh = ow = (H + 2 * p - k) // s + 1
    img = DramImage.zeros(4096)
    img.add("x", 0, x)
    img.add("w", 1024, wt)  # rows (ky, kx, ci), cols co: exactly the weight blocks, R = cin
    img.reserve("y", 2048, oh * ow * cout * 4)
    m = oh * ow
    prog = [Dmacfg(slot=0, height=H, width=W, pitch=W * cin, pix=cin, sy=s, sx=s)]
    for t, (ky, kx) in enumerate((a, b) for a in range(k) for b in range(k)):
        prog.append(Load(geom=0, dst=t * m, outer=oh, inner=ow, y0=ky - p, x0=kx - p,
                         length=cin))
    prog += [
        Dmacfg(slot=1, height=1, width=k * k * cin, pitch=0, pix=cout, sy=0, sx=1),
        Load(geom=1, offset=1024, dst=200, outer=1, inner=k * k * cin, length=cout,
             push_next=True),
        Gemm(mode=GemmMode.OVERWRITE, w=200, a=0, acc=0, m=m, k_tiles=k * k, n_tiles=1,
             pop_prev=True, push_next=True),
        Store(mem=MemSpace.ACC, src=0, rows=m, offset=2048, stride=cout * 4, length=cout,
              pop_prev=True),
    ]
    _, res = run(prog, img)
    assert res.ok, res.status
    xp = np.pad(x.astype(np.int64), ((p, p), (p, p), (0, 0)))
    ref = np.zeros((oh, ow, cout), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            patch = xp[oy * s : oy * s + k, ox * s : ox * s + k]
            ref[oy, ox] = np.einsum("abc,abcd->d", patch, wt.astype(np.int64))
    np.testing.assert_array_equal(res.dram.read("y", "<i4", (oh, ow, cout)), ref)


def test_conv2d_kernel_rows_span_pixels():
    """cin = 1, 3x3, stride 1, pad 1: one LOAD per kernel row reads kw pixels as one row
    (length = kw * cin > pix), padded per pixel at the image edges."""
    rng = np.random.default_rng(2)
    H, W, k, p, cout = 4, 5, 3, 1, C
    x = rng.integers(-128, 128, (H, W), dtype=np.int8)
    wt = rng.integers(-128, 128, (k, k, cout), dtype=np.int8)
    blocks = np.zeros((k, R, cout), dtype=np.int8)  # chunk ky: rows kx (R >= kw), rest zero
    blocks[:, :k] = wt
    img = DramImage.zeros(4096)
    img.add("x", 0, x)
    img.add("w", 1024, blocks)
    img.reserve("y", 2048, H * W * cout * 4)
    m = H * W
    prog = [Dmacfg(slot=0, height=H, width=W, pitch=W, pix=1, sy=1, sx=1)]
    for ky in range(k):
        prog.append(Load(geom=0, dst=ky * m, outer=H, inner=W, y0=ky - p, x0=-p, length=k))
    prog += [
        Dmacfg(slot=1, height=1, width=k * R, pitch=0, pix=cout, sy=0, sx=1),
        Load(geom=1, offset=1024, dst=200, inner=k * R, length=cout, push_next=True),
        Gemm(w=200, a=0, acc=0, m=m, k_tiles=k, pop_prev=True, push_next=True),
        Store(mem=MemSpace.ACC, src=0, rows=m, offset=2048, stride=cout * 4, length=cout,
              pop_prev=True),
    ]
    _, res = run(prog, img)
    assert res.ok, res.status
    xp = np.pad(x.astype(np.int64), p)
    ref = np.einsum("yxab,abc->yxc",
                    np.lib.stride_tricks.sliding_window_view(xp, (k, k)), wt.astype(np.int64))
    np.testing.assert_array_equal(res.dram.read("y", "<i4", (H, W, cout)), ref)


def _spad_image(rng, rows):
    data = rng.integers(-128, 128, (rows, L), dtype=np.int8)
    img = DramImage.zeros(rows * L + 4096)
    img.add("spad", 0, data)
    return img, data


def _fill_spad(rows):
    return [Dmacfg(slot=0, height=1, width=rows, pitch=0, pix=L, sy=0, sx=1),
            Load(geom=0, dst=0, outer=1, inner=rows, length=L)]


@pytest.mark.parametrize("mode", list(GemmMode))
@pytest.mark.parametrize("transpose", [False, True])
def test_gemm_modes_tiles_transpose(mode, transpose):
    rng = np.random.default_rng(int(transpose) * 10 + mode.value)
    m, k, n = 3, 2, 3
    img, sp = _spad_image(rng, 64)
    bias = rng.integers(-(1 << 31), 1 << 31, n * C)
    img.add("bias", 64 * L, encode_bias_entries(bias, [0] * (n * C), [0] * (n * C)))
    acc0 = rng.integers(-(1 << 31), 1 << 31, (n * m, C), dtype=np.int64)
    img.add("acc0", 64 * L + 512, acc0.astype("<i4"))
    w, a, acc = 20, 1, 7
    prog = [*_fill_spad(64), Loadt(kind=TableKind.BIAS, dst=3, count=n * C, offset=64 * L),
            Dmacfg(slot=1, height=1, width=n * m, pitch=0, pix=4 * C, sy=0, sx=1),
            Load(mem=MemSpace.ACC, geom=1, offset=64 * L + 512, dst=acc, outer=1, inner=n * m,
                 length=C),
            *fence(),
            Gemm(mode=mode, transpose=transpose, w=w, a=a, acc=acc, m=m, k_tiles=k, n_tiles=n,
                 bias=3)]
    model, res = run(prog, img)
    assert res.ok, res.status
    sp64 = sp.astype(np.int64)
    for u in range(n):
        out = np.zeros((m, C), dtype=np.int64)
        for t in range(k):
            opnd = sp64[a + t * m : a + t * m + m, :R]
            if transpose:
                blk = sp64[w + (u * k + t) * C : w + (u * k + t + 1) * C, :R].T
            else:
                blk = sp64[w + (u * k + t) * R : w + (u * k + t + 1) * R, :C]
            out += opnd @ blk
        if mode in (GemmMode.ACCUMULATE, GemmMode.ACCUMULATE_BIAS):
            out += acc0[u * m : (u + 1) * m]
        if mode in (GemmMode.BIAS, GemmMode.ACCUMULATE_BIAS):
            out += bias[u * C : (u + 1) * C]
        wrapped = (out + (1 << 31)) % (1 << 32) - (1 << 31)
        np.testing.assert_array_equal(model.acc[acc + u * m : acc + (u + 1) * m], wrapped)


@pytest.mark.parametrize("dest", list(EpiDest))
@pytest.mark.parametrize("scale_mode", list(ScaleMode))
def test_epi(dest, scale_mode):
    rng = np.random.default_rng(dest.value * 2 + scale_mode.value)
    m, n = 3, 2
    acc0 = rng.integers(-(1 << 20), 1 << 20, (n * m, C))
    mult = rng.integers(-(1 << 15), 1 << 15, 16)
    shift = rng.integers(0, 24, 16)
    table = random_pwl_table(rng, 5)
    img = DramImage.zeros(8192)
    img.add("acc0", 0, acc0.astype("<i4"))
    img.add("bias", 1024, encode_bias_entries([0] * 16, mult, shift))
    img.add("pwl", 2048, encode_pwl_table(table, CFG.pwl_segments))
    src, dst, scale = 10, 40, 2
    prog = [Dmacfg(slot=0, height=1, width=n * m, pitch=0, pix=4 * C, sy=0, sx=1),
            Load(mem=MemSpace.ACC, dst=src, outer=1, inner=n * m, length=C),
            Loadt(kind=TableKind.BIAS, dst=0, count=16, offset=1024),
            Loadt(kind=TableKind.PWL, dst=5, count=1, offset=2048),
            *fence(),
            Epi(src=src, dst=dst, dest=dest, scale_mode=scale_mode, scale=scale, fn=5, m=m,
                n_tiles=n, col=2, out_shift=9)]
    model, res = run(prog, img)
    assert res.ok, res.status
    bits = {EpiDest.SPAD: 8, EpiDest.ACC: 32, EpiDest.SCALE: 16}[dest]
    ref = np.zeros((n * m, C), dtype=np.int64)
    ref_table = (table.breakpoints, table.slopes, table.intercepts, table.shift)
    for u in range(n):
        for i in range(m):
            for c in range(C):
                e = scale + (u * C + c if scale_mode == ScaleMode.COL else i)
                v = int(acc0[u * m + i, c])
                ref[u * m + i, c] = reference_epilogue(v, int(mult[e]), int(shift[e]), ref_table,
                                                       bits)
    if dest == EpiDest.SPAD:
        np.testing.assert_array_equal(model.spad[dst : dst + n * m, :C], ref)
    elif dest == EpiDest.ACC:
        np.testing.assert_array_equal(model.acc[dst : dst + n * m], ref)
    else:
        np.testing.assert_array_equal(model.mult[dst : dst + n * m], ref[:, 2])
        assert (model.shift[dst : dst + n * m] == 9).all()


def test_pwl_table_padding_is_exact():
    """A short table padded to pwl_segments computes the same function (incl. int32 max)."""
    rng = np.random.default_rng(3)
    table = random_pwl_table(rng, 7)
    x = np.concatenate([rng.integers(-5000, 5000, 1000), [-(1 << 31), (1 << 31) - 1]])
    model = GoldenModel(CFG)
    blob = np.frombuffer(encode_pwl_table(table, CFG.pwl_segments), dtype=np.uint8)
    model._set_table(0, blob, CFG.pwl_segments)
    padded = model.tables[0]
    assert padded.segments == CFG.pwl_segments
    np.testing.assert_array_equal(numeric.pwl_apply(x, padded, 32),
                                  numeric.pwl_apply(x, table, 32))


@pytest.mark.parametrize("mem", [MemSpace.SPAD, MemSpace.ACC])
def test_store_tiles(mem):
    rng = np.random.default_rng(4)
    img, sp = _spad_image(rng, 32)
    rows, tiles, length = 3, 2, 3
    esize = 1 if mem == MemSpace.SPAD else 4
    stride = 40
    prog = [*_fill_spad(32),
            *fence(),
            Gemm(mode=GemmMode.OVERWRITE, w=0, a=0, acc=0, m=8, k_tiles=1, n_tiles=1),
            *fence(),
            Setbase(reg=3, value=32 * L),
            Store(mem=mem, src=2, rows=rows, tiles=tiles, base=3, offset=100, stride=stride,
                  length=length)]
    model, res = run(prog, img)
    assert res.ok, res.status
    src = model.spad if mem == MemSpace.SPAD else model.acc
    for u in range(tiles):
        for i in range(rows):
            a = 32 * L + 100 + i * stride + u * length * esize
            got = res.dram.data[a : a + length * esize].view("<i1" if esize == 1 else "<i4")
            np.testing.assert_array_equal(got, src[2 + u * rows + i, :length])


@pytest.mark.parametrize(
    ("instrs", "code"),
    [
        ([Load(dst=CFG.scratchpad_rows - 1, outer=2)], StatusCode.SPAD_RANGE),
        ([Load(mem=MemSpace.ACC, length=C + 1)], StatusCode.FIELD_RANGE),
        ([Gemm(acc=CFG.accumulator_rows - 1, m=2)], StatusCode.ACC_RANGE),
        ([Gemm(mode=GemmMode.BIAS, bias=CFG.bias_entries - 1)], StatusCode.TABLE_RANGE),
        ([Gemm(mode=GemmMode.ACCUMULATE_BIAS, bias=CFG.bias_entries - 1)],
         StatusCode.TABLE_RANGE),
        # several broken rules: the first in docs/isa.md's check order is reported
        ([Gemm(w=CFG.scratchpad_rows, acc=CFG.accumulator_rows)], StatusCode.SPAD_RANGE),
        ([Store(src=CFG.scratchpad_rows, length=L + 1)], StatusCode.FIELD_RANGE),
        ([Store(rows=2, stride=1, length=2, offset=(1 << 14) - 1)], StatusCode.DRAM_RANGE),
        ([Dmacfg(height=1, width=1, pix=1), Load(offset=1 << 20)], StatusCode.DRAM_RANGE),
        ([Store(offset=(1 << 14) - 1, length=2)], StatusCode.DRAM_RANGE),
        ([Store(rows=2, stride=1, length=2)], StatusCode.FIELD_RANGE),
        ([Epi(fn=3)], StatusCode.FN_UNLOADED),
        ([Epi(fn=CFG.pwl_functions)], StatusCode.TABLE_RANGE),
        ([Loadt(kind=TableKind.BIAS, offset=0, count=1)], StatusCode.BAD_TABLE),
        ([Gemm(pop_prev=True)], StatusCode.TOKEN_UNDERFLOW),
        ([Load(push_next=True)] * (CFG.instr_fifo_depth + 1), StatusCode.TOKEN_OVERFLOW),
        ([Setbase(value=1 << 40)], StatusCode.FIELD_RANGE),
    ],
)
def test_error_status(instrs, code):
    img = DramImage.zeros(1 << 14)
    img.data[:] = 0xFF  # makes the bias entry at 0 carry shift 255 and reserved 255
    _, res = run(instrs, img)
    assert res.status.code == code, res.status
    assert res.status.pc == len(instrs) - 1
    assert res.status.message


def test_illegal_word_and_missing_halt_are_status_codes():
    model = GoldenModel(CFG)
    res = model.run([Program([Halt()]).words()[0] & ~0xF | 0xC], DramImage.zeros(16))
    assert res.status.code == StatusCode.ILLEGAL_INSTRUCTION and "illegal opcode 12" in str(
        res.status)
    res = model.run(Program([Dmacfg()]), DramImage.zeros(16))
    assert res.status.code == StatusCode.NO_HALT and res.status.pc == 1


def test_bool_field_after_equal_int_is_rejected():
    # Gemm(m=True) == Gemm(m=1); the model must not reuse the first one's word for the second
    ok = Gemm(w=0, a=0, acc=0, m=1)
    bad = Gemm(w=0, a=0, acc=0, m=True)
    with pytest.raises(IsaError, match=r"word 1: field 'm': expected an integer, got True"):
        GoldenModel(CFG).run(Program([ok, bad, Halt()]), DramImage.zeros(16))


@pytest.mark.parametrize("scale_mode", list(ScaleMode))
@pytest.mark.parametrize("dst", [0, 3, 4, 8, 9])
def test_epi_scale_destination_may_not_overlap_the_scales_it_reads(scale_mode, dst):
    """ISA v3: dest SCALE entries disjoint from the scale entries read, else FIELD_RANGE."""
    rng = np.random.default_rng(dst)
    m, n, scale = 2, 1, 4
    img = DramImage.zeros(8192)
    img.add("acc0", 0, rng.integers(-99, 99, (n * m, C)).astype("<i4"))
    img.add("bias", 1024, encode_bias_entries([0] * 16, [1] * 16, [0] * 16))
    img.add("pwl", 2048, encode_pwl_table(random_pwl_table(rng, 3), CFG.pwl_segments))
    prog = [Dmacfg(slot=0, height=1, width=n * m, pitch=0, pix=4 * C, sy=0, sx=1),
            Load(mem=MemSpace.ACC, dst=0, outer=1, inner=n * m, length=C),
            Loadt(kind=TableKind.BIAS, dst=0, count=16, offset=1024),
            Loadt(kind=TableKind.PWL, dst=0, count=1, offset=2048),
            *fence(),
            Epi(src=0, dst=dst, dest=EpiDest.SCALE, scale_mode=scale_mode, scale=scale, fn=0,
                m=m, n_tiles=n)]
    _, res = run(prog, img)
    read = range(scale, scale + (n * C if scale_mode == ScaleMode.COL else m))
    overlap = any(d in read for d in range(dst, dst + n * m))
    if overlap:
        assert res.status.code == StatusCode.FIELD_RANGE and res.status.pc == len(prog) - 1
        assert "overlap the scale entries" in res.status.message
    else:
        assert res.ok, res.status


@settings(max_examples=300, deadline=None)
@given(rows=st.integers(1, 5), tiles=st.integers(1, 5), length=st.integers(1, L),
       stride=st.integers(0, 40), mem=st.sampled_from(list(MemSpace)))
def test_store_overlap_rule_is_exact(rows, tiles, length, stride, mem):
    """The closed-form overlap check equals a byte-by-byte search for overlapping rows."""
    e = 1 if mem == MemSpace.SPAD else 4
    rb = length * e
    starts = [i * stride + u * rb for u in range(tiles) for i in range(rows)]
    covered = [a + b for a in starts for b in range(rb)]
    overlapping = len(set(covered)) != len(covered)
    img = DramImage.zeros(1 << 12)
    prog = [Dmacfg(slot=0, height=1, width=rows * tiles, pitch=0, pix=e * C, sy=0, sx=1),
            Load(mem=mem, dst=0, outer=1, inner=rows * tiles, length=length),
            *fence(),
            Store(mem=mem, src=0, rows=rows, tiles=tiles, offset=1024, stride=stride,
                  length=length)]
    _, res = run(prog, img)
    if overlapping:
        assert res.status.code == StatusCode.FIELD_RANGE, res.status
    else:
        assert res.ok, res.status
