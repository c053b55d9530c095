# amaranth: UnusedElaboratable=no
"""The scratchpad: ``scratchpad_rows`` rows of ``lanes`` int8, in ``scratchpad_banks`` banks.

Bank ``b`` holds rows ``b * rows/banks .. (b+1) * rows/banks - 1`` (docs/isa.md, Memory
spaces). Every bank is one simple-dual-port ``lib.memory.Memory`` (synchronous read); the
arbitration is :class:`hw.banked_memory.BankedMemory`'s: round robin per bank, so the load unit,
the GEMM sequencer (weights and operands) and the store unit use different banks in the same
cycle, and a bank conflict delays a request (timing only, never data).

Ports (``addr`` is ``log2(scratchpad_rows)`` bits; ``ROW = ArrayLayout(signed(8), lanes)``):

``load_write``, ``epi_write`` : In(stream ``{addr, data: ROW, mask: lanes bits}``)
    Row writes; ``mask`` bit ``l`` enables lane ``l`` (LOAD writes whole rows, EPI lanes
    ``0..C-1``). Written at the end of the cycle the handshake happens.
``weights``, ``operands``, ``store`` : In(:func:`hw.banked_memory.read_signature`)
    ``req`` ``{addr}`` -> ``resp`` ``{data: ROW}``, in order, three cycles after the request's
    handshake at the earliest; ``resp`` may be held not ready indefinitely.
"""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import data

from hw.banked_memory import BankedMemory
from hw.config import AcceleratorConfig
from hw.memory_space import MemorySpace

__all__ = ["Scratchpad", "scratchpad_row_layout"]

READ_CLIENTS = ("weights", "operands", "store")
WRITE_CLIENTS = ("load_write", "epi_write")


def scratchpad_row_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One scratchpad row: ``lanes`` int8."""
    return data.ArrayLayout(signed(config.operand_bits), config.lanes)


class Scratchpad(MemorySpace):
    """Banked int8 scratchpad (see module docs).

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``scratchpad_rows``, ``scratchpad_banks``, ``lanes``.
    """

    def banked_memory(self, config: AcceleratorConfig) -> BankedMemory:
        """``scratchpad_banks`` banks of ``lanes`` int8 with per-lane write masks."""
        return BankedMemory(
            depth=config.scratchpad_rows,
            data_shape=scratchpad_row_layout(config),
            banks=config.scratchpad_banks,
            read_clients=READ_CLIENTS,
            write_clients=WRITE_CLIENTS,
            granularity=config.operand_bits,
        )
