"""Cycle model: timing of a golden-model trace on the decoupled load / compute / store machine.

The model replays the executed instructions (:class:`sim.golden.TraceEntry`) in program order:

* **Dispatch.** The dispatcher fetches one 128-bit word every ``ceil(128 / dma_data_bits)``
  cycles and appends it to its unit's queue (depth ``instr_fifo_depth``); it stalls while that
  queue is full (an entry leaves the queue when its instruction starts). SETBASE and HALT are
  executed by the dispatcher itself.
* **Units.** Each unit runs its queue in order. An instruction starts when the unit is free, the
  instruction has been dispatched, and every token it pops has been pushed (a push happens when
  the pushing instruction completes). Token queues are FIFO.
* **DMA.** Loads use the AXI read channel, stores the write channel (independent in AXI4). A
  transfer costs ``dram_latency`` cycles plus one cycle per bus beat or per SRAM row written,
  whichever is larger (beats counted with alignment: a row starting at ``a`` with ``L`` bytes takes
  ``ceil(((a mod W) + L) / W)`` beats of ``W = dma_data_bits / 8`` bytes; padded rows cost no
  beats).
* **GEMM.** Each weight block is preloaded in ``rows`` cycles (``cols`` when transposed), double
  buffered behind the previous block's stream of ``m`` rows (a block occupies ``max(m, rows)``
  cycles); the last row's results leave ``rows + cols + 5`` cycles after it entered (the array's
  latency, ``docs/architecture.md``).
* **Banks.** Scratchpad bank conflicts are not modelled (assumed avoided by placement).
* **GEMM, measured.** ``gemm_extra`` cycles are added to each GEMM (the compute unit's sequencer
  and read-modify-write pipeline around the array; the RTL measures ``gemm_cycles + 7``).
* **EPI.** One accumulator row per cycle plus ``epi_latency`` pipeline cycles. With
  ``epi_overlap`` (the RTL's behaviour) an EPI occupies the compute unit's EPI slot, not the unit:
  it starts once every earlier GEMM has finished, and the next GEMM starts alongside it unless
  their rows overlap (the unit's row-range interlock); the next EPI waits for the slot. Tokens
  are still pushed in program order.
* **DMACFG, SYNC.** One cycle on their unit (a register write; a token relay).

Stalls are attributed to their cause: a unit that is free but waits for a token is stalled on
that token queue; one that waits for its next instruction to be dispatched is starved; the
dispatcher stalls on a full queue. PE utilisation is array MACs / (rows * cols * total cycles).
The defaults of :class:`CycleParams` are the constants that ``scripts/calibrate_cycle_model.py``
fitted to the RTL's cycle counters (stored in ``sim/cycle_calibration.json``, with the programs
and errors of that fit); :meth:`CycleParams.assumed` gives the hand-set values the model started
from. Re-run the script after an RTL change (e.g. added pipeline stages) to refresh them.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from hw.config import AcceleratorConfig
from hw.isa import (
    TOKEN_POPS,
    TOKEN_PUSHES,
    TOKEN_QUEUES,
    WORD_BITS,
    Dmacfg,
    Epi,
    EpiDest,
    Gemm,
    Load,
    Loadt,
    Store,
    Sync,
    Unit,
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


#: Where ``scripts/calibrate_cycle_model.py`` stores the constants fitted to the RTL.
CALIBRATION_FILE = Path(__file__).with_name("cycle_calibration.json")


def _calibrated(name: str, default):
    try:
        return json.loads(CALIBRATION_FILE.read_text())["params"].get(name, default)
    except FileNotFoundError:
        return default


@dataclass(frozen=True)
class CycleParams:
    """Timing constants not fixed by the config (defaults: fitted to the RTL, see the module
    docstring; :meth:`assumed`: the hand-set values before calibration).

    Attributes
    ----------
    dram_latency : int
        Cycles from a LOAD/LOADT's start to its first row (AXI read latency and setup).
    epi_latency : int
        Pipeline cycles of an EPI beyond one per row.
    store_latency : int or None
        Like ``dram_latency`` for STORE (``None``: the same as ``dram_latency``).
    gemm_extra : int
        Cycles added to :func:`gemm_cycles` per GEMM.
    epi_overlap : bool
        EPIs run alongside later GEMMs of the compute unit (rows disjoint).
    row_cycles : int
        Cycles per SRAM row a LOAD writes or a STORE reads (against one per bus beat).
    instr_overhead : int
        Cycles every load/compute/store instruction adds (decode, checks, retire).
    """

    dram_latency: int = _calibrated("dram_latency", 40)
    epi_latency: int = _calibrated("epi_latency", 4)
    store_latency: int | None = _calibrated("store_latency", None)
    gemm_extra: int = _calibrated("gemm_extra", 0)
    epi_overlap: bool = _calibrated("epi_overlap", False)
    row_cycles: int = _calibrated("row_cycles", 1)
    instr_overhead: int = _calibrated("instr_overhead", 0)

    @classmethod
    def assumed(cls) -> CycleParams:
        """The model's hand-set constants (latency 40, EPI 4, no GEMM extra, no overlap)."""
        return cls(dram_latency=40, epi_latency=4, store_latency=None, gemm_extra=0,
                   epi_overlap=False, row_cycles=1, instr_overhead=0)

    def to_dict(self) -> dict:
        """The constants by name (what the calibration file stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    """Modelled duration of one GEMM instruction: the compute unit's busy cycles, array only.

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


