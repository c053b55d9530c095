"""A slow, independent, element-by-element interpreter of docs/isa.md (valid programs only).

Written from the document, loop by loop, to cross-check the vectorised golden model on random
programs. It ignores dependency tokens (program order is the semantics) and does not check
errors: tests feed it programs the golden model accepts.

Also the golden tests' shared inputs: :func:`epilogue` (one value through the output stage) and
:func:`random_pwl_table`.
"""

from __future__ import annotations

import numpy as np

from hw.isa import (
    BIAS_ENTRY_BYTES,
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
    TableKind,
    pwl_table_bytes,
)
from hw.numeric import PwlTable


def _rs(v: int, s: int) -> int:
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def _sat(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def _wrap32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def epilogue(v: int, mult: int, shift: int, table, bits: int) -> int:
    """One accumulator value through requantisation and the PWL table ``(bp, k, b, shift)``."""
    bp, k, b, sh = table
    x = _sat(_rs(v * mult, shift), 32)
    seg = sum(1 for t in bp if t <= x)
    return _sat(_rs(k[seg] * x + b[seg], sh), bits)


def random_pwl_table(rng: np.random.Generator, segments: int) -> PwlTable:
    """A random valid PWL table of ``segments`` segments.

    Breakpoints (sorted, repeats allowed) lie in -3000..2999 so that requantised test values
    cross several segments; slopes span int16; intercepts are random int32 values shifted right
    by 0..23 bits, so both small and full-range intercepts occur; the output shift is 0..19.
    """
    bp = np.sort(rng.integers(-3000, 3000, segments - 1))
    slopes = rng.integers(-(1 << 15), 1 << 15, segments)
    intercepts = rng.integers(-(1 << 31), 1 << 31, segments) >> rng.integers(0, 24, segments)
    return PwlTable(tuple(int(v) for v in bp), tuple(int(v) for v in slopes),
                    tuple(int(v) for v in intercepts), int(rng.integers(0, 20)))


def _int(mem: np.ndarray, addr: int, n: int, signed: bool = True) -> int:
    return int.from_bytes(bytes(mem[addr : addr + n]), "little", signed=signed)


class ReferenceMachine:
    """State and semantics, one element at a time."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.spad = [[0] * cfg.lanes for _ in range(cfg.scratchpad_rows)]
        self.acc = [[0] * cfg.cols for _ in range(cfg.accumulator_rows)]
        self.bias = [0] * cfg.bias_entries
        self.mult = [0] * cfg.bias_entries
        self.shift = [0] * cfg.bias_entries
        self.tables = [None] * cfg.pwl_functions  # (bp, k, b, shift)
        self.bases = [0] * 4
        self.geom = [dict(height=0, width=0, pitch=0, pix=1, sy=0, sx=0) for _ in range(4)]

    def run(self, program: Program, dram: np.ndarray) -> np.ndarray:
        mem = dram.copy()
        for ins in program.instructions:
            if isinstance(ins, Halt):
                break
            self.step(ins, mem)
        return mem

    def epilogue(self, v, mult, shift, fn, bits):
        return epilogue(v, mult, shift, self.tables[fn], bits)

    def step(self, ins, mem):  # noqa: C901 - one branch per opcode, as in the document
        cfg = self.cfg
        if isinstance(ins, Setbase):
            self.bases[ins.reg] = ins.value
        elif isinstance(ins, Dmacfg):
            self.geom[ins.slot] = dict(height=ins.height, width=ins.width, pitch=ins.pitch,
                                       pix=ins.pix, sy=ins.sy, sx=ins.sx)
        elif isinstance(ins, Sync):
            pass
        elif isinstance(ins, Load):
            g = self.geom[ins.geom]
            e = 1 if ins.mem == MemSpace.SPAD else 4
            rows = self.spad if ins.mem == MemSpace.SPAD else self.acc
            base = self.bases[ins.base] + ins.offset
            for i in range(ins.outer):
                for j in range(ins.inner):
                    y, x = ins.y0 + i * g["sy"], ins.x0 + j * g["sx"]
                    row = rows[ins.dst + i * ins.inner + j]
                    for c in range(len(row)):
                        row[c] = 0
                    for b in range(ins.length):
                        px = x + (b * e) // g["pix"]
                        if 0 <= y < g["height"] and 0 <= px < g["width"]:
                            row[b] = _int(mem, base + y * g["pitch"] + x * g["pix"] + b * e, e)
        elif isinstance(ins, Loadt):
            addr = self.bases[ins.base] + ins.offset
            if ins.kind == TableKind.BIAS:
                for n in range(ins.count):
                    a = addr + n * BIAS_ENTRY_BYTES
                    self.bias[ins.dst + n] = _int(mem, a, 4)
                    self.mult[ins.dst + n] = _int(mem, a + 4, 2)
                    self.shift[ins.dst + n] = _int(mem, a + 6, 1, signed=False)
            else:
                s = cfg.pwl_segments
                for n in range(ins.count):
                    a = addr + n * pwl_table_bytes(s)
                    sh = int(mem[a])
                    a += 16
                    bp = [_int(mem, a + 4 * i, 4) for i in range(s - 1)]
                    a += 4 * (s - 1)
                    k = [_int(mem, a + 2 * i, 2) for i in range(s)]
                    a += 2 * s
                    b = [_int(mem, a + 4 * i, 4) for i in range(s)]
                    self.tables[ins.dst + n] = (bp, k, b, sh)
        elif isinstance(ins, Gemm):
            R, C = cfg.rows, cfg.cols
            out = {}
            for u in range(ins.n_tiles):
                for i in range(ins.m):
                    for c in range(C):
                        total = 0
                        for t in range(ins.k_tiles):
                            q = u * ins.k_tiles + t
                            for r in range(R):
                                if ins.transpose:
                                    w = self.spad[ins.w + q * C + c][r]
                                else:
                                    w = self.spad[ins.w + q * R + r][c]
                                total += self.spad[ins.a + t * ins.m + i][r] * w
                        row = ins.acc + u * ins.m + i
                        if ins.mode in (GemmMode.ACCUMULATE, GemmMode.ACCUMULATE_BIAS):
                            total += self.acc[row][c]
                        if ins.mode in (GemmMode.BIAS, GemmMode.ACCUMULATE_BIAS):
                            total += self.bias[ins.bias + u * C + c]
                        out[row, c] = _wrap32(total)
            for (row, c), v in out.items():
                self.acc[row][c] = v
        elif isinstance(ins, Epi):
            C = cfg.cols
            bits = {EpiDest.SPAD: 8, EpiDest.ACC: 32, EpiDest.SCALE: 16}[ins.dest]
            results = {}
            for u in range(ins.n_tiles):
                for i in range(ins.m):
                    for c in range(C):
                        e = ins.scale + (u * C + c if ins.scale_mode == ScaleMode.COL else i)
                        v = self.acc[ins.src + u * ins.m + i][c]
                        results[u * ins.m + i, c] = self.epilogue(
                            v, self.mult[e], self.shift[e], ins.fn, bits)
            for (r, c), y in results.items():
                if ins.dest == EpiDest.SPAD:
                    self.spad[ins.dst + r][c] = y
                elif ins.dest == EpiDest.ACC:
                    self.acc[ins.dst + r][c] = y
                elif c == ins.col:
                    self.mult[ins.dst + r] = y
                    self.shift[ins.dst + r] = ins.out_shift
        elif isinstance(ins, Store):
            e = 1 if ins.mem == MemSpace.SPAD else 4
            rows = self.spad if ins.mem == MemSpace.SPAD else self.acc
            base = self.bases[ins.base] + ins.offset
            for u in range(ins.tiles):
                for i in range(ins.rows):
                    row = rows[ins.src + u * ins.rows + i]
                    for b in range(ins.length):
                        a = base + i * ins.stride + (u * ins.length + b) * e
                        mem[a : a + e] = np.frombuffer(
                            int(row[b]).to_bytes(e, "little", signed=True), dtype=np.uint8)
        else:
            raise AssertionError(f"unknown instruction {ins!r}")
