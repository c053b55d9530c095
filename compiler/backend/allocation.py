"""Allocation: DRAM regions, scratchpad/accumulator arenas, bias/scale entries, PWL slots and
DMA geometry slots.

On-chip memories are split into fixed arenas per config (:class:`OnChip`): two operand slots and
two output slots (double buffering), a weight cache, an arena for activations kept on chip
between nodes (:class:`RowArena`, with liveness), constant blocks, two accumulator slots (one
in each accumulator half) with a staging area between them, and
in the bias/scale SRAM constant entries, two row-scale slots and a ring of per-node entries.
Reusing a buffer is always safe: the scheduler orders every reuse with tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from hw.accumulator import ACC_BANKS
from hw.config import AcceleratorConfig

__all__ = ["DramAllocator", "OnChip", "Ring", "RowArena", "SlotCache"]

_ALIGN = 64


@dataclass
class DramAllocator:
    """DRAM byte ranges (aligned to 64 bytes) with named regions and initial contents.

    Constants, inputs and tables are bump-allocated; activations may be freed after their last
    reader (:meth:`free`), and a later activation reuses the space (first fit), so the footprint
    follows the live set. The scheduler orders every reuse (DRAM hazards get tokens)."""

    size: int = 0
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    holes: list = field(default_factory=list)  # free (addr, size), sorted by address
    freed: set = field(default_factory=set)

    def alloc(self, name: str, nbytes: int, kind: str, content: bytes | None = None) -> int:
        """Reserve ``nbytes`` for region ``name``; returns its address."""
        if name in self.regions:
            raise ValueError(f"DRAM region {name!r} allocated twice")
        need = -(-max(int(nbytes), 1) // _ALIGN) * _ALIGN
        addr = None
        if kind == "activation":
            for i, (a, n) in enumerate(self.holes):
                if n >= need:
                    addr = a
                    self.holes[i] = (a + need, n - need)
                    if n == need:
                        del self.holes[i]
                    break
        if addr is None:
            addr = self.size
            self.size = addr + need
        self.regions[name] = (addr, int(nbytes))
        self.kinds[name] = kind
        if content is not None:
            self.contents[name] = bytes(content)
        return addr

    def free(self, name: str) -> None:
        """Return activation region ``name``'s space (its last reader has been emitted)."""
        addr, n = self.regions[name]
        need = -(-max(n, 1) // _ALIGN) * _ALIGN
        self.freed.add(name)
        holes = sorted([*self.holes, (addr, need)])
        merged = []
        for a, m in holes:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + m)
            else:
                merged.append((a, m))
        self.holes = merged


class Ring:
    """A ring allocator over ``[base, base + size)``: each allocation follows the previous one
    and wraps to ``base`` when it does not fit before the end."""

    def __init__(self, base: int, size: int):
        self.base, self.size, self.next = base, size, base

    def alloc(self, n: int) -> int | None:
        """Start of ``n`` consecutive units, or None if ``n`` exceeds the ring."""
        if n > self.size:
            return None
        if self.next + n > self.base + self.size:
            self.next = self.base
        start = self.next
        self.next += n
        return start


class SlotCache:
    """Keys held in a :class:`Ring`; an allocation evicts every entry it overlaps."""

    def __init__(self, ring: Ring):
        self.ring = ring
        self.entries: OrderedDict = OrderedDict()  # key -> (start, n)

    def get(self, key):
        """Start of ``key`` if still resident."""
        hit = self.entries.get(key)
        return None if hit is None else hit[0]

    def put(self, key, n: int) -> int | None:
        """Allocate ``n`` units for ``key`` (None if too large); evicts overlapped entries."""
        start = self.ring.alloc(n)
        if start is None:
            return None
        end = start + n
        for k, (s, m) in list(self.entries.items()):
            if s < end and start < s + m:
                del self.entries[k]
        self.entries[key] = (start, n)
        return start


