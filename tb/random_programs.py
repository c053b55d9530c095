"""Random whole-machine programs for the differential tests of the RTL against ``sim.golden``.

:func:`make_case` turns ``(config, seed, index)`` into one :class:`ProgramCase`: the program's
words, the DRAM image, the host's registers (``PROG_ADDR``, ``PROG_LEN``, ``DRAM_LIMIT``), AXI
error responses to inject (:class:`AxiFault`) and what the RTL must end with: status code and
word offset, and the final DRAM image byte for byte. Every case is run on the golden model
first; a case is reproducible from its three numbers alone (its generator is seeded with
``f"{seed}:{index}"``), and :meth:`ProgramCase.replay` is the one command that reruns it on the
RTL.

**Valid programs** are built in rounds, each round a load phase (SETBASE, DMACFG, padded strided
LOADs into scratchpad and accumulator, LOADT of bias/scale entries and PWL tables, SYNC), a
compute phase (GEMMs in all four modes, transposed or not; EPIs to SPAD, ACC and SCALE with COL
and ROW scales; SYNC) and a store phase (row-strided STOREs of scratchpad and accumulator rows at
unaligned addresses), ordered by the four token queues. Between rounds the ordering is either the
strict relay ``STORE -s2c-> SYNC -c2l-> LOAD`` or a relaxed one that lets the next round's loads
overlap this round's stores; a relaxed program is kept only if the golden model finds it
race-free, else the strict one is used. Every valid program ends OK on the golden model.

**Invalid programs** mutate a valid one so that it fails with one of the status codes the RTL
reports (docs/isa.md: 1..7, 10, 11): an illegal word, rows beyond the scratchpad or accumulator,
entries beyond the tables, DRAM bytes beyond ``DRAM_LIMIT``, AXI SLVERR/DECERR on a read beat or
a write response (the failing instruction is the first in program order whose DRAM footprint,
as the golden model records it, meets the faulted bytes), fields out of range, malformed table
records, a missing HALT, an unloaded PWL function.

``python -m tb.random_programs --config tiny --seed 1 --index 7`` prints one case.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from hw.config import AcceleratorConfig, preset
from hw.isa import (
    ALLOWED_DEPS,
    WORD_BYTES,
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
    ScaleMode,
    Setbase,
    Store,
    Sync,
    SyncTarget,
    TableKind,
    Unit,
    decode,
    encode,
    encode_bias_entries,
    encode_pwl_table,
    pwl_table_bytes,
)
from hw.numeric import PwlTable
from sim.golden import GoldenModel, StatusCode

__all__ = [
    "RTL_CODES",
    "AxiFault",
    "ProgramCase",
    "coverage",
    "illegal_word",
    "make_case",
    "random_pwl",
]

#: Status codes the RTL reports itself (docs/isa.md, "Status register and errors").
RTL_CODES = (
    StatusCode.ILLEGAL_INSTRUCTION,
    StatusCode.SPAD_RANGE,
    StatusCode.ACC_RANGE,
    StatusCode.TABLE_RANGE,
    StatusCode.DRAM_RANGE,
    StatusCode.FIELD_RANGE,
    StatusCode.BAD_TABLE,
    StatusCode.NO_HALT,
    StatusCode.FN_UNLOADED,
)

#: AXI response codes.
SLVERR, DECERR = 2, 3


@dataclass(frozen=True)
class AxiFault:
    """DRAM bytes ``lo .. hi-1`` answer ``resp`` (SLVERR or DECERR) on reads or on writes."""

    lo: int
    hi: int
    write: bool
    resp: int

    def hits(self, address: int, length: int) -> bool:
        """Whether an access of ``length`` bytes at ``address`` touches the faulted bytes."""
        return address < self.hi and self.lo < address + length


@dataclass
class ProgramCase:
    """One program run: its inputs, and the golden model's verdict on them."""

    config_name: str
    seed: int
    index: int
    kind: str  # "valid", or the mutation that makes the program fail
    prog: list  # instructions (None for an illegal word), for coverage and messages
    words: list[int]
    image: bytes  # DRAM from address 0, as the host writes it
    dram_limit: int
    prog_addr: int
    prog_len: int
    faults: tuple[AxiFault, ...]
    expect: tuple[int, int]  # (status code, word offset)
    expect_dram: bytes  # DRAM[0 : len(image)] after the run
    unspecified: tuple[tuple[int, int], ...] = ()  # byte ranges not compared
    model: GoldenModel | None = None  # the golden model after the run (on-chip state), if OK
    features: frozenset[str] = field(default_factory=frozenset)

    def replay(self) -> str:
        """The command that reruns this one case on the RTL."""
        return (f"NMX_REPLAY={self.config_name}:{self.seed}:{self.index} .venv/bin/python -m "
                "pytest -p no:cacheprovider tb/test_accelerator.py -k replay_random_program")

    def describe(self) -> str:
        """A listing of the case: registers, faults, expectation and the program."""
        lines = [f"case {self.config_name}:{self.seed}:{self.index} ({self.kind}): "
                 f"PROG_ADDR {self.prog_addr:#x} PROG_LEN {self.prog_len} DRAM_LIMIT "
                 f"{self.dram_limit:#x}, image {len(self.image)} bytes, expect "
                 f"{StatusCode(self.expect[0]).name} at {self.expect[1]}"]
        lines += [f"  fault {f}" for f in self.faults]
        for i, w in enumerate(self.words):
            try:
                text = repr(decode(w))
            except IsaError:
                text = f"illegal word {w:#034x}"
            lines.append(f"  {i:4d}: {text}")
        return "\n".join(lines)


