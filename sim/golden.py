"""The golden model: a bit-exact, vectorised NumPy simulator of the ISA (``docs/isa.md``).

:class:`GoldenModel` executes a program in program order on a DRAM image and returns the final
image, the status register (an error code and the failing word offset, never a silent failure)
and a trace of executed instructions with the work each did, which :mod:`sim.cycle_model` turns
into cycles. All integer arithmetic of the epilogue goes through :mod:`hw.numeric`.

Program order is the reference semantics: a program whose dependency tokens order every
producer/consumer pair (see docs/isa.md, "Ordering") computes the same result on the decoupled
hardware. The model checks that each token pop is preceded, in program order, by its push.
"""

from __future__ import annotations

import enum as pyenum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hw import numeric
from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import (
    BIAS_ENTRY_BYTES,
    PWL_HEADER_BYTES,
    TOKEN_POPS,
    TOKEN_PUSHES,
    TOKEN_QUEUES,
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    Halt,
    Instruction,
    IsaError,
    Load,
    Loadt,
    MemSpace,
    Program,
    ScaleMode,
    Setbase,
    Store,
    Sync,
    TableKind,
    Unit,
    decode,
    pwl_table_bytes,
)
from sim.dram_image import DramImage

__all__ = ["ExecutionError", "GoldenModel", "RunResult", "Status", "StatusCode", "TraceEntry"]


class StatusCode(pyenum.IntEnum):
    """Error codes of the status register (0 = finished normally)."""

    OK = 0
    ILLEGAL_INSTRUCTION = 1
    SPAD_RANGE = 2
    ACC_RANGE = 3
    TABLE_RANGE = 4
    DRAM_RANGE = 5
    FIELD_RANGE = 6
    BAD_TABLE = 7
    TOKEN_UNDERFLOW = 8
    TOKEN_OVERFLOW = 9
    NO_HALT = 10
    FN_UNLOADED = 11
    HAZARD = 12
    UNINIT_READ = 13


@dataclass(frozen=True)
class Status:
    """Status register: code, word offset of the instruction that raised it, explanation."""

    code: StatusCode
    pc: int
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the program ended with HALT and no error."""
        return self.code == StatusCode.OK

    def __str__(self) -> str:
        if self.ok:
            return f"OK (halted at word {self.pc})"
        return f"{self.code.name} at word {self.pc}: {self.message}"


class ExecutionError(NmxError, RuntimeError):
    """A program stopped with a non-zero status code."""

    def __init__(self, status: Status):
        self.status = status
        super().__init__(str(status))


class _Fault(Exception):
    def __init__(self, code: StatusCode, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class TraceEntry:
    """One executed instruction and the work it did (input to the cycle model).

    ``rows`` counts rows moved/produced, ``beats`` DRAM bus beats, ``macs`` array MACs,
    ``blocks`` GEMM weight blocks.
    """

    pc: int
    instr: Instruction
    rows: int = 0
    beats: int = 0
    dram_bytes: int = 0
    macs: int = 0
    blocks: int = 0


@dataclass
class RunResult:
    """Outcome of :meth:`GoldenModel.run`."""

    dram: DramImage
    status: Status
    trace: list[TraceEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the program halted without error."""
        return self.status.ok

    def raise_for_status(self) -> RunResult:
        """Raise :class:`ExecutionError` unless the status is OK; return self otherwise."""
        if not self.ok:
            raise ExecutionError(self.status)
        return self

    @property
    def macs(self) -> int:
        """Array multiply-accumulates executed."""
        return sum(t.macs for t in self.trace)


@dataclass
class _Geometry:
    height: int = 0
    width: int = 0
    pitch: int = 0
    pix: int = 1
    sy: int = 0
    sx: int = 0


_POPS = TOKEN_POPS
_PUSHES = TOKEN_PUSHES


_UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)
_UIDX = {u: i for i, u in enumerate(_UNITS)}
_NEVER = np.iinfo(np.int64).max


class _Rows:
    """Last writer and last readers of each row of one on-chip memory (for hazard checks)."""

    def __init__(self, n: int):
        self.w_unit = np.full(n, 3, dtype=np.int64)  # 3: never written
        self.w_seq = np.zeros(n, dtype=np.int64)
        self.w_pc = np.zeros(n, dtype=np.int64)
        self.r_seq = np.zeros((3, n), dtype=np.int64)
        self.r_pc = np.zeros((3, n), dtype=np.int64)


@dataclass
class _DramAccess:
    unit: int
    seq: int
    pc: int
    write: bool
    starts: np.ndarray  # disjoint intervals [starts, ends), sorted
    ends: np.ndarray