class RowArena:
    """First-fit rows in ``[base, base + size)`` with liveness: :meth:`alloc` a block while its
    tensor is live, :meth:`free` it after the tensor's last reader."""

    def __init__(self, base: int, size: int):
        self.base, self.size = base, size
        self.holes: list[tuple[int, int]] = [(base, size)] if size > 0 else []
        self.blocks: dict[str, tuple[int, int]] = {}

    @property
    def free_rows(self) -> int:
        """Rows not held by a live block."""
        return sum(n for _a, n in self.holes)

    def alloc(self, key: str, n: int) -> int | None:
        """First row of ``n`` rows for ``key``, or None if no hole holds them."""
        for i, (a, m) in enumerate(self.holes):
            if m >= n:
                self.holes[i] = (a + n, m - n)
                if m == n:
                    del self.holes[i]
                self.blocks[key] = (a, n)
                return a
        return None

    def free(self, key: str) -> None:
        """Return ``key``'s rows."""
        a, n = self.blocks.pop(key)
        merged: list[tuple[int, int]] = []
        for h, m in sorted([*self.holes, (a, n)]):
            if merged and merged[-1][0] + merged[-1][1] == h:
                merged[-1] = (merged[-1][0], merged[-1][1] + m)
            else:
                merged.append((h, m))
        self.holes = merged


class LruSlots:
    """``n`` slots holding keyed objects, least recently used evicted first."""

    def __init__(self, n: int):
        self.n = n
        self.keys: OrderedDict = OrderedDict()  # key -> slot

    def lookup(self, key) -> tuple[int, bool]:
        """(slot, hit): the slot holding ``key``, or the slot to load it into."""
        if key in self.keys:
            self.keys.move_to_end(key)
            return self.keys[key], True
        if len(self.keys) < self.n:
            slot = len(self.keys)
        else:
            old, slot = self.keys.popitem(last=False)
        self.keys[key] = slot
        return slot, False


@dataclass
class OnChip:
    """Fixed arenas of one config (rows of the scratchpad and accumulator, bias entries)."""

    config: AcceleratorConfig
    #: scratchpad rows kept for activations resident between nodes (taken from the weight ring)
    resident_rows: int = 0

    def __post_init__(self) -> None:
        c = self.config
        s = c.scratchpad_rows
        blk = max(c.rows, c.cols)
        # scratchpad: constant blocks | 2 operand slots | 2 output slots | weight ring |
        # resident activations
        self.const_rows = 2 * blk
        self.a_slot = (s // 8)
        self.o_slot = (s // 8)
        self.a_base = self.const_rows
        self.o_base = self.a_base + 2 * self.a_slot
        w_base = self.o_base + 2 * self.o_slot
        self.resident = RowArena(s - self.resident_rows, self.resident_rows)
        self.weights = SlotCache(Ring(w_base, s - w_base - self.resident_rows))
        # accumulator: tile slot 0 | staging area (row scales, transposed operands) | tile slot 1.
        # The RTL's accumulator is ACC_BANKS = 2 banks of A/2 consecutive rows, and its GEMM port
        # has priority in its bank: an EPI reading one tile slot runs at full speed beside the
        # next tile's GEMMs only if those accumulate into the other half. So each tile slot lies
        # in its own half (consecutive tiles alternate halves) and the staging area, used briefly
        # per tile, spans the middle; the sizes are those of one slot per half.
        half = c.accumulator_rows // ACC_BANKS
        self.rs_acc = c.accumulator_rows // 8
        self.acc_slot = half - self.rs_acc // 2
        self.acc_bases = (0, half + self.rs_acc // 2)
        self.rs_acc_base = self.acc_slot
        # bias/scale entries: 3 constant sets of C (unit, x256, >>8) | 2 row-scale slots | ring
        e = c.bias_entries
        C = c.cols
        self.e_unit, self.e_x256, self.e_shr8 = 0, C, 2 * C
        rest = e - 3 * C
        self.rs_slot = rest // 4
        self.rs_base = 3 * C
        ring_base = self.rs_base + 2 * self.rs_slot
        self.entries = SlotCache(Ring(ring_base, e - ring_base))
        self.pwl = LruSlots(c.pwl_functions)
        self.geometry = LruSlots(4)

    def constant_entries(self) -> np.ndarray:
        """(bias, multiplier, shift) of the constant entry sets, shape (3, 3C)."""
        C = self.config.cols
        bias = np.zeros(3 * C, dtype=np.int64)
        mult = np.concatenate([np.ones(C), np.full(C, 256), np.ones(C)]).astype(np.int64)
        shift = np.concatenate([np.zeros(C), np.zeros(C), np.full(C, 8)]).astype(np.int64)
        return np.stack([bias, mult, shift])
