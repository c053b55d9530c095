"""Layouts: where every element of a tensor lives in DRAM, and how a GEMM operand is walked.

Every data tensor has a :class:`Placement`: one DRAM region per plane (``int8``; ``hi`` and
``lo`` of a 16-bit operand; ``int32`` of a wide output), elements row-major over
``(batch, *shape)``. A view chain is an index map, so an operand's *address map* is the
placement's address array seen through the operand's views (:func:`address_map`; ``-1`` marks
zero padding, replicate padding repeats addresses). The back end then classifies it:

- rows of a block are loaded as DMA walks when every scratchpad row is one contiguous DRAM run
  with zero padding only at its ends (:func:`row_runs`);
- the reduction dimension may be reordered freely (the same order for both operands of a pass):
  :func:`chunk_columns` groups K into chunks that are contiguous in DRAM (a convolution's taps
  become runs of ``kw * cin`` bytes, tap-major, as the ISA's DMACFG walk wants; weights are
  stored reordered);
- a weight operand whose rows are not contiguous but whose columns are is loaded transposed
  (``GEMM transpose=1``, e.g. ``q @ k^T``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from compiler.graph import TensorRef
from compiler.ir.interpret import view

__all__ = ["Placement", "address_map", "chunk_columns", "row_runs"]


@dataclass
class Placement:
    """DRAM placement of one data tensor for a batch of ``batch`` samples."""

    name: str
    shape: tuple[int, ...]
    batch: int
    esize: int
    planes: dict[str, int] = field(default_factory=dict)  # plane -> base byte address
    #: storage order of the dims of ``(batch, *shape)`` (default: row-major, identity)
    order: tuple[int, ...] | None = None
    #: explicit element offsets, shape ``(batch, *shape)`` (a node that stores whole tiles of
    #: which only some elements are the tensor, e.g. the diagonal of batched self-products)
    offsets: np.ndarray | None = None

    @property
    def numel(self) -> int:
        """Elements over the whole batch."""
        return self.batch * int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of one plane (the region holding it)."""
        if self.offsets is not None:
            return (int(self.offsets.max()) + 1) * self.esize
        return self.numel * self.esize

    def addresses(self, plane: str) -> np.ndarray:
        """Byte address of every element, shape ``(batch, *shape)``."""
        base = self.planes[plane]
        if self.offsets is not None:
            return base + self.esize * self.offsets.astype(np.int64)
        logical = (self.batch, *self.shape)
        flat = base + self.esize * np.arange(self.numel, dtype=np.int64)
        if self.order is None:
            return flat.reshape(logical)
        stored = flat.reshape([logical[d] for d in self.order])
        return stored.transpose(np.argsort(self.order))


def address_map(ref: TensorRef, placement: Placement, plane: str) -> np.ndarray:
    """Addresses of ``ref``'s elements, shape ``(batch, *ref.shape)``; -1 for zero padding."""
    a = torch.from_numpy(placement.addresses(plane) + 1)
    return view(ref, a).numpy().astype(np.int64) - 1


def _contiguous(addr: np.ndarray, esize: int) -> np.ndarray:
    """Per row of ``addr`` (rows, L): valid addresses form one run ``start + b*esize`` and the
    padding (-1) is only a prefix and/or suffix."""
    rows, length = addr.shape
    valid = addr >= 0
    b = np.arange(length, dtype=np.int64)[None, :]
    first = np.where(valid.any(axis=1), np.argmax(valid, axis=1), 0)
    start = addr[np.arange(rows), first] - first * esize
    expect = start[:, None] + b * esize
    ok_vals = np.where(valid, addr == expect, True).all(axis=1)
    # padding only at the ends: valid positions are one interval
    cnt = valid.sum(axis=1)
    last = np.where(cnt > 0, first + cnt - 1, -1)
    inside = (b >= first[:, None]) & (b <= last[:, None])
    ok_pad = (valid == inside).all(axis=1)
    return ok_vals & ok_pad


@dataclass(frozen=True)
class RowRun:
    """One scratchpad row's source: DRAM address of element 0 (may be a padding position),
    ``left`` padding elements, ``valid`` elements, then zeros up to ``length``."""

    start: int
    left: int
    valid: int


def row_runs(addr: np.ndarray, esize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For rows ``addr`` (rows, L), per row: first valid address, left padding, valid count;
    None if some row is not one contiguous run padded only at its ends."""
    if addr.size == 0:
        return None
    if not _contiguous(addr, esize).all():
        return None
    valid = addr >= 0
    cnt = valid.sum(axis=1).astype(np.int64)
    first = np.where(cnt > 0, np.argmax(valid, axis=1), 0).astype(np.int64)
    start = np.where(cnt > 0, addr[np.arange(addr.shape[0]), first], 0)
    return start, first, cnt


def chunk_columns(addr: np.ndarray, width: int, esize: int) -> list[np.ndarray] | None:
    """Group the K columns of an operand's address map ``addr`` (rows, K) into chunks of at most
    ``width`` columns whose addresses are contiguous runs in every row.

    The order comes from a reference row (the one with most valid elements): columns sorted by
    address, cut where the address does not continue, cut again every ``width``. Returns the
    column index lists, or None if the chunks are not runs in every row.
    """
    rows, k = addr.shape
    valid = addr >= 0
    ref = int(np.argmax(valid.sum(axis=1)))
    r = addr[ref]
    order = np.argsort(np.where(r >= 0, r, np.iinfo(np.int64).max), kind="stable")
    chunks: list[list[int]] = []
    cur: list[int] = []
    prev = None
    for c in order:
        a = int(r[c])
        if cur and (a < 0 or prev is None or a != prev + esize or len(cur) == width):
            chunks.append(cur)
            cur = []
        cur.append(int(c))
        prev = a if a >= 0 else None
    if cur:
        chunks.append(cur)
    out = [np.asarray(c, dtype=np.int64) for c in chunks]
    for c in out:
        if not _contiguous(addr[:, c], esize).all():
            return None
    return out


def natural_chunks(k: int, width: int) -> list[np.ndarray]:
    """K in order, cut every ``width`` columns."""
    return [np.arange(s, min(s + width, k), dtype=np.int64) for s in range(0, k, width)]