def illegal_word(rng: random.Random) -> int:
    """A random 128-bit word that ``hw.isa.decode`` rejects."""
    while True:
        w = rng.choice([0, rng.getrandbits(128), encode(Halt()) | 0x10,
                        encode(Sync(target=SyncTarget.LOAD)) | 0x10,
                        encode(Setbase()) | (1 << 127), (rng.getrandbits(124) << 4) | 0xF])
        try:
            decode(w)
        except IsaError:
            return w


def random_pwl(rng: random.Random, segments: int) -> PwlTable:
    """A random valid table of up to ``segments`` segments (sometimes with an empty one)."""
    n = rng.randint(1, segments)
    bp = sorted(rng.randint(-(2**31), 2**31 - 1) for _ in range(n - 1))
    if n > 2 and rng.random() < 0.5:
        bp[1] = bp[0]
    return PwlTable(
        tuple(bp),
        tuple(rng.randint(-(2**15), 2**15 - 1) for _ in range(n)),
        tuple(rng.randint(-(2**31), 2**31 - 1) for _ in range(n)),
        rng.randint(0, 47),
    )


# ---------------------------------------------------------------- DRAM footprints


class _FootprintModel(GoldenModel):
    """The golden model, also recording each instruction's DRAM byte ranges (read, write)."""

    def reset(self) -> None:
        super().reset()
        self.footprints: dict[int, list[tuple[np.ndarray, np.ndarray, bool]]] = defaultdict(list)
        self._hz = _Recorder(self._hz, self.footprints)


class _Recorder:
    def __init__(self, inner, footprints):
        self._inner, self._footprints, self._pc = inner, footprints, 0

    def begin(self, ins, pc) -> None:
        self._pc = pc
        self._inner.begin(ins, pc)

    def end(self, ins) -> None:
        self._inner.end(ins)

    def access(self, *args, **kwargs) -> None:
        self._inner.access(*args, **kwargs)

    def dram(self, starts, ends, *, write) -> None:
        self._footprints[self._pc].append((np.array(starts), np.array(ends), write))
        self._inner.dram(starts, ends, write=write)


def _touches(footprint, lo: int, hi: int, write: bool) -> bool:
    return any(w == write and bool(np.any((s < hi) & (lo < e))) for s, e, w in footprint)


# ---------------------------------------------------------------- valid programs