def _duration(t: TraceEntry, cfg: AcceleratorConfig, p: CycleParams) -> int:
    return _work(t, cfg, p) + p.instr_overhead


def _work(t: TraceEntry, cfg: AcceleratorConfig, p: CycleParams) -> int:
    ins = t.instr
    if isinstance(ins, (Dmacfg, Sync)):
        return 1
    if isinstance(ins, Load):
        return p.dram_latency + max(t.beats, p.row_cycles * t.rows)
    if isinstance(ins, Store):
        lat = p.dram_latency if p.store_latency is None else p.store_latency
        return lat + max(t.beats, p.row_cycles * t.rows)
    if isinstance(ins, Loadt):
        return p.dram_latency + t.beats
    if isinstance(ins, Gemm):
        return gemm_cycles(cfg, ins.m, ins.k_tiles, ins.n_tiles,
                           transpose=ins.transpose) + p.gemm_extra
    if isinstance(ins, Epi):
        return ins.m * ins.n_tiles + p.epi_latency
    raise AssertionError(f"no duration for {ins!r}")


def estimate_cycles(
    trace: list[TraceEntry], config: AcceleratorConfig, params: CycleParams | None = None
) -> CycleReport:
    """Time ``trace`` (a golden-model run) on ``config``; see the module docstring for the model."""
    p = params or CycleParams()
    fetch = -(-WORD_BITS // config.dma_data_bits)
    depth = config.instr_fifo_depth
    names = {
        Unit.DISPATCH: "dispatch",
        Unit.LOAD: "load",
        Unit.COMPUTE: "compute",
        Unit.STORE: "store",
    }
    stats = {names[u]: UnitStats() for u in Unit}
    free = dict.fromkeys(Unit, 0)  # cycle at which each unit can start its next instruction
    starts: dict[Unit, list[int]] = {u: [] for u in Unit}  # start times, per unit queue
    tokens: dict[str, deque[int]] = {q: deque() for q in TOKEN_QUEUES}
    dispatch_t = 0
    end = 0
    macs = 0
    gemm_done = 0  # when every GEMM so far has finished
    epi_slot: tuple[int, int, Epi] | None = None  # (start, finish, instruction) of the last EPI
    retired = 0  # compute tokens are pushed in program order
    timeline: list[TimelineEntry] = []
    for t in trace:
        ins = t.instr
        unit = ins.unit
        ds = stats["dispatch"]
        ds.instructions += 1
        ready = dispatch_t + fetch
        if unit != Unit.DISPATCH and len(starts[unit]) >= depth:
            slot_free = starts[unit][-depth] + 1
            if slot_free > ready:
                ds.stall(f"{names[unit]} queue full", slot_free - ready)
                ready = slot_free
        dispatch_t = ready
        ds.busy += fetch
        mnemonic = ins.OPCODE.name.lower()
        if unit == Unit.DISPATCH:
            end = max(end, dispatch_t, *free.values())
            timeline.append(TimelineEntry(t.pc, "dispatch", mnemonic, dispatch_t, dispatch_t, end))
            continue
        us = stats[names[unit]]
        us.instructions += 1
        start = max(free[unit], dispatch_t)
        if dispatch_t > free[unit]:
            us.stall("starved (waiting for dispatch)", dispatch_t - free[unit])
        for (u, flag), q in TOKEN_POPS.items():
            if u == unit and getattr(ins, flag):
                avail = tokens[q].popleft()
                if avail > start:
                    us.stall(f"token {q}", avail - start)
                    start = avail
        dur = _duration(t, config, p)
        occupied = dur  # cycles the unit cannot start its next instruction
        if p.epi_overlap and unit == Unit.COMPUTE:
            if isinstance(ins, Epi):
                if epi_slot is not None and epi_slot[1] > start:
                    us.stall("EPI slot", epi_slot[1] - start)
                    start = epi_slot[1]
                run = max(start, gemm_done)
                finish = run + dur
                epi_slot = (start, finish, ins)
                occupied = 1
            else:
                if (epi_slot is not None and epi_slot[1] > start and isinstance(ins, Gemm)
                        and _rows_overlap(config, ins, epi_slot[2])):
                    us.stall("EPI interlock", epi_slot[1] - start)
                    start = epi_slot[1]
                finish = start + dur
                if isinstance(ins, Gemm):
                    gemm_done = max(gemm_done, finish)
                occupied = dur
            push_at = retired = max(retired, finish)
        else:
            finish = start + dur
            push_at = finish
        us.busy += occupied
        starts[unit].append(start)
        free[unit] = start + occupied
        for (u, flag), q in TOKEN_PUSHES.items():
            if u == unit and getattr(ins, flag):
                tokens[q].append(push_at)
        macs += t.macs
        end = max(end, finish)
        timeline.append(TimelineEntry(t.pc, names[unit], mnemonic, dispatch_t, start, finish))
    return CycleReport(end, macs, config.peak_macs_per_cycle, stats, timeline)


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