class _HazardTracker:
    """Checks that every cross-unit access to shared state is ordered by dependency tokens.

    Each unit counts its instructions; ``vc[u, v]`` is how many of unit ``v``'s instructions unit
    ``u`` knows to be complete (a vector clock carried by tokens). An access races when the
    conflicting earlier access of another unit is not known complete: read-after-write,
    write-after-write and write-after-read on scratchpad/accumulator rows, bias entries, PWL
    functions and DRAM bytes.
    """

    def __init__(self, cfg: AcceleratorConfig):
        self.seq = np.zeros(3, dtype=np.int64)
        self.vc = np.zeros((3, 3), dtype=np.int64)
        self.queues: dict[str, deque] = {q: deque() for q in TOKEN_QUEUES}
        self.mem = {
            "scratchpad row": _Rows(cfg.scratchpad_rows),
            "accumulator row": _Rows(cfg.accumulator_rows),
            "bias/scale entry": _Rows(cfg.bias_entries),
            "PWL function": _Rows(cfg.pwl_functions),
        }
        self.pending: list[_DramAccess] = []  # DRAM accesses not yet known complete everywhere
        self.unit = 0
        self.pc = 0

    def begin(self, ins: Instruction, pc: int) -> None:
        u = _UIDX[ins.unit]
        for (unit, flag), q in TOKEN_POPS.items():
            if unit == ins.unit and getattr(ins, flag):
                self.vc[u] = np.maximum(self.vc[u], self.queues[q].popleft())
        self.seq[u] += 1
        self.vc[u, u] = self.seq[u]
        self.unit, self.pc = u, pc
        self.thr = np.append(self.vc[u], _NEVER)
        self.thr[u] = _NEVER

    def end(self, ins: Instruction) -> None:
        u = _UIDX[ins.unit]
        for (unit, flag), q in TOKEN_PUSHES.items():
            if unit == ins.unit and getattr(ins, flag):
                self.queues[q].append(self.vc[u].copy())

    def _fault(self, kind: str, what: str, index: int, other: int, other_pc: int) -> _Fault:
        return _Fault(
            StatusCode.HAZARD,
            f"{kind} hazard on {what} {index}: the {_UNITS[self.unit].name} unit accesses it "
            f"while the {_UNITS[other].name} instruction at word {other_pc} may still be running "
            "(no dependency token orders them)",
        )

    def access(self, what: str, first: int, count: int, *, write: bool) -> None:
        r = self.mem[what]
        u = self.unit
        # thr[v]: the last instruction of unit v that unit u knows complete; own unit and "no
        # writer" (3) never race
        thr = self.thr
        sl = slice(first, first + count)
        ws = r.w_seq[sl]
        bad = ws > thr[r.w_unit[sl]]
        if bad.any():
            i = int(np.argmax(bad))
            kind = "write-after-write" if write else "read-after-write"
            raise self._fault(
                kind, what, first + i, int(r.w_unit[first + i]), int(r.w_pc[first + i])
            )
        if write:
            rs = r.r_seq[:, sl]
            late = rs > thr[:3, None]
            if late.any():
                v, i = np.unravel_index(int(np.argmax(late)), late.shape)
                raise self._fault(
                    "write-after-read", what, first + int(i), int(v), int(r.r_pc[v, first + i])
                )
            r.w_unit[sl], r.w_seq[sl], r.w_pc[sl] = u, self.seq[u], self.pc
        else:
            r.r_seq[u, sl], r.r_pc[u, sl] = self.seq[u], self.pc

    def dram(self, starts: np.ndarray, ends: np.ndarray, *, write: bool) -> None:
        u, vc = self.unit, self.vc[self.unit]
        starts, ends = _merge_intervals(starts, ends)
        for acc in self.pending:
            if acc.unit == u or acc.seq <= vc[acc.unit] or not (write or acc.write):
                continue
            # overlap of [starts, ends) with acc's intervals
            idx = np.searchsorted(acc.starts, ends, side="left") - 1
            hit = (idx >= 0) & (acc.ends[np.maximum(idx, 0)] > starts)
            if hit.any():
                i = int(np.nonzero(hit)[0][0])
                kind = {
                    (True, True): "write-after-write",
                    (True, False): "write-after-read",
                    (False, True): "read-after-write",
                }[(write, acc.write)]
                raise self._fault(kind, "DRAM byte", int(starts[i]), acc.unit, acc.pc)
        self.pending.append(_DramAccess(u, int(self.seq[u]), self.pc, write, starts, ends))
        known = self.vc.min(axis=0)
        self.pending = [a for a in self.pending if a.seq > known[a.unit]]


