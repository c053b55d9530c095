"""Cycle model: timing of a golden-model trace on the accelerator's RTL (``hw/``), unit by unit.

The model replays the executed instructions (:class:`sim.golden.TraceEntry`) in program order
and keeps one timeline per block of the RTL, with the RTL's own rules (docs/architecture.md,
docs/dma.md):

* **AXI read channel.** One R channel serves instruction fetch and the load unit (the read
  arbiter); the DRAM answers a burst ``dram_latency`` cycles after its AR at the earliest, one
  beat per cycle, bursts one after the other (:class:`_ReadChannel`: first fit in time).
* **Dispatcher.** Fetch reads the program in 256-byte bursts (``FETCH_CHUNK_BYTES``) while the
  prefetch buffer (two bursts) has room; a bus narrower than a word assembles a word in
  ``128 / dma_data_bits + 1`` cycles. One word a cycle passes the decoder register into its
  unit's queue (``instr_fifo_depth`` deep; a full queue stalls dispatch). SETBASE and HALT run
  in the dispatcher; a run ends ``end_cycles`` after HALT once every unit is idle.
* **Load unit.** One instruction at a time: take, pop, execute, push (``unit_cycles``); DMACFG
  and SYNC only that. LOAD walks its rows one a cycle into a descriptor queue of
  ``max(LOAD_DESCRIPTORS, 2 * merge rows)`` rows (a row's descriptor frees when its data was
  assembled); at most ``LOAD_DESCRIPTORS`` (128) bursts are outstanding; whole rows of whole
  beats that follow each other in DRAM are merged into one read request (at most 4 KiB),
  other rows get one request each (``load_row_gap`` cycles apart); requests split into bursts
  at 4 KiB boundaries and 256 beats, a run's later bursts ``AR_BURST_GAP`` cycles apart.
  The assembler takes a cycle per beat in, a row of several beats too (a row of its own
  request that starts later in its first DRAM beat than in its first row beat costs one beat
  out more); a row of padding only needs no read but passes the descriptor queue and the
  assembler, and is written ``load_pad_done`` cycles after its request; an accumulator row is
  written only once a GEMM's result stream through its half has passed. LOADT reads its
  records in one request (BIAS) or one per table (PWL) and parses one field per cycle (two per
  bias entry, ``3 + 2 * S - 1`` per PWL table).
* **Store unit.** Rows leave the SRAM one a cycle (at most ``STORE_READ_AHEAD`` ahead of the W
  channel); rows of whole beats that follow each other in DRAM share one write request (up to
  16 rows; a row that cannot join is read a cycle late, after the pending request left), other
  rows get one request each; W beats one a cycle; at most ``STORE_BURSTS`` bursts
  wait for their B response, which the DRAM gives ``write_latency`` cycles after the last W
  beat. The STORE completes with its last B response. A scratchpad bank has one read port,
  shared round robin by the STORE and the GEMM's operand and weight reads: a row read waits
  ``store_bank_wait`` cycles while a GEMM streams operands from the bank it reads (inside a
  weight window, as often as the preloads read there); the GEMM's operand stream loses
  ``gemm_store_wait`` cycles per STORE read of its bank while it streams, at most one per
  operand row, whichever of the two comes first in program order (a STORE booked after the
  GEMMs moves the compute unit's later events).
* **Compute unit.** Issue takes ``compute_issue_cycles`` per instruction (check, decide, wait
  for tokens, descriptor-queue room, retire-queue room and the EPI interlock). GEMM: each
  weight block preloads in ``rows`` cycles (``cols`` transposed) behind the previous block's
  stream (double-buffered weights, also across GEMMs), then streams ``m`` operand rows; the
  GEMM completes ``rows + cols + 5 + gemm_tail`` cycles after its last row entered.
  EPI: one at a time in its slot; it runs once every earlier GEMM completed, one row a cycle,
  ``epi_tail`` cycles of pipeline; a GEMM whose rows meet the EPI's waits for it (interlock); a
  later GEMM accumulating into an accumulator half the EPI uses delays it ``epi_bank_wait``
  cycles per result row of the overlap.
  Instructions retire, and push their tokens, in program order (a 4-entry retire queue).
* **Tokens.** A pop waits until the matching push happened (``token_cycles`` later).

Stalls are attributed to their cause: a unit waiting for a token is stalled on that token queue;
one waiting for its next instruction is starved; the dispatcher stalls on a full queue. PE
utilisation is array MACs / (rows * cols * total cycles). The constants of :class:`CycleParams`
that are not fixed by the RTL's structure are fitted to the RTL's counters by
``scripts/calibrate_cycle_model.py`` (``make calibrate``; stored in
``sim/cycle_calibration.json`` with the programs and errors of that fit).
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from hw.isa import (
    TOKEN_POPS,
    TOKEN_PUSHES,
    TOKEN_QUEUES,
    WORD_BITS,
    WORD_BYTES,
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    GemmMode,
    Load,
    Loadt,
    MemSpace,
    Setbase,
    Store,
    TableKind,
    Unit,
    pwl_table_bytes,
)
from sim.golden import TraceEntry

__all__ = [
    "ARRAY_LATENCY_EXTRA",
    "CycleParams",
    "CycleReport",
    "TimelineEntry",
    "UnitStats",
    "estimate_cycles",
    "gemm_cycles",
]

#: The systolic array's row latency is ``rows + cols + ARRAY_LATENCY_EXTRA`` (docs/architecture.md).
ARRAY_LATENCY_EXTRA = 5
#: Dispatcher fetch burst (hw.dispatcher.FETCH_CHUNK_BYTES) and prefetch buffer (two bursts).
FETCH_CHUNK_BYTES = 256
#: Load unit: read bursts in flight (LoadUnit max_outstanding) and rows per merged request.
LOAD_DESCRIPTORS = 128
LOAD_MERGE_ROWS = 256
#: A pending run is requested while fewer rows than this are requested and not yet written.
LOAD_LOW_WATER = 64
#: Longest merged DMA request (load and store units) and the AXI page.
MERGE_BYTES = 4096
AXI_PAGE = 4096
AXI_MAX_BEATS = 256
#: Cycles between the AR handshakes of one request's bursts (the burst splitter sizes each
#: later burst in the cycle after its predecessor left; hw/dma.py).
AR_BURST_GAP = 2
#: Store unit: rows read ahead of the W channel, bursts awaiting B (StoreUnit defaults).
STORE_READ_AHEAD = 16
STORE_BURSTS = 32
#: Compute unit: retire queue and GEMM descriptor queue depths (hw.compute_unit).
RETIRE_DEPTH = 4
GEMM_DESCRIPTORS = 2

#: Where ``scripts/calibrate_cycle_model.py`` stores the constants fitted to the RTL.
CALIBRATION_FILE = Path(__file__).with_name("cycle_calibration.json")


def _calibrated(name: str, default):
    try:
        return json.loads(CALIBRATION_FILE.read_text())["params"].get(name, default)
    except FileNotFoundError:
        return default


@dataclass(frozen=True)
class CycleParams:
    """Timing constants not fixed by the config: the memory's latencies, and the small
    per-block cycle counts the calibration measures on the RTL (module docstring).

    Attributes
    ----------
    dram_latency : int
        DRAM read latency: cycles from an AR handshake to its first R beat (beyond one).
    write_latency : int or None
        Cycles from a burst's last W beat to its B response (``None``: ``dram_latency``).
    fetch_start : int
        Cycles from start to the first fetch AR.
    decode_cycles : int
        Cycles from a word's last beat to its dispatch into a queue.
    queue_cycles : int
        Cycles from dispatch until the unit can take the word from its queue.
    end_cycles : int
        Cycles from the last unit's finish (or HALT's dispatch) to DONE.
    unit_cycles : int
        Cycles a load/store instruction spends outside its transfer (take, pop, execute, push).
    load_start : int
        Cycles from a LOAD's take to its first row at the request stage.
    load_row_gap : int
        Cycles between the rows of a LOAD's walk (one read request each).
    load_ar : int
        Cycles from a request to its AR handshake.
    load_row_done : int
        Cycles from a row's last R beat to its descriptor freeing (row written).
    load_pad_done : int
        Cycles from a padding-only row's request to its write (it needs no read, but passes
        the descriptor queue, the assembler and the write slice like a row with data).
    load_end : int
        Cycles from the last row written to the push.
    loadt_start : int
        Cycles from a LOADT's take to its AR.
    loadt_end : int
        Cycles from its last parsed field to the push.
    store_start : int
        Cycles from a STORE's take to its first row read.
    store_row_gap : int
        Cycles between the rows of a STORE whose rows are not merged.
    store_w : int
        Cycles from a row's SRAM read to its first W beat.
    store_end : int
        Cycles from the last B response to the push.
    store_bank_wait : int
        Cycles a STORE's scratchpad row read waits while a GEMM streams from the same bank (the
        bank's one read port serves both in turn).
    gemm_store_wait : int
        Cycles a GEMM's operand stream loses per STORE row read from a scratchpad bank it
        streams from while it streams (the other side of ``store_bank_wait``, for STOREs booked
        before the GEMM).
    compute_issue_cycles : int
        Cycles the compute unit's issue stage spends per instruction.
    gemm_start : int
        Cycles from a GEMM's issue to its first weight row at the array.
    gemm_tail : int
        Cycles beyond the array's latency from the last operand row to the GEMM's completion.
    gemm_block_extra : int
        Cycles added per weight block beyond ``m + rows`` (``m + cols`` transposed).
    gemm_overlap : int
        Cycles (at most ``rows - 1``) the first block change of a stream of blocks overlaps
        the next block's preload with the current block's operand rows.
    epi_start : int
        Cycles from an EPI's start (slot and GEMMs free) to its first row.
    epi_tail : int
        Pipeline cycles of an EPI after its last row.
    epi_bank_wait : int
        Cycles an EPI loses per result row of a later GEMM that accumulates into the same
        accumulator half while the EPI runs (the GEMM's result port has priority there).
    retire_cycles : int
        Cycles from completion to retirement (token push).
    token_cycles : int
        Cycles from a push to a pop of the same token.
    """

    dram_latency: int = _calibrated("dram_latency", 60)
    write_latency: int | None = _calibrated("write_latency", None)
    fetch_start: int = _calibrated("fetch_start", 2)
    decode_cycles: int = _calibrated("decode_cycles", 2)
    queue_cycles: int = _calibrated("queue_cycles", 2)
    end_cycles: int = _calibrated("end_cycles", 3)
    unit_cycles: int = _calibrated("unit_cycles", 4)
    load_start: int = _calibrated("load_start", 6)
    load_row_gap: int = _calibrated("load_row_gap", 2)
    load_ar: int = _calibrated("load_ar", 1)
    load_row_done: int = _calibrated("load_row_done", 2)
    load_pad_done: int = _calibrated("load_pad_done", 2)
    load_end: int = _calibrated("load_end", 2)
    loadt_start: int = _calibrated("loadt_start", 6)
    loadt_end: int = _calibrated("loadt_end", 2)
    store_start: int = _calibrated("store_start", 4)
    store_row_gap: int = _calibrated("store_row_gap", 1)
    store_w: int = _calibrated("store_w", 4)
    store_end: int = _calibrated("store_end", 2)
    store_bank_wait: int = _calibrated("store_bank_wait", 1)
    gemm_store_wait: int = _calibrated("gemm_store_wait", 1)
    compute_issue_cycles: int = _calibrated("compute_issue_cycles", 4)
    gemm_start: int = _calibrated("gemm_start", 4)
    gemm_tail: int = _calibrated("gemm_tail", 7)
    gemm_block_extra: int = _calibrated("gemm_block_extra", 0)
    gemm_overlap: int = _calibrated("gemm_overlap", 5)
    epi_start: int = _calibrated("epi_start", 4)
    epi_tail: int = _calibrated("epi_tail", 20)
    epi_bank_wait: int = _calibrated("epi_bank_wait", 1)
    retire_cycles: int = _calibrated("retire_cycles", 1)
    token_cycles: int = _calibrated("token_cycles", 1)

    @classmethod
    def assumed(cls) -> CycleParams:
        """The structural defaults before calibration (every fitted constant at its hand-set
        value)."""
        return cls(**_HAND_SET)

    @property
    def write_cycles(self) -> int:
        """The write latency in use."""
        return self.dram_latency if self.write_latency is None else self.write_latency

    def to_dict(self) -> dict:
        """The constants by name (what the calibration file stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_HAND_SET = dict(dram_latency=60, write_latency=None, fetch_start=2, decode_cycles=2,
                 queue_cycles=2, end_cycles=3, unit_cycles=4, load_start=6, load_row_gap=2,
                 load_ar=1, load_row_done=2, load_pad_done=2, load_end=2, loadt_start=6,
                 loadt_end=2,
                 store_start=4, store_row_gap=1, store_w=4, store_end=2, store_bank_wait=1,
                 gemm_store_wait=1,
                 compute_issue_cycles=4, gemm_start=4, gemm_tail=7, gemm_block_extra=0,
                 gemm_overlap=5, epi_start=4, epi_tail=20, epi_bank_wait=1, retire_cycles=1,
                 token_cycles=1)


@dataclass
class UnitStats:
    """Per-unit counters."""

    instructions: int = 0
    busy: int = 0
    stalls: dict[str, int] = field(default_factory=dict)

    def stall(self, cause: str, cycles: int) -> None:
        """Add ``cycles`` of stall attributed to ``cause``."""
        if cycles > 0:
            self.stalls[cause] = self.stalls.get(cause, 0) + cycles


@dataclass(frozen=True)
class TimelineEntry:
    """When one instruction was dispatched, started and finished (cycles)."""

    pc: int
    unit: str
    mnemonic: str
    dispatched: int
    start: int
    finish: int


@dataclass
class CycleReport:
    """Result of :func:`estimate_cycles`."""

    total_cycles: int
    macs: int
    peak_macs_per_cycle: int
    units: dict[str, UnitStats]
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def utilisation(self) -> float:
        """Array MACs / (peak MACs per cycle * total cycles)."""
        if self.total_cycles == 0:
            return 0.0
        return self.macs / (self.peak_macs_per_cycle * self.total_cycles)

    def format_timeline(self, limit: int | None = None) -> str:
        """The first ``limit`` timeline entries as a table."""
        rows = [
            f"{'word':>6s} {'unit':<9s} {'op':<8s} {'dispatch':>9s} {'start':>9s} {'finish':>9s}"
        ]
        for e in self.timeline[:limit]:
            rows.append(
                f"{e.pc:>6d} {e.unit:<9s} {e.mnemonic:<8s} {e.dispatched:>9d} "
                f"{e.start:>9d} {e.finish:>9d}"
            )
        return "\n".join(rows)

    def summary(self) -> str:
        """Multi-line human-readable summary."""
        lines = [
            f"total cycles      {self.total_cycles}",
            f"array MACs        {self.macs}",
            f"PE utilisation    {100 * self.utilisation:.2f} %",
        ]
        for name, u in self.units.items():
            stalls = ", ".join(f"{k} {v}" for k, v in sorted(u.stalls.items())) or "none"
            lines.append(
                f"{name:<9s} instr {u.instructions:>6d}  busy {u.busy:>9d}  stalls: {stalls}"
            )
        return "\n".join(lines)


def gemm_cycles(
    config: AcceleratorConfig, m: int, k_tiles: int, n_tiles: int, *, transpose: bool = False
) -> int:
    """Duration of one GEMM on an idle array: its blocks' preloads and operand streams plus the
    array's latency (the compute unit adds its own issue and pipeline cycles, see
    :class:`CycleParams`).

    ``preload + (blocks - 1) * max(m, preload) + m + rows + cols + ARRAY_LATENCY_EXTRA`` with
    ``blocks = n_tiles * k_tiles`` and ``preload = rows`` (``cols`` when ``transpose``): the first
    weight block is preloaded, every further preload hides behind the previous block's stream of
    ``m`` operand rows, and the last row's results leave after the array's row latency.
    """
    for name, v in (("m", m), ("k_tiles", k_tiles), ("n_tiles", n_tiles)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"gemm_cycles: {name} must be an integer >= 1, got {v!r}")
    blk = config.cols if transpose else config.rows
    blocks = n_tiles * k_tiles
    return (
        blk + (blocks - 1) * max(m, blk) + m + config.rows + config.cols + ARRAY_LATENCY_EXTRA
    )


class _ReadChannel:
    """The shared AXI R channel: bursts of beats, one beat a cycle, placed first fit in time
    (the DRAM serves bursts in AR order; the model books them as it meets them)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def book(self, earliest: int, beats: int) -> int:
        """Book ``beats`` consecutive cycles from ``earliest`` on; return the first cycle."""
        starts, ends = self.starts, self.ends
        if not ends or earliest > ends[-1]:  # after everything booked (the common case)
            starts.append(earliest)
            ends.append(earliest + beats)
            if len(starts) > 512:
                del starts[:256], ends[:256]
            return earliest
        if earliest >= starts[-1]:  # within or right after the last booking: extend it
            t = ends[-1]
            ends[-1] = t + beats
            return t
        i = bisect.bisect_right(ends, earliest)
        t = earliest
        while i < len(starts):
            if t + beats <= starts[i]:
                break
            t = max(t, ends[i])
            i += 1
        # merge with neighbours to keep the lists short
        if i > 0 and ends[i - 1] == t:
            ends[i - 1] = t + beats
            if i < len(starts) and starts[i] == t + beats:
                ends[i - 1] = ends[i]
                del starts[i], ends[i]
        elif i < len(starts) and starts[i] == t + beats:
            starts[i] = t
        else:
            starts.insert(i, t)
            ends.insert(i, t + beats)
        if len(starts) > 512:  # forget the distant past
            del starts[:256], ends[:256]
        return t


def _bursts(addr: int, nbytes: int, bw: int) -> list[int]:
    """Beats of each AXI burst of a request (beat-aligned, 256 beats, 4 KiB pages)."""
    a = addr - addr % bw
    beats = -(-(addr % bw + nbytes) // bw)
    out = []
    while beats:
        page = (AXI_PAGE - a % AXI_PAGE) // bw
        n = min(beats, page, AXI_MAX_BEATS)
        out.append(n)
        beats -= n
        a += n * bw
    return out


class _Machine:
    """The state of one replay (see the module docstring)."""

    def __init__(self, cfg: AcceleratorConfig, p: CycleParams, prog_words: int) -> None:
        self.cfg, self.p = cfg, p
        self.prog_words = prog_words
        self.bw = cfg.dma_data_bits // 8
        self.rch = _ReadChannel()
        self.bases = [0, 0, 0, 0]
        self.slots: dict[int, Dmacfg] = {}
        # GEMM reads of the scratchpad: (first preload, first operand row, end of the operand
        # stream, bank mask of the operands, bank mask of the weights, the preloads' share of
        # the cycles from the first preload to the stream's end)
        self.spad_reads: list[tuple[int, int, int, int, int, float]] = []
        # STORE row reads of the scratchpad: per bank, the cycles of its reads (ascending)
        self.store_reads: dict[int, list[int]] = {}
        # what the last STORE took from GEMM operand streams booked before it: (from, cycles)
        self.port_theft: tuple[int, int] = (0, 0)
        # GEMM result streams: (first result row, end, bit mask of the accumulator halves)
        self.acc_streams: list[tuple[int, int, int]] = []
        # dispatcher
        self.word_beats = max(1, WORD_BITS // cfg.dma_data_bits)
        self.words_per_beat = max(1, cfg.dma_data_bits // WORD_BITS)
        self.chunk_words = FETCH_CHUNK_BYTES // WORD_BYTES
        self.word_ready: dict[int, int] = {}  # word index -> cycle its beats are in the buffer
        self.chunk_ar: list[int] = []
        self.word_out: list[int] = []  # cycle each word left the prefetch buffer
        self.last_dispatch = -1

    # ---------------------------------------------------------------- fetch and dispatch

    def _fetch_chunk(self, k: int) -> None:
        p, cw = self.p, self.chunk_words
        t = p.fetch_start
        if self.chunk_ar:
            t = max(t, self.chunk_ar[-1] + 1)
        if k >= 2:  # the prefetch buffer holds two bursts: chunk k - 2 must have left it
            t = max(t, self.word_out[(k - 1) * cw - 1] + 1)
        self.chunk_ar.append(t)
        words = min(cw, self.prog_words - k * cw)  # bursts never reach past the program
        beats = -(-words * WORD_BYTES // self.bw)
        first = self.rch.book(t + 1 + p.dram_latency, beats)
        for j in range(cw):
            beat = (j + 1) * self.word_beats // self.words_per_beat if self.words_per_beat == 1 \
                else j // self.words_per_beat + 1
            self.word_ready[k * cw + j] = first + beat

    def word_available(self, w: int) -> int:
        """Cycle word ``w`` can enter the decoder register."""
        k = w // self.chunk_words
        while len(self.chunk_ar) <= k:
            self._fetch_chunk(len(self.chunk_ar))
        t = self.word_ready.pop(w)
        # a narrow bus assembles each word (one beat a cycle, one cycle to hand it over)
        gap = self.word_beats + 1 if self.word_beats > 1 else 1
        if self.word_out:
            t = max(t, self.word_out[-1] + gap)
        return t

    def word_left(self, w: int, t: int) -> None:
        self.word_out.append(t)

    # ---------------------------------------------------------------- scratchpad read ports

    def store_read(self, bank: int, t: int) -> None:
        """Record a STORE's row read of scratchpad bank ``bank`` in cycle ``t``."""
        reads = self.store_reads.setdefault(bank, [])
        if reads and t < reads[-1]:
            bisect.insort(reads, t)
        else:
            reads.append(t)
        if len(reads) > 65536:  # forget the distant past
            del reads[:32768]

    def operand_port_delay(self, banks: int, start: int, end: int, rows: int) -> int:
        """Cycles a GEMM's operand stream ``[start, end)`` from scratchpad banks ``banks`` (bit
        mask) loses to STORE reads booked before it: the bank's read port serves its clients
        round robin, so every STORE read in the stream takes a cycle from it, and at most one
        between two operand rows (at most ``rows``). The stream grows by what it lost, which
        can meet more reads: the count is taken to its fixed point."""
        if not self.p.gemm_store_wait or not self.store_reads:
            return 0
        lists = [r for b, r in self.store_reads.items() if banks >> b & 1 and r
                 and r[-1] >= start]
        if not lists:
            return 0
        return _stream_loss(lists, start, end, self.p.gemm_store_wait, rows)


def _load_rows(m: _Machine, ins: Load) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per destination row: DRAM start of its valid bytes (-1: padding only), their count,
    whether the whole row comes from DRAM, the row's byte count, and where in the row the valid
    bytes start."""
    g = m.slots.get(ins.geom)
    esize = 4 if ins.mem == MemSpace.ACC else 1
    row_bytes = ins.length * esize
    n = ins.outer * ins.inner
    if g is None:  # golden model would have faulted; treat as one contiguous run
        starts = m.bases[ins.base] + ins.offset + np.arange(n, dtype=np.int64) * row_bytes
        return (starts, np.full(n, row_bytes, np.int64), np.ones(n, bool), row_bytes,
                np.zeros(n, np.int64))
    i = np.repeat(np.arange(ins.outer, dtype=np.int64), ins.inner)
    j = np.tile(np.arange(ins.inner, dtype=np.int64), ins.outer)
    y = ins.y0 + i * g.sy
    x = ins.x0 + j * g.sx
    xp = x * g.pix
    lo = np.where(x < 0, (-xp + esize - 1) // esize, 0)
    hi = np.where(g.width * g.pix - xp > 0, (g.width * g.pix - xp + esize - 1) // esize, 0)
    lo = np.minimum(lo, ins.length)
    hi = np.minimum(hi, ins.length)
    valid_y = (y >= 0) & (y < g.height)
    has = valid_y & (lo < hi)
    start = m.bases[ins.base] + ins.offset + y * g.pitch + xp + lo * esize
    nbytes = np.where(has, (hi - lo) * esize, 0)
    full = has & (lo == 0) & (hi == ins.length)
    return np.where(has, start, -1), nbytes, full, row_bytes, lo * esize


def _load_transfer(m: _Machine, ins: Load, t0: int) -> int:
    """Cycle the LOAD's last row is written, for a LOAD popped at ``t0``.

    The walk issues one row every ``load_row_gap`` cycles into a descriptor queue of
    ``max(LOAD_DESCRIPTORS, 2 * merge rows)`` rows (a descriptor frees when its row is written);
    at most :data:`LOAD_DESCRIPTORS` bursts are outstanding.
    Whole rows of whole beats that follow each other in DRAM join a pending run (at most
    :data:`MERGE_BYTES` and ``min(LOAD_MERGE_ROWS, MERGE_BYTES / beat)`` rows) while at least
    :data:`LOAD_LOW_WATER` rows are requested and not yet written; otherwise the run is requested
    and the row starts the next one (hw/load_unit.py). Other rows are one request each, a cycle
    after a pending run goes. The assembler takes ``max(beats in, beats out + 1)`` cycles per
    request row of its own (``max(beats in, beats out)`` when the row starts no later in its
    first DRAM beat than in its first row beat) and, inside a run, one cycle per beat in (a
    row of several beats too: 4 cycles a 4-beat accumulator row on ``default``, 2 a 2-beat row
    on ``tiny``, docs/simulation.md), and writes a row ``load_row_done`` after its last beat;
    while it is busy the R channel waits.
    A row of padding only is written ``load_pad_done`` cycles after its request.
    """
    p, bw = m.p, m.bw
    starts, nbytes, full, row_bytes, lo_bytes = _load_rows(m, ins)
    # Accumulator rows: a GEMM's result stream has its half's port first (it writes every
    # row, and reads it too when it accumulates), so a row write waits for the stream to pass.
    busy = []
    if ins.mem == MemSpace.ACC:
        m.acc_streams[:] = [g for g in m.acc_streams if g[1] > t0]
        busy = [g for g in m.acc_streams
                if g[2] & _acc_halves(m.cfg, ins.dst, ins.outer * ins.inner)]

    def acc_free(when: int, r: int) -> int:
        if busy:
            bit = 1 << ((ins.dst + r) // max(1, m.cfg.accumulator_rows // 2))
            for g0, g1, mask in busy:
                if g0 <= when < g1 and mask & bit:
                    when = g1
        return when

    merge_ok = row_bytes % bw == 0
    starts, nbytes, full = starts.tolist(), nbytes.tolist(), full.tolist()
    lo_bytes = lo_bytes.tolist()
    n = len(starts)
    done = [0] * n
    lat = 1 + p.dram_latency
    merge_rows = max(1, min(LOAD_MERGE_ROWS, MERGE_BYTES // bw))
    window = max(LOAD_DESCRIPTORS, 2 * merge_rows)
    t = t0 + p.load_start - p.load_row_gap
    last_done = t0
    requested = 0  # rows 0..requested-1 have been requested (their `done` is known)
    written = 0  # rows 0..written-1 are written by the current cycle
    run: list[int] | None = None  # pending run: [first row, rows, DRAM start, bytes]
    burst_end: list[int] = []  # last R beat of every burst requested, in order

    def request_slot(now: int) -> int:
        """First cycle from ``now`` with fewer than LOAD_DESCRIPTORS bursts outstanding."""
        if len(burst_end) >= LOAD_DESCRIPTORS:
            return max(now, burst_end[-LOAD_DESCRIPTORS] + 1)
        return now

    def in_flight(now: int) -> int:
        nonlocal written
        while written < requested and done[written] <= now:
            written += 1
        return requested - written

    def issue_run(now: int) -> None:
        nonlocal last_done, requested, run
        first, rows, addr, nb = run
        ar = request_slot(now) + p.load_ar
        beat_at = []  # cycle of each R beat of the run
        for b in _bursts(addr, nb, bw):
            s0 = m.rch.book(ar + lat, b)
            beat_at.extend(range(s0, s0 + b))
            burst_end.append(s0 + b - 1)
            ar += AR_BURST_GAP
        k = addr % bw  # an unaligned run has one more beat in than out
        for r in range(first, first + rows):
            beats = (k + nbytes[r] + bw - 1) // bw
            k = (k + nbytes[r]) % bw
            last_beat = (starts[r] - addr + nbytes[r] - 1 + addr % bw) // bw
            last = beat_at[min(len(beat_at) - 1, last_beat)]
            # one cycle per beat in: the run is one realigner transfer, and the assembler
            # takes a beat a cycle, a row's last one too (an unaligned run's row that spans
            # one more beat in than out costs that beat)
            last_done = done[r] = acc_free(
                max(last_done + beats, last + 1 + p.load_row_done), r)
        requested = first + rows
        run = None

    for r in range(n):
        t += p.load_row_gap
        if r >= window and done[r - window] > t:
            if run is not None:
                issue_run(t)
            t = done[r - window]
        a = starts[r]
        if run is not None and (a < 0 or not (merge_ok and full[r])):
            issue_run(t)  # the pending run goes first; this row a cycle later
            t += 1
        if a < 0:  # padding only: no read; the row passes the descriptor queue and assembler
            last_done = done[r] = acc_free(max(last_done + 1, t + p.load_pad_done), r)
            requested = r + 1
            continue
        nb = nbytes[r]
        if merge_ok and full[r]:
            if (run is not None and a == run[2] + run[3] and run[3] + nb <= MERGE_BYTES
                    and run[1] < merge_rows and in_flight(t) >= LOAD_LOW_WATER):
                run[1] += 1
                run[3] += nb
                continue
            if run is not None:
                issue_run(t)
            run = [r, 1, a, nb]
            continue
        t = request_slot(t)
        ar = t + p.load_ar
        beats = (a % bw + nb + bw - 1) // bw  # R beats in
        # the realigner takes an input beat a cycle; when the run starts later in its first
        # DRAM beat than in its first row beat it reads one beat ahead (one cycle more):
        # max(beats in, beats out + 1) cycles per row then, else max(beats in, beats out)
        so, do = a % bw, lo_bytes[r] % bw
        cost = max(beats, (do + nb + bw - 1) // bw + (so > do))
        if a % AXI_PAGE + nb <= AXI_PAGE and beats <= AXI_MAX_BEATS:  # one burst
            end = m.rch.book(ar + lat, cost) + beats
            burst_end.append(end - 1)
        else:
            bursts = _bursts(a, nb, bw)
            for k, b in enumerate(bursts):
                extra = cost - beats if k == len(bursts) - 1 else 0
                end = m.rch.book(ar + lat, b + extra) + b
                burst_end.append(end - 1)
                ar += AR_BURST_GAP
        last_done = done[r] = acc_free(max(last_done + cost, end + p.load_row_done), r)
        requested = r + 1
    if run is not None:
        t += 1
        issue_run(t)
    return max(last_done, t) + p.load_end


def _loadt_transfer(m: _Machine, ins: Loadt, t0: int) -> int:
    p, bw, cfg = m.p, m.bw, m.cfg
    addr = m.bases[ins.base] + ins.offset
    if ins.kind == TableKind.BIAS:
        requests = [(addr, 8 * ins.count, 2 * ins.count)]
    else:
        tb = pwl_table_bytes(cfg.pwl_segments)
        fields_ = 4 + (cfg.pwl_segments - 1) + 2 * cfg.pwl_segments + 1
        requests = [(addr + k * tb, tb, fields_) for k in range(ins.count)]
    t = t0 + p.loadt_start
    parsed = t
    for a, nb, nfields in requests:
        s = t + p.load_ar
        first = None
        for b in _bursts(a, nb, bw):
            got = m.rch.book(s + 1 + p.dram_latency, b)
            first = got if first is None else first
            s += AR_BURST_GAP
        parsed = max(parsed, first) + nfields
        t += 1
    return parsed + p.loadt_end


def _store_transfer(m: _Machine, ins: Store, t0: int) -> int:
    """Cycle the STORE's last B response arrives, for a STORE popped at ``t0``.

    Rows are read one a cycle, at most :data:`STORE_READ_AHEAD` ahead of the W channel. Rows of
    whole beats that follow each other in DRAM join one write request while a row is read in
    every cycle; the request goes when a cycle passes without one (in practice when the
    read-ahead is full), and its W beats follow ``store_w`` cycles later; a row that cannot
    join (not next in DRAM, or the run is full) is read a cycle later than one a cycle: the
    unit's issue waits for the pending request to leave (hw/store_unit.py). Other rows get one
    request each, ``store_row_gap`` cycles apart on the W channel. At most
    :data:`STORE_BURSTS` bursts wait for their B response, ``write_latency`` after their last
    W beat.
    """
    p, bw = m.p, m.bw
    esize = 4 if ins.mem == MemSpace.ACC else 1
    row_bytes = ins.length * esize
    row_beats = -(-row_bytes // bw)
    base = m.bases[ins.base] + ins.offset
    whole = row_bytes % bw == 0
    wl = p.write_cycles
    n = ins.rows * ins.tiles
    w_done = [0] * n  # cycle each row's last W beat left (frees its read-ahead slot)
    b_times: deque[int] = deque()
    last_b = t0
    w_free = 0

    def write(addr: int, nb: int, start: int, rows: range, extra: int) -> None:
        nonlocal last_b, w_free
        tw = max(start, w_free)
        k = rows.start
        sent = 0
        for b in _bursts(addr, nb, bw):
            if len(b_times) >= STORE_BURSTS:
                tw = max(tw, b_times.popleft())
            first = tw
            tw += b + extra
            sent += b
            while k < rows.stop and (k - rows.start + 1) * row_beats <= sent:
                w_done[k] = min(tw, first + (k - rows.start + 1) * row_beats - (sent - b))
                k += 1
            b_times.append(tw + wl + 1)
            last_b = max(last_b, tw + wl + 1)
        w_free = tw

    # GEMMs streaming from a bank this STORE reads share its one read port (round robin): a
    # row read inside an operand stream from its bank waits; inside a weight window it waits
    # as often as the preloads read there (their share of the window)
    per = m.cfg.scratchpad_rows // m.cfg.scratchpad_banks
    m.spad_reads[:] = [g for g in m.spad_reads if g[2] > t0]
    shared = []
    if ins.mem == MemSpace.SPAD:
        banks = _bank_mask(m.cfg, ins.src, n)
        shared = [g for g in m.spad_reads if (g[3] | g[4]) & banks]
    share = 0.0  # preload reads met so far, in rows
    mine: dict[int, list[int]] = {}  # this STORE's reads by bank, in cycle order
    t = t0 + p.store_start - 1
    run = None  # open merged run: [first row, addr, next addr, bytes]
    r = 0
    for i in range(ins.rows):
        for u in range(ins.tiles):
            a = base + i * ins.stride + u * row_bytes
            ready = t + 1
            if r >= STORE_READ_AHEAD:
                if run is not None and r - STORE_READ_AHEAD >= run[0]:
                    # the read-ahead is full of the open run: it goes now
                    write(run[1], run[3], ready + p.store_w, range(run[0], r), 0)
                    run = None
                ready = max(ready, w_done[r - STORE_READ_AHEAD])
            # this row continues the open run in DRAM and the run has room for it
            fits = run is not None and a == run[2] and run[3] + row_bytes <= MERGE_BYTES
            if whole and run is not None and not fits:
                # the row cannot join: the run's request leaves before this row's read (the
                # unit's issue waits a cycle for it)
                ready = max(ready, t + 2)
            bank = (ins.src + u * ins.rows + i) // per  # row i of tile u
            if shared:
                bit = 1 << bank
                if any(g0 <= ready < g1 and a_mask & bit
                       for _w0, g0, g1, a_mask, _wm, _d in shared):
                    ready += p.store_bank_wait
                else:
                    share += sum(d for w0, _g0, w1, _am, w_mask, d in shared
                                 if w0 <= ready < w1 and w_mask & bit)
                    if share >= 1:
                        share -= 1
                        ready += p.store_bank_wait
            if ins.mem == MemSpace.SPAD:
                m.store_read(bank, ready)
                mine.setdefault(bank, []).append(ready)
            if whole:
                if not (fits and ready == t + 1):
                    if run is not None:
                        write(run[1], run[3], t + 1 + p.store_w, range(run[0], r), 0)
                    run = [r, a, a, 0]
                run[2] += row_bytes
                run[3] += row_bytes
            else:
                write(a, row_bytes, ready + p.store_w, range(r, r + 1), p.store_row_gap)
            t = ready
            r += 1
    if run is not None:
        write(run[1], run[3], t + 1 + p.store_w, range(run[0], n), 0)
    m.port_theft = _operand_stream_theft(m, shared, mine)
    return max(last_b, t) + p.store_end


def _stream_loss(reads: list[list[int]], start: int, end: int, wait: int, cap: int) -> int:
    """Cycles an operand stream ``[start, end)`` loses to the STORE reads ``reads`` (lists of
    cycles, ascending) of its banks: ``wait`` per read inside it, at most ``cap``. The stream
    grows by what it lost, which can meet more reads: the count is taken to its fixed point."""
    lost = 0
    while True:
        seen = sum(bisect.bisect_left(r, end + lost) - bisect.bisect_left(r, start)
                   for r in reads)
        new = min(seen * wait, cap)
        if new <= lost:
            return lost
        lost = new


def _operand_stream_theft(m: _Machine, shared: list, reads: dict[int, list[int]]
                          ) -> tuple[int, int]:
    """``(first cycle, cycles)`` the operand streams of GEMMs booked before a STORE lose to its
    reads ``reads`` (per bank, ascending): the bank's port serves both in turn, so each STORE
    read inside an operand stream from its bank delays the stream (and everything after it on
    the array) by ``gemm_store_wait``, at most once per operand row. The streams are taken in
    time order, each shifted by what the earlier ones lost."""
    wait = m.p.gemm_store_wait
    if not wait or not reads:
        return 0, 0
    first, shift = None, 0
    for _w0, g0, g1, a_mask, _wm, _d in sorted(shared, key=lambda g: g[1]):
        lists = [r for b, r in reads.items() if a_mask >> b & 1]
        if not lists:
            continue
        s0 = g0 + shift
        lost = _stream_loss(lists, s0, g1 + shift, wait, g1 - g0)
        if lost:
            hit = min(r[i] for r in lists if (i := bisect.bisect_left(r, s0)) < len(r))
            first = hit if first is None else min(first, hit)
            shift += lost
    return (first, shift) if first is not None else (0, 0)


def estimate_cycles(
    trace: list[TraceEntry], config: AcceleratorConfig, params: CycleParams | None = None
) -> CycleReport:
    """Time ``trace`` (a golden-model run) on ``config``; see the module docstring for the model."""
    p = params or CycleParams()
    m = _Machine(config, p, len(trace))
    depth = config.instr_fifo_depth
    names = {Unit.DISPATCH: "dispatch", Unit.LOAD: "load", Unit.COMPUTE: "compute",
             Unit.STORE: "store"}
    stats = {names[u]: UnitStats() for u in Unit}
    free = dict.fromkeys(Unit, 0)  # cycle each unit can take its next instruction
    takes: dict[Unit, list[int]] = {u: [] for u in Unit}  # when each queued word was taken
    tokens: dict[str, deque[int]] = {q: deque() for q in TOKEN_QUEUES}
    timeline: list[TimelineEntry] = []
    macs = 0
    end = 0
    dispatch_t = -1
    # compute unit state
    retire_times: list[int] = []  # per compute instruction, in order
    gemm_done_all = 0  # completion of every GEMM issued so far
    gemm_stream_starts: list[int] = []
    gemm_stream_ends: list[int] = []
    fresh = False  # the array's stream began from idle and has had no block change yet
    last_block_start = -(10**9)
    array_free = 0  # when the array's operand stream is free
    epi_free = 0  # when the EPI slot frees
    epi_last: Epi | None = None
    # the last EPI: [first row cycle, completion, accumulator halves, its retire index, pushes]
    epi_run: list | None = None
    fin_units = dict.fromkeys(Unit, 0)
    ds = stats["dispatch"]

    def delay_compute(since: int, cycles: int) -> None:
        """Move every compute-unit event from cycle ``since`` on ``cycles`` later (a STORE
        booked after GEMMs took their operand streams' bank port): the array's stream, GEMM
        and EPI completions, retirements and the tokens not popped yet."""
        nonlocal gemm_done_all, array_free, last_block_start, epi_free, end

        def later(x):
            return x + cycles if x >= since else x

        gemm_done_all, array_free = later(gemm_done_all), later(array_free)
        last_block_start, epi_free = later(last_block_start), later(epi_free)
        for times in (retire_times, gemm_stream_starts, gemm_stream_ends):  # non-decreasing
            for k in range(bisect.bisect_left(times, since), len(times)):
                times[k] += cycles
        if epi_run is not None:
            epi_run[0], epi_run[1] = later(epi_run[0]), later(epi_run[1])
        for q in ("c2l", "c2s"):
            tokens[q] = deque(later(x) for x in tokens[q])
        m.spad_reads[:] = [(later(a), later(b), later(c), *g) for a, b, c, *g in m.spad_reads]
        m.acc_streams[:] = [(later(a), later(b), g) for a, b, g in m.acc_streams]
        fin_units[Unit.COMPUTE] = later(fin_units[Unit.COMPUTE])
        if retire_times:
            end = max(end, retire_times[-1])
    for w, t in enumerate(trace):
        ins = t.instr
        unit = ins.unit
        ds.instructions += 1
        avail = m.word_available(w)
        prev = max(dispatch_t, 0)
        d = max(avail + p.decode_cycles, dispatch_t + 1)
        ds.stall("fetch (waiting for a word)", d - 1 - prev)
        ds.busy += 1
        if unit != Unit.DISPATCH and len(takes[unit]) >= depth:
            room = takes[unit][-depth] + 1
            if room > d:
                ds.stall(f"{names[unit]} queue full", room - d)
                d = room
        m.word_left(w, d - p.decode_cycles)
        dispatch_t = d
        mnemonic = ins.OPCODE.name.lower()
        if unit == Unit.DISPATCH:
            if isinstance(ins, Setbase):
                m.bases[ins.reg] = ins.value
            timeline.append(TimelineEntry(t.pc, "dispatch", mnemonic, d, d, d))
            continue
        us = stats[names[unit]]
        us.instructions += 1
        ready = d + p.queue_cycles
        take = max(free[unit], ready)
        us.stall("starved (waiting for dispatch)", take - fin_units[unit])
        takes[unit].append(take)
        waits: list[tuple[int, int, str]] = []  # issue-stage waits of a compute instruction
        pops = [q for (u, flag), q in TOKEN_POPS.items() if u == unit and getattr(ins, flag)]
        pushes = [q for (u, flag), q in TOKEN_PUSHES.items() if u == unit and getattr(ins, flag)]
        if unit == Unit.COMPUTE:
            issue = take + p.compute_issue_cycles - 1
            for q in pops:
                avail_tok = tokens[q].popleft() + p.token_cycles
                if avail_tok > issue:
                    waits.append((issue, avail_tok, f"token {q}"))
                    issue = avail_tok
            n_prev = len(retire_times)
            if n_prev >= RETIRE_DEPTH:
                issue = max(issue, retire_times[n_prev - RETIRE_DEPTH] + 1)
            if isinstance(ins, Gemm):
                if len(gemm_stream_starts) >= GEMM_DESCRIPTORS:
                    issue = max(issue, gemm_stream_starts[-GEMM_DESCRIPTORS])
                if epi_last is not None and epi_free > issue and _rows_overlap(
                        config, ins, epi_last):
                    waits.append((issue, epi_free, "EPI interlock"))
                    issue = epi_free
                blk = config.cols if ins.transpose else config.rows
                blocks = ins.k_tiles * ins.n_tiles
                # Weight and operand rows in one scratchpad bank: the preload's reads take
                # turns with the operand stream (a block costs m + blk); in different banks
                # the preload hides behind the previous block's stream (max(m, blk)).
                w_rows = blocks * blk
                same_bank = _banks_meet(config, ins.w, w_rows, ins.a, ins.k_tiles * ins.m)
                period = (ins.m + blk if same_bank else max(ins.m, blk)) + p.gemm_block_extra
                overlap = min(p.gemm_overlap, blk - 1) if same_bank else 0
                t_idle = issue + p.gemm_start + blk
                if t_idle >= array_free + blk:  # the array idles: the preload is exposed
                    s0, fresh = t_idle, True
                elif same_bank:  # back to back with the previous GEMM's last block
                    s0 = max(t_idle, array_free + blk + p.gemm_block_extra
                             - (overlap if fresh else 0))
                    fresh = False
                else:
                    s0 = max(t_idle, array_free + p.gemm_block_extra, last_block_start + blk)
                    fresh = False
                last_start = s0
                if blocks > 1:
                    last_start = s0 + (blocks - 1) * period - (overlap if fresh else 0)
                    fresh = False
                stream_end = last_start + ins.m
                # STORE reads booked before this GEMM in a bank its operands stream from take
                # the bank's read port from the stream in turn
                lost = m.operand_port_delay(_bank_mask(config, ins.a, ins.k_tiles * ins.m), s0,
                                            stream_end, blocks * ins.m)
                last_start += lost
                stream_end += lost
                last_block_start = last_start
                array_free = stream_end
                gemm_stream_starts.append(s0)
                gemm_stream_ends.append(stream_end)
                m.spad_reads.append((s0 - blk, s0, stream_end,
                                     _bank_mask(config, ins.a, ins.k_tiles * ins.m),
                                     _bank_mask(config, ins.w, w_rows),
                                     w_rows / max(1, stream_end - s0 + blk)))
                complete = (stream_end + config.rows + config.cols + ARRAY_LATENCY_EXTRA
                            + p.gemm_tail)
                gemm_done_all = max(gemm_done_all, complete)
                lat = config.rows + config.cols + ARRAY_LATENCY_EXTRA
                m.acc_streams.append((s0 + lat, stream_end + lat,
                                      _acc_halves(config, ins.acc, ins.n_tiles * ins.m)))
                reads = 1.0 if ins.mode != GemmMode.OVERWRITE else (ins.k_tiles - 1) / ins.k_tiles
                if (epi_run is not None and reads > 0 and p.epi_bank_wait
                        and epi_run[2] & _acc_halves(config, ins.acc, ins.n_tiles * ins.m)):
                    # The GEMM's result port has the accumulator half first (it reads every
                    # row it accumulates into and writes every row): the running EPI's reads
                    # in that half wait while the GEMM's result rows pass.
                    r0 = s0 + config.rows + config.cols + ARRAY_LATENCY_EXTRA
                    r1 = stream_end + config.rows + config.cols + ARRAY_LATENCY_EXTRA
                    overlap = min(epi_run[1], r1) - max(epi_run[0], r0)
                    delay = round(max(0, overlap) * reads) * p.epi_bank_wait
                    if delay:
                        epi_run[1] += delay
                        epi_free += delay
                        k = epi_run[3]
                        old = retire_times[k]
                        retire_times[k] = old + delay
                        for j in range(k + 1, len(retire_times)):
                            retire_times[j] = max(retire_times[j], retire_times[j - 1] + 1)
                        for q in epi_run[4]:
                            if old in tokens[q]:  # not popped yet
                                tokens[q][tokens[q].index(old)] = old + delay
            elif isinstance(ins, Epi):
                if epi_free > issue:
                    waits.append((issue, epi_free, "EPI slot"))
                    issue = epi_free
                run = max(issue, gemm_done_all) + p.epi_start
                complete = run + ins.m * ins.n_tiles + p.epi_tail
                epi_free = complete
                epi_last = ins
                halves = _acc_halves(config, ins.src, ins.m * ins.n_tiles)
                if ins.dest == EpiDest.ACC:
                    halves |= _acc_halves(config, ins.dst, ins.m * ins.n_tiles)
                epi_run = [run, complete, halves, len(retire_times), pushes]
            else:  # SYNC
                complete = issue + 1
            retire = max(complete, retire_times[-1] + 1 if retire_times else 0) + p.retire_cycles
            retire_times.append(retire)
            for q in pushes:
                tokens[q].append(retire)
            free[unit] = issue + 1
            finish = retire
            start = issue
            # the unit overlaps instructions: count the union of [take, retire] once, and a
            # wait only where no earlier instruction keeps the unit busy
            cover = fin_units[unit]
            waited = 0
            for a, b, cause in waits:
                part = max(0, b - max(a, cover))
                us.stall(cause, part)
                waited += part
            us.busy += max(0, finish - max(take, cover)) - waited
        else:
            start = take + 1  # POP
            for q in pops:
                avail_tok = tokens[q].popleft() + p.token_cycles
                if avail_tok > start:
                    us.stall(f"token {q}", avail_tok - start)
                    start = avail_tok
            if isinstance(ins, Load):
                body = _load_transfer(m, ins, start)
            elif isinstance(ins, Loadt):
                body = _loadt_transfer(m, ins, start)
            elif isinstance(ins, Store):
                body = _store_transfer(m, ins, start)
                since, lost = m.port_theft
                if lost:
                    delay_compute(since, lost)
            else:  # DMACFG, SYNC
                if isinstance(ins, Dmacfg):
                    m.slots[ins.slot] = ins
                body = start + 1
            finish = body + 1  # PUSH
            for q in pushes:
                tokens[q].append(finish)
            us.busy += finish - start + 1
            free[unit] = finish + p.unit_cycles - 3
        fin_units[unit] = max(fin_units[unit], finish)
        macs += t.macs
        end = max(end, finish)
        timeline.append(TimelineEntry(t.pc, names[unit], mnemonic, d, start, finish))
    total = max(end, dispatch_t) + p.end_cycles
    return CycleReport(total, macs, config.peak_macs_per_cycle, stats, timeline)


def _acc_halves(cfg: AcceleratorConfig, first: int, count: int) -> int:
    """Bit mask of the accumulator halves (its two banks) holding rows ``first ..``."""
    half = max(1, cfg.accumulator_rows // 2)
    lo, hi = first // half, (first + max(count, 1) - 1) // half
    return ((1 << (hi - lo + 1)) - 1) << lo


def _bank_mask(cfg: AcceleratorConfig, first: int, count: int) -> int:
    """Bit mask of the scratchpad banks holding rows ``first .. first + count - 1``."""
    per = cfg.scratchpad_rows // cfg.scratchpad_banks
    lo, hi = first // per, (first + max(count, 1) - 1) // per
    return ((1 << (hi - lo + 1)) - 1) << lo


def _banks_meet(cfg: AcceleratorConfig, a0: int, an: int, b0: int, bn: int) -> bool:
    """Whether scratchpad rows ``a0 ..`` and ``b0 ..`` share a bank (bank = row // (rows /
    banks), hw.banked_memory)."""
    per = cfg.scratchpad_rows // cfg.scratchpad_banks
    return a0 // per <= (b0 + bn - 1) // per and b0 // per <= (a0 + an - 1) // per


def _rows_overlap(cfg: AcceleratorConfig, g: Gemm, e: Epi) -> bool:
    """Whether GEMM ``g`` touches rows the running EPI ``e`` reads or writes (the compute
    unit's interlock: accumulator rows against the EPI's source and ACC destination, scratchpad
    operand and weight rows against its SPAD destination)."""

    def meets(a0, an, b0, bn):
        return a0 < b0 + bn and b0 < a0 + an

    g_rows, e_rows = g.n_tiles * g.m, e.n_tiles * e.m
    blk = cfg.cols if g.transpose else cfg.rows
    if meets(g.acc, g_rows, e.src, e_rows):
        return True
    if e.dest == EpiDest.ACC and meets(g.acc, g_rows, e.dst, e_rows):
        return True
    if e.dest == EpiDest.SPAD:
        return (meets(g.w, g.n_tiles * g.k_tiles * blk, e.dst, e_rows)
                or meets(g.a, g.k_tiles * g.m, e.dst, e_rows))
    return False