class _Builder:
    """Builds one valid program with its DRAM image, tracking what each instruction wrote."""

    def __init__(self, rng: random.Random, cfg: AcceleratorConfig):
        self.rng, self.cfg = rng, cfg
        self.R, self.C, self.lanes = cfg.rows, cfg.cols, cfg.lanes
        self.beat = cfg.dma_data_bits // 8
        r = rng
        # Windows of the on-chip memories, placed anywhere (across bank boundaries too).
        self.ns = min(cfg.scratchpad_rows, r.choice([48, 64, 96]))
        self.sp0 = r.choice([0, cfg.scratchpad_rows - self.ns,
                             r.randrange(cfg.scratchpad_rows - self.ns + 1),
                             max(0, cfg.scratchpad_rows // cfg.scratchpad_banks - self.ns // 2)])
        self.na = min(cfg.accumulator_rows, r.choice([32, 64]))
        self.ac0 = r.choice([0, cfg.accumulator_rows - self.na,
                             r.randrange(cfg.accumulator_rows - self.na + 1),
                             cfg.accumulator_rows // 2 - self.na // 2])
        self.ne = min(cfg.bias_entries, r.choice([32, 64, 4 * self.C + 8]))
        self.be0 = r.randrange(cfg.bias_entries - self.ne + 1)
        # DRAM: inputs [0, in_end), tables [tab, tab_end), outputs [out, size).
        self.in_end = r.choice([0x1000, 0x1800, 0x2000]) + r.randrange(0, 64)
        self.tab = self.in_end + r.randrange(0, 64)
        s = cfg.pwl_segments
        self.tab_at = self.tab  # tables are allocated one after the other, never overlapping
        self.tab_end = self.tab + 3 * (8 * self.ne + 16) + cfg.pwl_functions * (
            pwl_table_bytes(s) + 16)
        self.nowhere = -(-self.tab_end // self.beat) * self.beat  # a beat nothing touches
        self.out = self.nowhere + self.beat + r.randrange(0, 64)
        self.size = self.out + r.choice([0x1000, 0x2000]) + r.randrange(0, 64)
        self.image = bytearray(r.getrandbits(8) for _ in range(self.size))
        self.spad = np.zeros(cfg.scratchpad_rows, dtype=bool)
        self.acc = np.zeros(cfg.accumulator_rows, dtype=bool)
        self.bias_ok = np.zeros(cfg.bias_entries, dtype=bool)  # bias written
        self.scale_ok = np.zeros(cfg.bias_entries, dtype=bool)  # multiplier and shift written
        self.fns: set[int] = set()
        self.bases = [0, 0, 0, 0]
        self.geoms: dict[int, Dmacfg] = {}
        self.out_at = self.out
        self.prog: list = []
        self.features: set[str] = set()
        self.loadt_records: list[tuple[int, int, int, int]] = []  # (pc, kind, address, count)

    # ------------------------------------------------------------ helpers
    def _base_for(self, address: int) -> tuple[int, int]:
        """A base register (setting one if needed) and the offset that reach ``address``."""
        regs = [i for i, v in enumerate(self.bases) if v <= address and address - v < 2**32]
        if not regs or self.rng.random() < 0.1:
            reg = self.rng.randrange(4)
            value = self.rng.randint(max(0, address - 300), address)
            self.prog.append(Setbase(reg=reg, value=value))
            self.bases[reg] = value
            regs = [reg]
        reg = self.rng.choice(regs)
        return reg, address - self.bases[reg]

    def _table_space(self, n: int) -> int:
        address = self.tab_at + self.rng.randrange(0, 16)
        self.tab_at = address + n
        assert self.tab_at <= self.tab_end, "table region overflow"
        return address

    def _rows_run(self, written: np.ndarray, lo: int, hi: int, n: int) -> int | None:
        """A start row ``s`` in ``[lo, hi - n]`` with rows ``s .. s+n-1`` all written."""
        starts = [s for s in range(lo, hi - n + 1) if written[s:s + n].all()]
        return self.rng.choice(starts) if starts else None

    # ------------------------------------------------------------ load phase
    def geometry(self, slot: int) -> None:
        r = self.rng
        if r.random() < 0.15:  # a matrix: one pixel per row
            h, w = r.randint(1, 24), 1
            pix = r.randint(1, self.lanes + 5)
            pitch = r.choice([self.lanes, 4 * self.C, r.randint(1, 80)])
            sy, sx = r.choice([1, 1, 2, 3]), 0
        else:
            h, w = r.randint(0, 7), r.randint(0, 7)
            pix = r.choice([1, 2, 3, r.randint(1, self.lanes + 4), 4 * self.C])
            pitch = r.choice([w * pix, w * pix + r.randint(1, 9), r.randint(0, 64), 0])
            sy, sx = r.randint(0, 3), r.randint(0, 3)
        g = Dmacfg(slot=slot, height=h, width=w, pitch=pitch, pix=pix, sy=sy, sx=sx)
        self.prog.append(g)
        self.geoms[slot] = g

    def _walk(self, g: Dmacfg, outer, inner, y0, x0, length, e):
        """Relative DRAM byte extent (max) of the non-padded elements and the padding seen."""
        top = bottom = left = right = False
        hi = -1
        for i in range(outer):
            y = y0 + i * g.sy
            for j in range(inner):
                x = x0 + j * g.sx
                for b in range(length):
                    px = x + (b * e) // g.pix
                    inside = 0 <= y < g.height and 0 <= px < g.width
                    top |= y < 0
                    bottom |= y >= g.height
                    left |= px < 0
                    right |= px >= g.width
                    if inside:
                        hi = max(hi, y * g.pitch + x * g.pix + b * e + e)
        return hi, (top, bottom, left, right)

    def load(self, mem: MemSpace, dst_lo: int, dst_hi: int, *, bulk: bool = False) -> bool:
        """One LOAD into rows of ``[dst_lo, dst_hi)``; False if none fits."""
        r = self.rng
        e = 4 if mem == MemSpace.ACC else 1
        row = self.C if mem == MemSpace.ACC else self.lanes
        if bulk:
            slot = r.randrange(4)
            n = dst_hi - dst_lo
            pitch = row * e + r.choice([0, 0, r.randint(1, 7)])
            g = Dmacfg(slot=slot, height=n, width=1, pitch=pitch, pix=row * e, sy=1, sx=0)
            self.prog.append(g)
            self.geoms[slot] = g
            outer, inner, y0, x0, length = n, 1, 0, 0, row
        else:
            if not self.geoms or r.random() < 0.3:
                self.geometry(r.randrange(4))
            slot = r.choice(sorted(self.geoms))
            g = self.geoms[slot]
            outer, inner = r.randint(1, 5), r.randint(1, 4)
            if outer * inner > dst_hi - dst_lo:
                return False
            y0 = r.randint(-2, max(-1, g.height + 1))
            x0 = r.randint(-2, max(-1, g.width + 1))
            length = r.randint(1, row)
        hi, pads = self._walk(g, outer, inner, y0, x0, length, e)
        if hi > self.in_end - 1:
            return False
        lo_addr = 0
        if hi < 0:  # all padding: the address does not matter, keep it in range anyway
            hi = 0
        address = r.randint(lo_addr, self.in_end - hi)
        if r.random() < 0.2:
            address = max(0, address - address % self.beat)
        reg, offset = self._base_for(address)
        n = outer * inner
        dst = r.randint(dst_lo, dst_hi - n)
        self.prog.append(Load(mem=mem, geom=slot, base=reg, offset=offset, dst=dst, outer=outer,
                              inner=inner, y0=y0, x0=x0, length=length))
        written = self.acc if mem == MemSpace.ACC else self.spad
        written[dst:dst + n] = True
        self.features.add(f"LOAD {mem.name}")
        for name, seen in zip(("top", "bottom", "left", "right"), pads, strict=True):
            if seen:
                self.features.add(f"LOAD pad {name}")
        if address % self.beat:
            self.features.add("LOAD unaligned")
        if length * e > g.pix and g.width > 1:
            self.features.add("LOAD multi-pixel row")
        if g.sx > 1 or g.sy > 1:
            self.features.add("LOAD stride > 1")
        return True

    def loadt_bias(self) -> None:
        r = self.rng
        n = r.randint(1, self.ne) if r.random() < 0.5 else self.ne
        dst = self.be0 + r.randint(0, self.ne - n)
        blob = encode_bias_entries(
            [r.randint(-2**31, 2**31 - 1) if r.random() < 0.2 else r.randint(-2**20, 2**20)
             for _ in range(n)],
            [r.randint(-2**15, 2**15 - 1) for _ in range(n)],
            [r.choice([0, 47, r.randint(0, 30)]) for _ in range(n)])
        address = self._table_space(len(blob))
        self.image[address:address + len(blob)] = blob
        reg, offset = self._base_for(address)
        self.loadt_records.append((len(self.prog), TableKind.BIAS, address, n))
        self.prog.append(Loadt(kind=TableKind.BIAS, dst=dst, count=n, base=reg, offset=offset))
        self.bias_ok[dst:dst + n] = True
        self.scale_ok[dst:dst + n] = True
        self.features.add("LOADT BIAS")

    def loadt_pwl(self, fns: list[int]) -> None:
        r = self.rng
        s = self.cfg.pwl_segments
        dst, count = fns[0], len(fns)
        tables = b"".join(encode_pwl_table(random_pwl(r, s), s) for _ in range(count))
        address = self._table_space(len(tables))
        self.image[address:address + len(tables)] = tables
        reg, offset = self._base_for(address)
        self.loadt_records.append((len(self.prog), TableKind.PWL, address, count))
        self.prog.append(Loadt(kind=TableKind.PWL, dst=dst, count=count, base=reg, offset=offset))
        self.fns.update(fns)
        self.features.add("LOADT PWL")

    # ------------------------------------------------------------ compute phase
    def gemm(self) -> bool:
        r, R, C = self.rng, self.R, self.C
        transpose = r.random() < 0.3
        blk = C if transpose else R
        k, n = r.randint(1, 3), r.randint(1, 2)
        m = r.choice([1, 2, r.randint(1, 8), r.randint(1, 20)])
        w = self._rows_run(self.spad, self.sp0, self.sp0 + self.ns, n * k * blk)
        a = self._rows_run(self.spad, self.sp0, self.sp0 + self.ns, k * m)
        if w is None or a is None or n * m > self.na:
            return False
        acc = r.randint(self.ac0, self.ac0 + self.na - n * m)
        modes = [GemmMode.OVERWRITE, GemmMode.BIAS]
        if self.acc[acc:acc + n * m].all():
            modes += [GemmMode.ACCUMULATE, GemmMode.ACCUMULATE_BIAS] * 2
        mode = r.choice(modes)
        bias = 0
        if mode in (GemmMode.BIAS, GemmMode.ACCUMULATE_BIAS):
            b = self._rows_run(self.bias_ok, self.be0, self.be0 + self.ne, n * C)
            if b is None:
                return False
            bias = b
        self.prog.append(Gemm(mode=mode, transpose=transpose, w=w, a=a, acc=acc, m=m,
                              k_tiles=k, n_tiles=n, bias=bias))
        self.acc[acc:acc + n * m] = True
        self.features.add(f"GEMM {mode.name}")
        if transpose:
            self.features.add("GEMM transposed")
        if k > 1 and n > 1:
            self.features.add("GEMM k_tiles, n_tiles > 1")
        return True

    def epi(self) -> bool:
        r, C = self.rng, self.C
        fns = sorted(self.fns)
        if not fns:
            return False
        n = r.randint(1, 2)
        m = r.choice([1, r.randint(1, 6), r.randint(1, 16)])
        src = self._rows_run(self.acc, self.ac0, self.ac0 + self.na, n * m)
        if src is None:
            return False
        mode = r.choice(list(ScaleMode))
        scale_n = n * C if mode == ScaleMode.COL else m
        scale = self._rows_run(self.scale_ok, self.be0, self.be0 + self.ne, scale_n)
        if scale is None:
            return False
        dest = r.choice(list(EpiDest))
        col = r.randrange(C)
        out_shift = r.choice([0, 47, r.randint(0, 47)])
        if dest == EpiDest.SPAD:
            dst = r.randint(self.sp0, self.sp0 + self.ns - n * m)
            self.spad[dst:dst + n * m] = True
        elif dest == EpiDest.ACC:
            if r.random() < 0.5:
                dst = src
            else:
                dst = r.randint(self.ac0, self.ac0 + self.na - n * m)
                if dst != src and dst < src + n * m and src < dst + n * m:
                    dst = src
            self.acc[dst:dst + n * m] = True
        else:
            span = n * m
            choices = [e for e in range(self.be0, self.be0 + self.ne - span + 1)
                       if e + span <= scale or e >= scale + scale_n]
            if not choices:
                return False
            dst = r.choice(choices)
            self.scale_ok[dst:dst + span] = True
        self.prog.append(Epi(src=src, dst=dst, dest=dest, scale_mode=mode, scale=scale,
                             fn=r.choice(fns), m=m, n_tiles=n, col=col, out_shift=out_shift))
        self.features.add(f"EPI dest {dest.name}")
        self.features.add(f"EPI scale {mode.name}")
        return True

    # ------------------------------------------------------------ store phase
    def store(self) -> bool:
        r = self.rng
        if r.random() < 0.5 and self.acc.any():
            mem, e, row, written, lo, hi = (MemSpace.ACC, 4, self.C, self.acc, self.ac0,
                                            self.ac0 + self.na)
        else:
            mem, e, row, written, lo, hi = (MemSpace.SPAD, 1, self.lanes, self.spad, self.sp0,
                                            self.sp0 + self.ns)
        tiles = r.randint(1, 3)
        rows = r.choice([1, r.randint(1, 6), r.randint(1, 12)])
        src = self._rows_run(written, lo, hi, tiles * rows)
        if src is None:
            return False
        length = r.choice([row, r.randint(1, row)])
        gap = r.choice([0, 0, r.randint(1, 13)])
        stride = tiles * length * e + gap if rows > 1 else r.randint(0, 64)
        span = (rows - 1) * stride + tiles * length * e
        address = self.out_at + r.randint(0, 11)
        if address + span > self.size:
            if self.out + span > self.size:
                return False
            address = self.out + r.randint(0, min(11, self.size - span - self.out))
        reg, offset = self._base_for(address)
        self.prog.append(Store(mem=mem, src=src, rows=rows, tiles=tiles, base=reg,
                               offset=offset, stride=stride, length=length))
        self.out_at = address + span
        self.features.add(f"STORE {mem.name}")
        if address % self.beat:
            self.features.add("STORE unaligned")
        if rows > 1 and gap:
            self.features.add("STORE stride gap")
        return True


def _flag(prog: list, index: int, **flags) -> None:
    prog[index] = dataclasses.replace(prog[index], **flags)


def _build_valid(rng: random.Random, cfg: AcceleratorConfig, *, relaxed: bool,
                 all_fns: bool) -> _Builder:
    """A valid program (before the golden check) in 1..3 rounds; see the module docstring."""
    b = _Builder(rng, cfg)
    prog = b.prog
    rounds = rng.choice([1, 2, 2, 3])
    first_load_of_round: list[int] = []
    relay_pending = False  # the previous round's stores pushed s2c
    for rnd in range(rounds):
        last = rnd == rounds - 1
        # ---- load phase
        start = len(prog)
        if rnd == 0:
            b.load(MemSpace.SPAD, b.sp0, b.sp0 + b.ns, bulk=True)
            if rng.random() < 0.5:
                b.load(MemSpace.ACC, b.ac0, b.ac0 + b.na // 2, bulk=True)
            b.loadt_bias()
            nf = cfg.pwl_functions if all_fns else rng.randint(1, cfg.pwl_functions - 1)
            fns = sorted(rng.sample(range(cfg.pwl_functions), nf))
            # consecutive runs of functions, one LOADT each
            run = [fns[0]]
            for f in fns[1:] + [None]:
                if f is not None and f == run[-1] + 1 and rng.random() < 0.7:
                    run.append(f)
                else:
                    b.loadt_pwl(run)
                    if f is not None:
                        run = [f]
        for _ in range(rng.randint(0 if rnd == 0 else 1, 4)):
            mem = MemSpace.ACC if rng.random() < 0.25 else MemSpace.SPAD
            if mem == MemSpace.ACC:
                b.load(mem, b.ac0, b.ac0 + b.na)
            else:
                b.load(mem, b.sp0, b.sp0 + b.ns)
        if rnd > 0 and rng.random() < 0.3:
            b.loadt_bias()
        if rng.random() < 0.2:
            prog.append(Sync(target=SyncTarget.LOAD))
        if rng.random() < 0.2:
            b.geometry(rng.randrange(4))
        units = [i for i in range(start, len(prog)) if prog[i].unit == Unit.LOAD]
        if not units:
            prog.append(Sync(target=SyncTarget.LOAD))
            units = [len(prog) - 1]
        first_load_of_round.append(units[0])
        if rnd > 0:  # after the relay SYNC (strict) or the last compute instruction (relaxed)
            _flag(prog, units[0], pop_next=True)
        _flag(prog, units[-1], push_next=True)
        # ---- compute phase
        start = len(prog)
        for _ in range(rng.randint(2, 9)):
            if rng.random() < 0.45:
                b.epi() or b.gemm()
            elif rng.random() < 0.07:
                prog.append(Sync(target=SyncTarget.COMPUTE))
            else:
                b.gemm() or b.epi()
        units = [i for i in range(start, len(prog)) if prog[i].unit == Unit.COMPUTE]
        if not units:
            prog.append(Sync(target=SyncTarget.COMPUTE))
            units = [len(prog) - 1]
        _flag(prog, units[0], pop_prev=True, pop_next=relay_pending and relaxed)
        _flag(prog, units[-1], push_next=True, push_prev=relaxed and not last)
        # ---- store phase
        start = len(prog)
        for _ in range(rng.randint(1, 4)):
            b.store()
        if rng.random() < 0.2:
            prog.append(Sync(target=SyncTarget.STORE))
        units = [i for i in range(start, len(prog)) if prog[i].unit == Unit.STORE]
        if not units:
            prog.append(Sync(target=SyncTarget.STORE))
            units = [len(prog) - 1]
        _flag(prog, units[0], pop_prev=True)
        if not last or rng.random() < 0.3:  # a token left queued at HALT is dropped
            _flag(prog, units[-1], push_prev=True)
            relay_pending = True
            if not last and not relaxed:
                prog.append(Sync(target=SyncTarget.COMPUTE, pop_next=True, push_prev=True))
                relay_pending = False
    prog.append(Halt())
    b.features.update(_token_features(prog))
    return b


def _token_features(prog: list) -> set[str]:
    out = set()
    for ins in prog:
        if ins is None or ins.unit == Unit.DISPATCH:
            continue
        for flag in ALLOWED_DEPS[ins.unit]:
            if getattr(ins, flag):
                out.add(f"{ins.unit.name} {flag}")
        if isinstance(ins, Sync):
            out.add(f"SYNC {ins.target.name}")
    return out


# ---------------------------------------------------------------- invalid programs

_MUTATIONS = {
    StatusCode.ILLEGAL_INSTRUCTION: ["illegal word"],
    StatusCode.SPAD_RANGE: ["load spad rows", "gemm weights", "gemm operands", "epi spad rows",
                            "store spad rows"],
    StatusCode.ACC_RANGE: ["gemm acc rows", "epi src rows", "load acc rows", "store acc rows"],
    StatusCode.TABLE_RANGE: ["loadt entries", "gemm bias entries", "epi fn", "epi scale entries"],
    StatusCode.DRAM_RANGE: ["dram limit", "offset beyond", "axi read error", "axi write error",
                            "axi read error", "axi write error", "fetch error"],
    StatusCode.FIELD_RANGE: ["setbase value", "load length", "epi col", "epi out_shift",
                             "store stride", "epi partial overlap", "store length"],
    StatusCode.BAD_TABLE: ["bias shift", "bias reserved", "pwl shift", "pwl header",
                           "pwl order"],
    StatusCode.NO_HALT: ["prog_len short", "no halt"],
    StatusCode.FN_UNLOADED: ["epi fn unloaded"],
}


def _mutate(rng: random.Random, cfg: AcceleratorConfig, b: _Builder, what: str):
    """Apply mutation ``what`` to ``b.prog`` / ``b.image``; returns (faults, dram_limit,
    prog_len or None) or None when the program has nothing to mutate that way."""
    prog, image = b.prog, b.image
    faults: list[AxiFault] = []
    limit, prog_len = len(image), None

    def pick(cls, cond=lambda x: True):
        idx = [i for i, x in enumerate(prog) if isinstance(x, cls) and cond(x)]
        return rng.choice(idx) if idx else None

    def replace(i, **fields):
        prog[i] = dataclasses.replace(prog[i], **fields)

    sp_end, acc_end, ent_end = cfg.scratchpad_rows, cfg.accumulator_rows, cfg.bias_entries
    if what == "illegal word":
        prog.insert(rng.randrange(len(prog)), None)
    elif what == "load spad rows":
        i = pick(Load, lambda x: x.mem == MemSpace.SPAD)
        if i is None:
            return None
        n = prog[i].outer * prog[i].inner
        replace(i, dst=rng.choice([sp_end - rng.randint(0, n - 1), sp_end, 2**20 - 1]))
    elif what == "gemm weights" or what == "gemm operands":
        i = pick(Gemm)
        if i is None:
            return None
        key = "w" if what == "gemm weights" else "a"
        x = prog[i]
        rows = x.k_tiles * x.m if key == "a" else x.k_tiles * x.n_tiles * cfg.rows
        replace(i, **{key: sp_end - rng.randint(0, rows - 1)})
    elif what == "epi spad rows":
        i = pick(Epi, lambda x: x.dest == EpiDest.SPAD)
        if i is None:
            return None
        replace(i, dst=sp_end - rng.randint(0, prog[i].m * prog[i].n_tiles - 1))
    elif what == "store spad rows":
        i = pick(Store, lambda x: x.mem == MemSpace.SPAD)
        if i is None:
            return None
        replace(i, src=sp_end - rng.randint(0, prog[i].rows * prog[i].tiles - 1))
    elif what == "gemm acc rows":
        i = pick(Gemm)
        if i is None:
            return None
        replace(i, acc=acc_end - rng.randint(0, prog[i].m * prog[i].n_tiles - 1))
    elif what == "epi src rows":
        i = pick(Epi)
        if i is None:
            return None
        replace(i, src=acc_end - rng.randint(0, prog[i].m * prog[i].n_tiles - 1))
    elif what == "load acc rows":
        i = pick(Load, lambda x: x.mem == MemSpace.ACC)
        if i is None:
            return None
        n = prog[i].outer * prog[i].inner
        replace(i, dst=acc_end - rng.randint(0, n - 1))
    elif what == "store acc rows":
        i = pick(Store, lambda x: x.mem == MemSpace.ACC)
        if i is None:
            return None
        replace(i, src=acc_end - rng.randint(0, prog[i].rows * prog[i].tiles - 1))
    elif what == "loadt entries":
        i = pick(Loadt)
        if i is None:
            return None
        top = ent_end if prog[i].kind == TableKind.BIAS else cfg.pwl_functions
        replace(i, dst=top - rng.randint(0, prog[i].count - 1))
    elif what == "gemm bias entries":
        i = pick(Gemm, lambda x: x.mode in (GemmMode.BIAS, GemmMode.ACCUMULATE_BIAS))
        if i is None:
            return None
        replace(i, bias=ent_end - rng.randint(0, prog[i].n_tiles * cfg.cols - 1))
    elif what == "epi fn":
        i = pick(Epi)
        if i is None:
            return None
        replace(i, fn=rng.randint(cfg.pwl_functions, 63))
    elif what == "epi scale entries":
        i = pick(Epi)
        if i is None:
            return None
        x = prog[i]
        span = x.n_tiles * cfg.cols if x.scale_mode == ScaleMode.COL else x.m
        replace(i, scale=ent_end - rng.randint(0, span - 1))
    elif what == "dram limit":
        limit = rng.randint(b.in_end // 2, len(image) - 1)
    elif what == "offset beyond":
        i = pick((Load, Loadt, Store))
        if i is None:
            return None
        replace(i, offset=rng.choice([len(image) - b.bases[prog[i].base] - rng.randint(0, 8),
                                      2**32 - 1 - rng.randint(0, 64)]))
    elif what in ("axi read error", "axi write error"):
        write = what == "axi write error"
        fp = _FootprintModel(cfg)
        words = [illegal_word(rng) if x is None else encode(x) for x in prog]
        res = fp.run(words, bytes(image))
        hits = sorted((pc, s, e) for pc, lst in fp.footprints.items() for ss, es, w in lst
                      if w == write for s, e in zip(ss.tolist(), es.tolist(), strict=True))
        if not hits or not res.status.ok:
            return None
        pc, s, e = rng.choice(hits)
        x = rng.randrange(s, e)
        if write:
            lo, hi = x, x + rng.randint(1, 3)
        else:
            lo = x - x % b.beat
            hi = lo + b.beat
        faults.append(AxiFault(lo, hi, write, rng.choice([SLVERR, DECERR])))
    elif what == "fetch error":
        pass  # placed by make_case once the program address is known
    elif what == "setbase value":
        prog.insert(rng.randrange(len(prog)), Setbase(
            reg=rng.randrange(4), value=rng.randrange(1 << cfg.addr_bits, 1 << 64)))
    elif what == "load length":
        i = pick(Load)
        if i is None:
            return None
        row = cfg.cols if prog[i].mem == MemSpace.ACC else cfg.lanes
        replace(i, length=rng.randint(row + 1, 127))
    elif what == "store length":
        i = pick(Store)
        if i is None:
            return None
        row = cfg.cols if prog[i].mem == MemSpace.ACC else cfg.lanes
        replace(i, length=rng.randint(row + 1, 127))
    elif what == "epi col":
        i = pick(Epi, lambda x: x.dest == EpiDest.SCALE)
        if i is None:
            return None
        replace(i, col=rng.randint(cfg.cols, 63))
    elif what == "epi out_shift":
        i = pick(Epi, lambda x: x.dest == EpiDest.SCALE)
        if i is None:
            return None
        replace(i, out_shift=rng.randint(48, 63))
    elif what == "store stride":
        i = pick(Store, lambda x: x.rows > 1)
        if i is None:
            return None
        e = 4 if prog[i].mem == MemSpace.ACC else 1
        replace(i, stride=rng.randint(0, prog[i].tiles * prog[i].length * e - 1))
    elif what == "epi partial overlap":
        i = pick(Epi, lambda x: x.dest == EpiDest.ACC and x.m * x.n_tiles > 1)
        if i is None:
            return None
        sign = rng.choice([-1, 1])
        shift = rng.randint(1, prog[i].m * prog[i].n_tiles - 1)
        if prog[i].src - shift < 0:  # below row 0 the field cannot be encoded: overlap above
            sign = 1
        replace(i, dst=prog[i].src + sign * shift)
    elif what in ("bias shift", "bias reserved", "pwl shift", "pwl header", "pwl order"):
        kind = TableKind.BIAS if what.startswith("bias") else TableKind.PWL
        recs = [r for r in b.loadt_records if r[1] == kind]
        if not recs:
            return None
        _, _, address, count = rng.choice(recs)
        t = rng.randrange(count)
        if kind == TableKind.BIAS:
            o = address + 8 * t + (6 if what == "bias shift" else 7)
            image[o] = rng.randint(48, 255) if what == "bias shift" else rng.randint(1, 255)
        else:
            s = cfg.pwl_segments
            base = address + t * pwl_table_bytes(s)
            if what == "pwl shift":
                image[base] = rng.randint(48, 255)
            elif what == "pwl header":
                image[base + rng.randint(1, 15)] = rng.randint(1, 255)
            else:
                if s < 3:
                    return None
                j = rng.randrange(s - 2)
                o = base + 16 + 4 * j
                image[o:o + 8] = (5).to_bytes(4, "little", signed=True) + (4).to_bytes(
                    4, "little", signed=True)
    elif what == "prog_len short":
        prog_len = rng.randrange(0, len(prog))
    elif what == "no halt":
        prog.pop()  # the HALT
    elif what == "epi fn unloaded":
        unloaded = sorted(set(range(cfg.pwl_functions)) - b.fns)
        i = pick(Epi)
        if i is None or not unloaded:
            return None
        replace(i, fn=rng.choice(unloaded))
    else:
        raise ValueError(f"unknown mutation {what!r}")
    return faults, limit, prog_len


# ---------------------------------------------------------------- cases


def _expect(cfg, words, image: bytes, limit: int, prog_len: int, prog_addr: int,
            faults: tuple[AxiFault, ...]):
    """(status, final DRAM, unspecified ranges, golden model or None) with the faults applied."""
    fp = _FootprintModel(cfg)
    full = fp.run(list(words[:prog_len]), image[:limit])
    cut, cut_write = prog_len, None
    for f in faults:
        if not f.write:
            for o in range(prog_len):
                if f.hits(prog_addr + WORD_BYTES * o, WORD_BYTES) and o < cut:
                    cut, cut_write = o, None
        for pc, lst in fp.footprints.items():
            if pc < cut and _touches(lst, f.lo, f.hi, f.write):
                cut, cut_write = pc, (f if f.write else None)
    if cut == prog_len:
        model, result = fp, full
        status = (int(full.status.code), full.status.pc)
    else:
        model = GoldenModel(cfg)
        result = model.run(list(words[:cut]), image[:limit])
        st = result.status
        if st.code == StatusCode.NO_HALT and st.pc == cut:
            status = (int(StatusCode.DRAM_RANGE), cut)
        else:
            status = (int(st.code), st.pc)
    dram = bytearray(image)
    dram[:limit] = result.dram.data.tobytes()
    unspecified = []
    if cut_write is not None and status == (int(StatusCode.DRAM_RANGE), cut):
        # the failing STORE's destination bytes are unspecified (docs/isa.md)
        for ss, es, w in fp.footprints[cut]:
            if w:
                unspecified += list(zip(ss.tolist(), es.tolist(), strict=True))
    return status, bytes(dram), tuple(unspecified), (model if status[0] == 0 else None)


def make_case(config: AcceleratorConfig, config_name: str, seed: int, index: int,
              *, invalid_fraction: float = 0.4) -> ProgramCase:
    """Case ``index`` of seed ``seed``: a valid program, or (with ``invalid_fraction``) one
    mutated to fail with a status code the RTL reports; checked on the golden model."""
    rng = random.Random(f"{seed}:{index}")
    for _ in range(50):
        case = _try_case(rng, config, config_name, seed, index, invalid_fraction)
        if case is not None:
            return case
    raise AssertionError(f"no case found for {config_name}:{seed}:{index} in 50 tries")


def _try_case(rng, cfg, config_name, seed, index, invalid_fraction):
    invalid = rng.random() < invalid_fraction
    # DRAM_RANGE has the most ways to happen (limits and four kinds of AXI error): weight 3
    code = rng.choice(RTL_CODES + (StatusCode.DRAM_RANGE,) * 2) if invalid else StatusCode.OK
    what = rng.choice(_MUTATIONS[code]) if invalid else "valid"
    all_fns = what != "epi fn unloaded" and rng.random() < 0.5
    relaxed = rng.random() < 0.5
    state = rng.getstate()
    b = _build_valid(rng, cfg, relaxed=relaxed, all_fns=all_fns)
    words = [encode(x) for x in b.prog]
    ok = GoldenModel(cfg).run(words, bytes(b.image)).status
    if not ok.ok and relaxed:  # a race or a queue overflow: take the strictly ordered program
        rng.setstate(state)
        b = _build_valid(rng, cfg, relaxed=False, all_fns=all_fns)
        words = [encode(x) for x in b.prog]
        ok = GoldenModel(cfg).run(words, bytes(b.image)).status
        relaxed = False
    assert ok.ok, f"generated program fails on the golden model: {ok}"
    features = set(b.features) | {"ordering relaxed" if relaxed else "ordering strict"}
    faults, limit, prog_len = [], len(b.image), None
    if invalid:
        mutated = _mutate(rng, cfg, b, what)
        if mutated is None:
            return None
        faults, limit, prog_len = mutated
    elif rng.random() < 0.15:  # a fault where nothing reads or writes: must change nothing
        lo = b.nowhere + rng.randrange(b.beat)
        faults = [AxiFault(lo, lo + 1, rng.random() < 0.5, rng.choice([SLVERR, DECERR]))]
        what = "valid, fault nowhere used"
    words = [illegal_word(rng) if x is None else encode(x) for x in b.prog]
    if rng.random() < 0.2:  # words past the end: prefetched, never executed
        words += [illegal_word(rng) for _ in range(rng.randint(1, 6))]
    if prog_len is None:
        prog_len = len(words)
    page = -(-(len(b.image) + 256) // 4096) * 4096 + rng.randrange(0, 8) * 4096  # past the guard
    prog_addr = (page + 4096 - WORD_BYTES * rng.randrange(1, 24) if rng.random() < 0.5
                 else page + WORD_BYTES * rng.randrange(0, 64))
    if what == "fetch error":
        o = rng.randrange(len(words))
        a = prog_addr + WORD_BYTES * o + rng.randrange(WORD_BYTES)
        beat = cfg.dma_data_bits // 8
        faults = [AxiFault(a - a % beat, a - a % beat + beat, False, rng.choice([SLVERR, DECERR]))]
    faults = tuple(faults)
    image = bytes(b.image)
    expect, dram, unspecified, model = _expect(cfg, words, image, limit, prog_len, prog_addr,
                                               faults)
    if invalid and expect[0] == StatusCode.OK:
        what += " (no effect)"  # e.g. a fault on a fetched word after HALT
    elif invalid:
        if expect[0] not in RTL_CODES:
            return None  # e.g. the mutation made a read of an unwritten row: try again
        features.add(f"status {StatusCode(expect[0]).name}")
        if faults:
            features.add(f"AXI {'write' if faults[0].write else 'read'} "
                         f"{'SLVERR' if faults[0].resp == SLVERR else 'DECERR'}")
    elif expect != (int(StatusCode.OK), len(b.prog) - 1):
        raise AssertionError(f"valid case {config_name}:{seed}:{index} ends {expect}")
    return ProgramCase(config_name, seed, index, what, list(b.prog), words, image, limit,
                       prog_addr, prog_len, faults, expect, dram, unspecified, model,
                       frozenset(features))


def coverage(cases: list[ProgramCase]) -> dict[str, int]:
    """How many cases show each feature (opcodes, modes, padding edges, status codes...)."""
    counts: dict[str, int] = defaultdict(int)
    for c in cases:
        for f in c.features:
            counts[f] += 1
    return dict(sorted(counts.items()))


#: Features every batch of >= 200 cases must show (checked by the RTL tests).
REQUIRED_FEATURES = frozenset(
    [f"LOAD {m}" for m in ("SPAD", "ACC")]
    + [f"LOAD pad {e}" for e in ("top", "bottom", "left", "right")]
    + ["LOAD unaligned", "LOAD multi-pixel row", "LOAD stride > 1", "LOADT BIAS", "LOADT PWL"]
    + [f"GEMM {m.name}" for m in GemmMode] + ["GEMM transposed"]
    + [f"EPI dest {d.name}" for d in EpiDest] + [f"EPI scale {s.name}" for s in ScaleMode]
    + ["STORE SPAD", "STORE ACC", "STORE unaligned", "STORE stride gap"]
    + [f"SYNC {t.name}" for t in SyncTarget]
    + ["LOAD push_next", "LOAD pop_next", "COMPUTE pop_prev", "COMPUTE pop_next",
       "COMPUTE push_prev", "COMPUTE push_next", "STORE pop_prev", "STORE push_prev"]
    + ["ordering strict", "ordering relaxed"]
    + [f"status {c.name}" for c in RTL_CODES]
    + ["AXI read SLVERR", "AXI read DECERR", "AXI write SLVERR", "AXI write DECERR"]
)


def main(argv=None) -> int:
    """Print one case (``--index``) or the coverage of ``--count`` cases."""
    p = argparse.ArgumentParser(prog="python -m tb.random_programs", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    a = p.parse_args(argv)
    cfg = preset(a.config)
    cases = [make_case(cfg, a.config, a.seed, a.index + i) for i in range(a.count)]
    if a.count == 1:
        print(cases[0].describe())
    else:
        for name, n in coverage(cases).items():
            print(f"{n:6d}  {name}")
        missing = REQUIRED_FEATURES - set(coverage(cases))
        print("missing:", sorted(missing) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
