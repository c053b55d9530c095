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
  cycles); the last row's results leave ``rows + cols + 3`` cycles after it entered (the array's
  latency, ``docs/architecture.md``).
* **Banks.** Scratchpad bank conflicts are not modelled (assumed avoided by placement).
* **EPI.** One accumulator row per cycle plus ``epi_latency`` pipeline cycles.
* **DMACFG, SYNC.** One cycle on their unit (a register write; a token relay).

Stalls are attributed to their cause: a unit that is free but waits for a token is stalled on
that token queue; one that waits for its next instruction to be dispatched is starved; the
dispatcher stalls on a full queue. PE utilisation is array MACs / (rows * cols * total cycles).
These are model assumptions, to be calibrated against the RTL's counters (DESIGN.md invariant 7).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hw.config import AcceleratorConfig
from hw.isa import (
    TOKEN_POPS,
    TOKEN_PUSHES,
    TOKEN_QUEUES,
    WORD_BITS,
    Dmacfg,
    Epi,
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
ARRAY_LATENCY_EXTRA = 3


@dataclass(frozen=True)
class CycleParams:
    """Timing assumptions not fixed by the config."""

    dram_latency: int = 40
    epi_latency: int = 4


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
    ins = t.instr
    if isinstance(ins, (Dmacfg, Sync)):
        return 1
    if isinstance(ins, (Load, Store)):
        return p.dram_latency + max(t.beats, t.rows)
    if isinstance(ins, Loadt):
        return p.dram_latency + t.beats
    if isinstance(ins, Gemm):
        return gemm_cycles(cfg, ins.m, ins.k_tiles, ins.n_tiles, transpose=ins.transpose)
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
        finish = start + dur
        us.busy += dur
        starts[unit].append(start)
        free[unit] = finish
        for (u, flag), q in TOKEN_PUSHES.items():
            if u == unit and getattr(ins, flag):
                tokens[q].append(finish)
        macs += t.macs
        end = max(end, finish)
        timeline.append(TimelineEntry(t.pc, names[unit], mnemonic, dispatch_t, start, finish))
    return CycleReport(end, macs, config.peak_macs_per_cycle, stats, timeline)
