"""Scheduling: dependency tokens derived from the accesses of every instruction.

The emitter appends instructions in a valid program order (the order that defines the result,
docs/isa.md "Program-order semantics"), each with the on-chip rows, entries, functions and DRAM
bytes it reads and writes. :class:`Scheduler` mirrors the golden model's hazard tracker (a vector
clock per unit, carried by tokens): before an instruction is appended, every earlier conflicting
access by another unit that its unit does not yet know to be complete gets a token chain. The
token is pushed by the conflicting instruction itself (its flag is set after the fact, so the
unit waits for exactly that instruction and no later one) and popped by the new instruction;
load <-> store orderings are relayed by a compute SYNC. A token whose queue would exceed
``instr_fifo_depth`` is pushed by a SYNC on the producing unit instead.

Loads of the next tile, the GEMMs of this one and the stores of the previous one therefore
overlap whenever the emitter places them on different buffers, and the program passes the golden
model's HAZARD, TOKEN_UNDERFLOW and TOKEN_OVERFLOW checks by construction.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from hw.isa import Instruction, Sync, SyncTarget, Unit

__all__ = ["Access", "Scheduler"]

_UNITS = (Unit.LOAD, Unit.COMPUTE, Unit.STORE)
_UIDX = {u: i for i, u in enumerate(_UNITS)}
LOAD, COMPUTE, STORE = 0, 1, 2
#: (from unit, to unit) -> (push flag on the producer, pop flag on the consumer)
_FLAGS = {
    (LOAD, COMPUTE): ("push_next", "pop_prev"),
    (COMPUTE, LOAD): ("push_prev", "pop_next"),
    (COMPUTE, STORE): ("push_next", "pop_prev"),
    (STORE, COMPUTE): ("push_prev", "pop_next"),
}
_ORDER = {LOAD: (STORE, COMPUTE), COMPUTE: (LOAD, STORE), STORE: (LOAD, COMPUTE)}
_SYNC_TARGET = {LOAD: SyncTarget.LOAD, COMPUTE: SyncTarget.COMPUTE, STORE: SyncTarget.STORE}


@dataclass(frozen=True)
class Access:
    """One access: ``space`` in {"spad", "acc", "bias", "pwl", "dram"}, ``[start, start+count)``."""

    space: str
    start: int
    count: int
    write: bool


class _Rows:
    def __init__(self, n: int):
        self.w_unit = np.full(n, 3, dtype=np.int64)
        self.w_seq = np.zeros(n, dtype=np.int64)
        self.r_seq = np.zeros((3, n), dtype=np.int64)


@dataclass
class _Slot:
    """An emitted instruction: class, fields and token flags (set later by the scheduler)."""

    cls: type
    fields: dict
    flags: dict = field(default_factory=dict)
    unit: int = -1
    seq: int = 0
    vc: np.ndarray | None = None
    tag: str = ""


class Scheduler:
    """Collects instructions in program order and inserts the dependency tokens they need."""

    def __init__(self, config: AcceleratorConfig):
        c = config
        self.config = config
        self.slots: list[_Slot] = []
        self.seq = np.zeros(3, dtype=np.int64)
        self.vc = np.zeros((3, 3), dtype=np.int64)
        self.by_seq: list[list[int]] = [[], [], []]  # unit -> slot index of each seq (1-based)
        self.mem = {"spad": _Rows(c.scratchpad_rows), "acc": _Rows(c.accumulator_rows),
                    "bias": _Rows(c.bias_entries), "pwl": _Rows(c.pwl_functions)}
        # DRAM accesses not yet known to the unit that could conflict with them: reads (by
        # LOAD/LOADT, only STORE writes DRAM) until the store unit knows them, writes until the
        # load unit does; (unit, seq, start, end) in program order
        self.dram_reads: deque = deque()
        self.dram_writes: deque = deque()
        self.intervals: dict[tuple[int, int], list[tuple[int, int]]] = {q: [] for q in _FLAGS}
        self.depth = c.instr_fifo_depth
        self.syncs = 0
        self.tag = ""

    # ------------------------------------------------------------------ public

    def emit(self, ins: Instruction, accesses: list[Access] = ()) -> int:
        """Append ``ins`` (its token flags are ignored and derived); returns its word offset."""
        fields_ = ins.body()
        unit = ins.unit
        if unit == Unit.DISPATCH:
            self.slots.append(_Slot(type(ins), fields_, tag=self.tag))
            return len(self.slots) - 1
        u = _UIDX[unit]
        need = np.zeros(3, dtype=np.int64)
        for a in accesses:
            self._requirements(u, a, need)
        pops: dict[str, bool] = {}
        for v in _ORDER[u]:  # the relayed (non-adjacent) unit first
            if need[v] > self.vc[u, v]:
                self._ensure(u, v, int(need[v]), pops)
        slot = _Slot(type(ins), fields_, dict(pops), unit=u, tag=self.tag)
        self._append(slot)
        for a in accesses:
            self._record(u, a)
        return len(self.slots) - 1

    def instructions(self) -> list[Instruction]:
        """The program: every slot built with its flags."""
        return [s.cls(**s.fields, **s.flags) for s in self.slots]

    def __len__(self) -> int:
        return len(self.slots)

    # ------------------------------------------------------------------ internals

    def _append(self, slot: _Slot) -> None:
        u = slot.unit
        self.seq[u] += 1
        self.vc[u, u] = self.seq[u]
        slot.seq = int(self.seq[u])
        slot.vc = self.vc[u].copy()
        self.slots.append(slot)
        self.by_seq[u].append(len(self.slots) - 1)

    def _requirements(self, u: int, a: Access, need: np.ndarray) -> None:
        if a.count <= 0:
            return
        if a.space == "dram":
            lo, hi = a.start, a.start + a.count
            lists = (self.dram_writes, self.dram_reads) if a.write else (self.dram_writes,)
            for lst in lists:
                for v, seq, s, e in lst:
                    if v != u and seq > need[v] and s < hi and lo < e:
                        need[v] = seq
            return
        r = self.mem[a.space]
        sl = slice(a.start, a.start + a.count)
        wu, ws = r.w_unit[sl], r.w_seq[sl]
        for v in range(3):
            if v == u:
                continue
            m = wu == v
            if m.any():
                need[v] = max(need[v], int(ws[m].max()))
            if a.write:
                need[v] = max(need[v], int(r.r_seq[v, sl].max()))

    def _record(self, u: int, a: Access) -> None:
        if a.count <= 0:
            return
        seq = int(self.seq[u])
        if a.space == "dram":
            (self.dram_writes if a.write else self.dram_reads).append(
                (u, seq, a.start, a.start + a.count))
            self._prune()
            return
        r = self.mem[a.space]
        sl = slice(a.start, a.start + a.count)
        if a.write:
            r.w_unit[sl] = u
            r.w_seq[sl] = seq
        else:
            r.r_seq[u, sl] = seq

    def _prune(self) -> None:
        """Drop DRAM accesses every unit that could conflict with them knows complete."""
        reads, writes = self.dram_reads, self.dram_writes
        while reads and reads[0][1] <= self.vc[STORE, reads[0][0]]:
            reads.popleft()
        while writes and writes[0][1] <= min(self.vc[LOAD, STORE], self.vc[COMPUTE, STORE]):
            writes.popleft()

    def _ensure(self, u: int, v: int, n: int, pops: dict) -> None:
        """Make unit ``u`` (about to append an instruction) know unit ``v``'s instruction n."""
        if self.vc[u, v] >= n:
            return
        if (v, u) not in _FLAGS:  # load <-> store: relay through a compute SYNC
            relay: dict[str, bool] = {}
            self._ensure(COMPUTE, v, n, relay)
            self.syncs += 1
            self._append(_Slot(Sync, {"target": SyncTarget.COMPUTE}, relay, unit=COMPUTE,
                               tag=self.tag))
            n, v = int(self.seq[COMPUTE]), COMPUTE
        push_flag, pop_flag = _FLAGS[(v, u)]
        if pop_flag in pops:  # this instruction already pops that queue: pop with a SYNC first
            self.syncs += 1
            relay = {pop_flag: True}
            # the SYNC inherits the pending pop; the instruction pops again below
            self._append(_Slot(Sync, {"target": _SYNC_TARGET[u]}, relay, unit=u, tag=self.tag))
            del pops[pop_flag]
            if self.vc[u, v] >= n:
                return
        idx = self.by_seq[v][n - 1]
        slot = self.slots[idx]
        q = (v, u)
        here = len(self.slots)
        inflight = sum(1 for _p, e in self.intervals[q] if e > idx)
        if slot.flags.get(push_flag) or inflight + 1 > self.depth:
            # push from a SYNC on unit v appended now (knows at least as much as instruction n)
            self.syncs += 1
            self._append(_Slot(Sync, {"target": _SYNC_TARGET[v]}, {}, unit=v, tag=self.tag))
            idx = len(self.slots) - 1
            slot = self.slots[idx]
            here = len(self.slots)
        slot.flags[push_flag] = True
        self.intervals[q].append((idx, here))
        if len(self.intervals[q]) > 64:
            self.intervals[q] = self.intervals[q][-32:]
        pops[pop_flag] = True
        self.vc[u] = np.maximum(self.vc[u], slot.vc)