class _NoHazards:
    """Stand-in for :class:`_HazardTracker` when hazard checking is off."""

    def begin(self, ins, pc) -> None:
        pass

    def end(self, ins) -> None:
        pass

    def access(self, what, first, count, *, write) -> None:
        pass

    def dram(self, starts, ends, *, write) -> None:
        pass


def _merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals [starts, ends) as sorted, disjoint intervals."""
    order = np.argsort(starts, kind="stable")
    s, e = starts[order].astype(np.int64), ends[order].astype(np.int64)
    if s.size == 0:
        return s, e
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    group = np.cumsum(new) - 1
    out_s = s[new]
    out_e = np.zeros(out_s.size, dtype=np.int64)
    np.maximum.at(out_e, group, e)
    return out_s, out_e


class GoldenModel:
    """Bit-exact simulator of one accelerator instance.

    Parameters
    ----------
    config : AcceleratorConfig
        Memory sizes, array shape and table sizes.
    check_hazards : bool
        Stop with status HAZARD on accesses that tokens do not order (default). False runs any
        program in plain program order (for comparing semantics with other references).

    Attributes
    ----------
    spad : ndarray, int8, (scratchpad_rows, lanes)
    acc : ndarray, int32, (accumulator_rows, cols)
    bias, mult, shift : ndarray, (bias_entries,) int32 / int16 / uint8
        The bias/scale SRAM.
    tables : list of PwlTable or None
        Segment-table SRAM, one slot per function (None: never loaded).

    On-chip memories are zero after :meth:`reset`, but the hardware leaves them undefined, so
    the model tracks what has been written (scratchpad: per row, the written lanes; accumulator
    rows; bias and multiplier/shift of each bias/scale entry) and stops with status UNINIT_READ
    when an instruction reads anything else, whatever ``check_hazards`` says.
    """

    def __init__(self, config: AcceleratorConfig, *, check_hazards: bool = True):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._cfg = config
        self._check_hazards = bool(check_hazards)
        self.reset()

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self._cfg

    def reset(self) -> None:
        """Clear every on-chip memory, register and token counter."""
        c = self._cfg
        self.spad = np.zeros((c.scratchpad_rows, c.lanes), dtype=np.int8)
        self.acc = np.zeros((c.accumulator_rows, c.cols), dtype=np.int32)
        self.bias = np.zeros(c.bias_entries, dtype=np.int32)
        self.mult = np.zeros(c.bias_entries, dtype=np.int16)
        self.shift = np.zeros(c.bias_entries, dtype=np.uint8)
        self.tables: list[numeric.PwlTable | None] = [None] * c.pwl_functions
        # what has been written since reset (docs/isa.md: on-chip memory starts undefined)
        self._spad_lanes = np.zeros(c.scratchpad_rows, dtype=np.int64)  # leading lanes written
        self._acc_written = np.zeros(c.accumulator_rows, dtype=bool)
        self._bias_written = np.zeros(c.bias_entries, dtype=bool)
        self._scale_written = np.zeros(c.bias_entries, dtype=bool)
        self.bases = [0, 0, 0, 0]
        self.geometry = [_Geometry() for _ in range(4)]
        self.tokens = dict.fromkeys(TOKEN_QUEUES, 0)
        self._hz = _HazardTracker(c) if self._check_hazards else _NoHazards()

    # ------------------------------------------------------------------ running

    def run(
        self,
        program: Program | bytes | list[int],
        dram: DramImage | bytes | np.ndarray,
        *,
        max_instructions: int = 10_000_000,
    ) -> RunResult:
        """Run ``program`` on a copy of ``dram`` from a reset state.

        ``program`` is a :class:`Program`, a program file's bytes, or a list of raw words (decoded
        one at a time, as the hardware fetches them: an illegal word is an error status at that
        offset, not an exception; a malformed file header or an invalid :class:`Program` field
        raises :class:`~hw.isa.IsaError`). ``dram`` is a :class:`DramImage` or the raw DRAM
        contents (bytes or a uint8 array, address 0 first). A program file or image stamped for
        another config raises :class:`~hw.config.ConfigMismatchError`. Returns a
        :class:`RunResult`; its status is never silently OK.
        """
        if isinstance(program, Program):
            words = program.words()
        elif isinstance(program, (bytes, bytearray)):
            words = Program.split_words(bytes(program), self._cfg)
        else:
            words = list(program)
        if isinstance(dram, DramImage):
            dram.check_config(self._cfg)
            image = dram.copy()
        else:
            raw = (
                np.frombuffer(bytes(dram), dtype=np.uint8)
                if not isinstance(dram, np.ndarray)
                else dram.astype(np.uint8, copy=False)
            )
            image = DramImage(raw.copy())
        self.reset()
        self._mem = image.data
        trace: list[TraceEntry] = []
        decoded: dict[int, Instruction] = {}  # programs repeat words (e.g. per-tile GEMMs)
        pc = 0
        status = None
        executed = 0
        while status is None:
            if pc >= len(words):
                status = Status(StatusCode.NO_HALT, pc, "program ended without HALT")
                break
            if executed >= max_instructions:
                status = Status(
                    StatusCode.NO_HALT, pc, f"stopped after {max_instructions} instructions"
                )
                break
            word = words[pc]
            ins = decoded.get(word)
            if ins is None:
                try:
                    ins = decoded[word] = decode(word, offset=pc)
                except IsaError as e:
                    status = Status(StatusCode.ILLEGAL_INSTRUCTION, pc, str(e))
                    break
            try:
                if isinstance(ins, Halt):
                    status = Status(StatusCode.OK, pc)
                    trace.append(TraceEntry(pc, ins))
                    break
                self._pop_tokens(ins)
                if ins.unit != Unit.DISPATCH:
                    self._hz.begin(ins, pc)
                trace.append(self._execute(pc, ins))
                self._push_tokens(ins)
                if ins.unit != Unit.DISPATCH:
                    self._hz.end(ins)
            except _Fault as f:
                status = Status(f.code, pc, f"{type(ins).__name__.upper()}: {f}")
                break
            pc += 1
            executed += 1
        return RunResult(image, status, trace)

    # ------------------------------------------------------------------ tokens

    def _pop_tokens(self, ins: Instruction) -> None:
        for (unit, flag), q in _POPS.items():
            if ins.unit == unit and getattr(ins, flag):
                if self.tokens[q] == 0:
                    raise _Fault(
                        StatusCode.TOKEN_UNDERFLOW,
                        f"{flag} waits on token queue {q} which no earlier instruction pushed "
                        "(the program would deadlock)",
                    )
        for (unit, flag), q in _POPS.items():
            if ins.unit == unit and getattr(ins, flag):
                self.tokens[q] -= 1

    def _push_tokens(self, ins: Instruction) -> None:
        for (unit, flag), q in _PUSHES.items():
            if ins.unit == unit and getattr(ins, flag):
                if self.tokens[q] >= self._cfg.instr_fifo_depth:
                    raise _Fault(
                        StatusCode.TOKEN_OVERFLOW,
                        f"{flag}: token queue {q} already holds {self.tokens[q]} tokens "
                        f"(capacity instr_fifo_depth = {self._cfg.instr_fifo_depth})",
                    )
                self.tokens[q] += 1

    # ------------------------------------------------------------------ dispatch

    def _execute(self, pc: int, ins: Instruction) -> TraceEntry:
        if isinstance(ins, Setbase):
            if ins.value >> self._cfg.addr_bits:
                raise _Fault(
                    StatusCode.FIELD_RANGE,
                    f"value {ins.value:#x} exceeds the {self._cfg.addr_bits}-bit address space",
                )
            self.bases[ins.reg] = ins.value
            return TraceEntry(pc, ins)
        if isinstance(ins, Dmacfg):
            self.geometry[ins.slot] = _Geometry(
                ins.height, ins.width, ins.pitch, ins.pix, ins.sy, ins.sx
            )
            return TraceEntry(pc, ins)
        if isinstance(ins, Load):
            return self._load(pc, ins)
        if isinstance(ins, Loadt):
            return self._loadt(pc, ins)
        if isinstance(ins, Gemm):
            return self._gemm(pc, ins)
        if isinstance(ins, Epi):
            return self._epi(pc, ins)
        if isinstance(ins, Store):
            return self._store(pc, ins)
        if isinstance(ins, Sync):
            return TraceEntry(pc, ins)
        raise AssertionError(f"unhandled instruction {ins!r}")

    # ------------------------------------------------------------------ helpers

    def _check_rows(self, code: StatusCode, what: str, first: int, count: int, limit: int):
        if first + count > limit:
            raise _Fault(
                code,
                f"{what} rows {first}..{first + count - 1} exceed the {limit} available",
            )

    def _require_spad(self, first: int, count: int, lanes: int, what: str) -> None:
        """UNINIT_READ unless lanes ``0..lanes-1`` of the rows were written since reset."""
        have = self._spad_lanes[first : first + count]
        if have.min() >= lanes:
            return
        bad = np.nonzero(have < lanes)[0]
        if bad.size:
            row, n = first + int(bad[0]), int(have[bad[0]])
            state = "was never written" if n == 0 else f"has only lanes 0..{n - 1} written"
            raise _Fault(
                StatusCode.UNINIT_READ,
                f"{what} reads scratchpad row {row} lanes 0..{lanes - 1}, which {state} "
                "(on-chip memory is undefined after reset)",
            )

    @staticmethod
    def _require(written: np.ndarray, first: int, count: int, what: str) -> None:
        """UNINIT_READ unless entries ``first .. first+count-1`` of ``written`` are set."""
        if written[first : first + count].all():
            return
        bad = np.nonzero(~written[first : first + count])[0]
        if bad.size:
            raise _Fault(
                StatusCode.UNINIT_READ,
                f"reads {what} {first + int(bad[0])}, which was never written "
                "(on-chip memory is undefined after reset)",
            )

    def _check_dram(self, addrs: np.ndarray, what: str) -> None:
        if addrs.size == 0:
            return
        lo, hi = int(addrs.min()), int(addrs.max())
        limit = min(self._mem.size, 1 << self._cfg.addr_bits)
        if lo < 0 or hi >= limit:
            bad = lo if lo < 0 else hi
            raise _Fault(
                StatusCode.DRAM_RANGE,
                f"{what} touches DRAM byte {bad:#x}, outside 0..{limit - 1:#x}",
            )

    def _beats(self, starts: np.ndarray, nbytes: int) -> int:
        bw = self._cfg.dma_data_bits // 8
        s = starts.astype(np.int64)
        return int((((s % bw) + nbytes + bw - 1) // bw).sum())

    def _mem_rows(self, mem: MemSpace, length: int):
        """The rows a LOAD/STORE of ``length`` elements per row moves: array, row count, row
        width, element size and range status; FIELD_RANGE if ``length`` exceeds a row."""
        c = self._cfg
        if mem == MemSpace.SPAD:
            rows = self.spad, c.scratchpad_rows, c.lanes, 1, StatusCode.SPAD_RANGE
        else:
            rows = self.acc, c.accumulator_rows, c.cols, 4, StatusCode.ACC_RANGE
        if length > rows[2]:
            raise _Fault(StatusCode.FIELD_RANGE,
                         f"length {length} exceeds the {rows[2]} elements of a {mem.name} row")
        return rows

    @staticmethod
    def _mem_name(mem: MemSpace) -> str:
        return "scratchpad row" if mem == MemSpace.SPAD else "accumulator row"

    # ------------------------------------------------------------------ load unit

    def _load(self, pc: int, ins: Load) -> TraceEntry:
        target, nrows, width, esize, code = self._mem_rows(ins.mem, ins.length)
        count = ins.outer * ins.inner
        self._check_rows(code, f"{ins.mem.name} destination", ins.dst, count, nrows)
        g = self.geometry[ins.geom]
        i = np.arange(ins.outer, dtype=np.int64)[:, None]
        j = np.arange(ins.inner, dtype=np.int64)[None, :]
        y = (ins.y0 + i * g.sy) + 0 * j  # (outer, inner)
        x = (ins.x0 + j * g.sx) + 0 * i
        y = y.reshape(-1, 1)
        x = x.reshape(-1, 1)
        ob = np.arange(ins.length, dtype=np.int64)[None, :] * esize  # byte offset of element
        px = x + ob // g.pix
        valid = (y >= 0) & (y < g.height) & (px >= 0) & (px < g.width)  # (rows, length)
        start = self.bases[ins.base] + ins.offset + y * g.pitch + x * g.pix + ob
        vstart = start[valid]
        byte_addr = (vstart[:, None] + np.arange(esize, dtype=np.int64)[None, :]).ravel()
        self._check_dram(byte_addr, "LOAD")
        self._hz.dram(vstart, vstart + esize, write=False)
        self._hz.access(self._mem_name(ins.mem), ins.dst, count, write=True)
        raw = np.zeros((count, ins.length, esize), dtype=np.uint8)
        raw[valid] = self._mem[byte_addr].reshape(-1, esize)
        values = raw.reshape(count, ins.length * esize).view("<i1" if esize == 1 else "<i4")
        block = np.zeros((count, width), dtype=target.dtype)
        block[:, : ins.length] = values
        target[ins.dst : ins.dst + count] = block
        if ins.mem == MemSpace.SPAD:
            self._spad_lanes[ins.dst : ins.dst + count] = width
        else:
            self._acc_written[ins.dst : ins.dst + count] = True
        row_valid = valid.any(axis=1)
        row_start = np.where(valid, start, np.iinfo(np.int64).max).min(axis=1)[row_valid]
        row_bytes = ins.length * esize
        return TraceEntry(
            pc,
            ins,
            rows=count,
            beats=self._beats(row_start, row_bytes),
            dram_bytes=int(valid.sum()) * esize,
        )

    def _loadt(self, pc: int, ins: Loadt) -> TraceEntry:
        c = self._cfg
        addr = self.bases[ins.base] + ins.offset
        if ins.kind == TableKind.BIAS:
            self._check_rows(
                StatusCode.TABLE_RANGE, "bias entry", ins.dst, ins.count, c.bias_entries
            )
            nbytes = ins.count * BIAS_ENTRY_BYTES
            self._check_dram(np.array([addr, addr + nbytes - 1]), "LOADT")
            self._hz.dram(np.array([addr]), np.array([addr + nbytes]), write=False)
            self._hz.access("bias/scale entry", ins.dst, ins.count, write=True)
            rec = self._mem[addr : addr + nbytes].view(
                np.dtype([("b", "<i4"), ("m", "<i2"), ("s", "u1"), ("r", "u1")])
            )
            bad = np.nonzero((rec["s"] > numeric.MAX_SHIFT) | (rec["r"] != 0))[0]
            if bad.size:
                e = int(bad[0])
                raise _Fault(
                    StatusCode.BAD_TABLE,
                    f"bias entry {ins.dst + e}: shift {int(rec['s'][e])} (max "
                    f"{numeric.MAX_SHIFT}) / reserved byte {int(rec['r'][e])} (must be 0)",
                )
            sl = slice(ins.dst, ins.dst + ins.count)
            self.bias[sl], self.mult[sl], self.shift[sl] = rec["b"], rec["m"], rec["s"]
            self._bias_written[sl] = self._scale_written[sl] = True
        else:
            self._check_rows(
                StatusCode.TABLE_RANGE, "PWL function", ins.dst, ins.count, c.pwl_functions
            )
            s = c.pwl_segments
            tb = pwl_table_bytes(s)
            nbytes = ins.count * tb
            self._check_dram(np.array([addr, addr + nbytes - 1]), "LOADT")
            self._hz.dram(np.array([addr]), np.array([addr + nbytes]), write=False)
            self._hz.access("PWL function", ins.dst, ins.count, write=True)
            for t in range(ins.count):
                blob = self._mem[addr + t * tb : addr + (t + 1) * tb]
                self._set_table(ins.dst + t, blob, s)
        bw = c.dma_data_bits // 8
        return TraceEntry(pc, ins, rows=ins.count, beats=-(-nbytes // bw), dram_bytes=nbytes)

    def _set_table(self, fn: int, blob: np.ndarray, s: int) -> None:
        shift = int(blob[0])
        if np.any(blob[1:PWL_HEADER_BYTES]):
            raise _Fault(StatusCode.BAD_TABLE, f"PWL function {fn}: reserved header bytes not 0")
        o = PWL_HEADER_BYTES
        bp = blob[o : o + 4 * (s - 1)].view("<i4")
        o += 4 * (s - 1)
        k = blob[o : o + 2 * s].view("<i2")
        o += 2 * s
        b = blob[o : o + 4 * s].view("<i4")
        try:
            table = numeric.PwlTable(
                tuple(int(v) for v in bp),
                tuple(int(v) for v in k),
                tuple(int(v) for v in b),
                shift,
            )
        except ValueError as e:
            raise _Fault(StatusCode.BAD_TABLE, f"PWL function {fn}: {e}") from None
        self.tables[fn] = table

    # ------------------------------------------------------------------ compute unit

    def _gemm(self, pc: int, ins: Gemm) -> TraceEntry:
        c = self._cfg
        R, C = c.rows, c.cols
        k, n, m = ins.k_tiles, ins.n_tiles, ins.m
        blk = C if ins.transpose else R
        self._check_rows(StatusCode.SPAD_RANGE, "weight", ins.w, n * k * blk, c.scratchpad_rows)
        self._check_rows(StatusCode.SPAD_RANGE, "operand", ins.a, k * m, c.scratchpad_rows)
        self._check_rows(StatusCode.ACC_RANGE, "accumulator", ins.acc, n * m, c.accumulator_rows)
        if ins.mode.reads_bias:
            self._check_rows(StatusCode.TABLE_RANGE, "bias entry", ins.bias, n * C, c.bias_entries)
        self._require_spad(ins.a, k * m, R, "operand")
        self._require_spad(ins.w, n * k * blk, R if ins.transpose else C, "weight")
        if ins.mode.reads_accumulator:
            self._require(self._acc_written, ins.acc, n * m, "accumulator row")
        if ins.mode.reads_bias:
            self._require(self._bias_written, ins.bias, n * C, "the bias of entry")
        hz = self._hz
        hz.access("scratchpad row", ins.w, n * k * blk, write=False)
        hz.access("scratchpad row", ins.a, k * m, write=False)
        if ins.mode.reads_bias:
            hz.access("bias/scale entry", ins.bias, n * C, write=False)
        if ins.mode.reads_accumulator:
            hz.access("accumulator row", ins.acc, n * m, write=False)
        hz.access("accumulator row", ins.acc, n * m, write=True)
        a = self.spad[ins.a : ins.a + k * m, :R].reshape(k, m, R)
        a = a.transpose(1, 0, 2).reshape(m, k * R).astype(np.float64)
        if ins.transpose:
            w = self.spad[ins.w : ins.w + n * k * C, :R].reshape(n, k, C, R).transpose(1, 3, 0, 2)
        else:
            w = self.spad[ins.w : ins.w + n * k * R, :C].reshape(n, k, R, C).transpose(1, 2, 0, 3)
        w = w.reshape(k * R, n * C).astype(np.float64)
        # float64 is exact here: |sum| <= 4095*64 * 2**14 < 2**53.
        p = (a @ w).astype(np.int64).reshape(m, n, C).transpose(1, 0, 2).reshape(n * m, C)
        rows = slice(ins.acc, ins.acc + n * m)
        if ins.mode.reads_accumulator:
            p = p + self.acc[rows]
        if ins.mode.reads_bias:
            bias = self.bias[ins.bias : ins.bias + n * C].astype(np.int64).reshape(n, 1, C)
            p = (p.reshape(n, m, C) + bias).reshape(n * m, C)
        self.acc[rows] = p.astype(np.int32)  # two's-complement wrap, as the hardware adders
        self._acc_written[rows] = True
        return TraceEntry(pc, ins, rows=n * m, macs=m * k * n * R * C, blocks=n * k)

    def _epi(self, pc: int, ins: Epi) -> TraceEntry:
        c = self._cfg
        C = c.cols
        n, m = ins.n_tiles, ins.m
        self._check_rows(
            StatusCode.ACC_RANGE, "accumulator source", ins.src, n * m, c.accumulator_rows
        )
        if ins.fn >= c.pwl_functions:
            raise _Fault(
                StatusCode.TABLE_RANGE, f"function {ins.fn} >= pwl_functions = {c.pwl_functions}"
            )
        table = self.tables[ins.fn]
        if table is None:
            raise _Fault(StatusCode.FN_UNLOADED, f"PWL function {ins.fn} was never loaded")
        if ins.scale_mode == ScaleMode.COL:
            self._check_rows(
                StatusCode.TABLE_RANGE, "scale entry", ins.scale, n * C, c.bias_entries
            )
            sl = slice(ins.scale, ins.scale + n * C)
            mult = self.mult[sl].astype(np.int64).reshape(n, 1, C)
            shift = self.shift[sl].astype(np.int64).reshape(n, 1, C)
        else:
            self._check_rows(StatusCode.TABLE_RANGE, "scale entry", ins.scale, m, c.bias_entries)
            sl = slice(ins.scale, ins.scale + m)
            mult = self.mult[sl].astype(np.int64).reshape(1, m, 1)
            shift = self.shift[sl].astype(np.int64).reshape(1, m, 1)
        self._require(self._acc_written, ins.src, n * m, "accumulator row")
        self._require(
            self._scale_written, sl.start, sl.stop - sl.start, "the multiplier/shift of entry"
        )
        hz = self._hz
        hz.access("accumulator row", ins.src, n * m, write=False)
        hz.access("bias/scale entry", sl.start, sl.stop - sl.start, write=False)
        hz.access("PWL function", ins.fn, 1, write=False)
        x = self.acc[ins.src : ins.src + n * m].astype(np.int64).reshape(n, m, C)
        req = numeric.requantize(x, mult, shift)
        out_bits = {EpiDest.SPAD: 8, EpiDest.ACC: 32, EpiDest.SCALE: numeric.SCALE_BITS}[ins.dest]
        if ins.dest == EpiDest.SCALE:
            if ins.col >= C:
                raise _Fault(StatusCode.FIELD_RANGE, f"col {ins.col} >= cols = {C}")
            if ins.out_shift > numeric.MAX_SHIFT:
                raise _Fault(
                    StatusCode.FIELD_RANGE, f"out_shift {ins.out_shift} > {numeric.MAX_SHIFT}"
                )
            self._check_rows(
                StatusCode.TABLE_RANGE, "scale destination entry", ins.dst, n * m, c.bias_entries
            )
            if ins.dst < sl.stop and sl.start < ins.dst + n * m:
                raise _Fault(
                    StatusCode.FIELD_RANGE,
                    f"scale destination entries {ins.dst}..{ins.dst + n * m - 1} overlap the "
                    f"scale entries {sl.start}..{sl.stop - 1} this EPI reads",
                )
            hz.access("bias/scale entry", ins.dst, n * m, write=True)
            y = numeric.pwl_apply(req[:, :, ins.col], table, out_bits).reshape(n * m)
            self.mult[ins.dst : ins.dst + n * m] = y
            self.shift[ins.dst : ins.dst + n * m] = ins.out_shift
            self._scale_written[ins.dst : ins.dst + n * m] = True
        else:
            y = numeric.pwl_apply(req, table, out_bits).reshape(n * m, C)
            if ins.dest == EpiDest.SPAD:
                self._check_rows(
                    StatusCode.SPAD_RANGE,
                    "scratchpad destination",
                    ins.dst,
                    n * m,
                    c.scratchpad_rows,
                )
                hz.access("scratchpad row", ins.dst, n * m, write=True)
                self.spad[ins.dst : ins.dst + n * m, :C] = y
                lanes = self._spad_lanes[ins.dst : ins.dst + n * m]
                np.maximum(lanes, C, out=lanes)
            else:
                self._check_rows(
                    StatusCode.ACC_RANGE,
                    "accumulator destination",
                    ins.dst,
                    n * m,
                    c.accumulator_rows,
                )
                if ins.dst != ins.src and abs(ins.dst - ins.src) < n * m:
                    raise _Fault(
                        StatusCode.FIELD_RANGE,
                        f"accumulator destination {ins.dst} partially overlaps source "
                        f"{ins.src} ({n * m} rows): must be equal or disjoint",
                    )
                hz.access("accumulator row", ins.dst, n * m, write=True)
                self.acc[ins.dst : ins.dst + n * m] = y
                self._acc_written[ins.dst : ins.dst + n * m] = True
        return TraceEntry(pc, ins, rows=n * m)

    # ------------------------------------------------------------------ store unit

    def _store(self, pc: int, ins: Store) -> TraceEntry:
        source, nrows, _width, esize, code = self._mem_rows(ins.mem, ins.length)
        count = ins.rows * ins.tiles
        self._check_rows(code, f"{ins.mem.name} source", ins.src, count, nrows)
        row_bytes = ins.length * esize
        u = np.arange(ins.tiles, dtype=np.int64)[:, None]
        i = np.arange(ins.rows, dtype=np.int64)[None, :]
        starts = (self.bases[ins.base] + ins.offset + i * ins.stride + u * row_bytes).reshape(-1)
        addrs = (starts[:, None] + np.arange(row_bytes, dtype=np.int64)[None, :]).ravel()
        self._check_dram(addrs, "STORE")
        # Rows of a tile are `stride` apart and the tiles of a row side by side, so rows are
        # disjoint exactly when a row's tiles fit before the next row starts.
        if ins.rows > 1 and ins.stride < ins.tiles * row_bytes:
            raise _Fault(
                StatusCode.FIELD_RANGE,
                f"destination rows overlap: stride {ins.stride} < tiles * row bytes = "
                f"{ins.tiles} * {row_bytes}",
            )
        if ins.mem == MemSpace.SPAD:
            self._require_spad(ins.src, count, ins.length, "source")
        else:
            self._require(self._acc_written, ins.src, count, "accumulator row")
        self._hz.access(self._mem_name(ins.mem), ins.src, count, write=False)
        self._hz.dram(starts, starts + row_bytes, write=True)
        block = np.ascontiguousarray(source[ins.src : ins.src + count, : ins.length])
        if esize == 4:
            block = block.astype("<i4")
        self._mem[addrs] = block.view(np.uint8).ravel()
        return TraceEntry(
            pc, ins, rows=count, beats=self._beats(starts, row_bytes), dram_bytes=addrs.size
        )
