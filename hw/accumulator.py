# amaranth: UnusedElaboratable=no
"""The accumulator: ``accumulator_rows`` rows of ``C`` int32, in :data:`ACC_BANKS` banks.

Bank ``b`` holds rows ``b * rows/ACC_BANKS ..`` (consecutive rows, as the scratchpad). Each bank
is one simple-dual-port ``lib.memory.Memory`` with a synchronous read. The GEMM result pipeline
owns a fixed-timing port (``gemm``: a read and a write every cycle, served before anything else in
that bank, transparent read for its read-modify-write forwarding); the EPI, load and store
clients are streams arbitrated round robin per bank (:class:`hw.banked_memory.BankedMemory`).
Two banks let an EPI read (and write in place) one half while a GEMM accumulates into the other
at one row per cycle: the compiler's alternating accumulator buffers should lie in different
halves. A conflict delays the stream client, never the GEMM, and never changes data.

Every bank's granted requests go through two register stages before its block RAMs
(:data:`REQUEST_STAGES`, :class:`hw.banked_memory.BankedMemory`): the arbiters and the
write-data multiplexers end in flip-flops, which drive a second rank (one copy per block RAM on
ECP5) at the RAMs' pins, with no logic between the two ranks, so the placer can put the wire
across the die there, from flip-flop to flip-flop. Every access is two
cycles later than in the scratchpad, reads and writes alike (:data:`GEMM_READ_LATENCY`).

Ports (``addr`` is ``log2(accumulator_rows)`` bits; ``ROW = ArrayLayout(signed(32), C)``):

``gemm`` : In(:func:`hw.banked_memory.exclusive_signature`)
    ``read_en``/``read_addr`` in cycle ``t`` -> ``read_data`` in ``t + 4``; ``write_*`` in cycle
    ``w`` writes at the end of ``w + 2``; a read returns the row as written by every write
    asserted up to and including its own cycle (a read of the row written in the same cycle
    returns the new row); writes in ``t + 1 .. t + 3`` are the read-modify-write pipeline's to
    forward.
``epi_write``, ``load_write`` : In(stream ``{addr, data: ROW}``)
    Whole-row writes, in the RAM at the end of the second cycle after the handshake (a read
    granted in the handshake's cycle or later returns the row).
``epi_read``, ``store`` : In(:func:`hw.banked_memory.read_signature`)
    ``req`` ``{addr}`` -> ``resp`` ``{data: ROW}`` in order, five cycles after the request at
    the earliest, six credits (one response per cycle to a client that is always ready).
"""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import data

from hw.banked_memory import READ_LATENCY, BankedMemory
from hw.config import AcceleratorConfig
from hw.memory_space import MemorySpace

__all__ = ["ACC_BANKS", "GEMM_READ_LATENCY", "REQUEST_STAGES", "Accumulator",
           "accumulator_row_layout"]

#: Banks of the accumulator (halves: a GEMM and an EPI on different halves never conflict).
ACC_BANKS = 2
#: Register stages between the banks' arbiters and their block RAMs.
REQUEST_STAGES = 2
#: Cycles from the ``gemm`` port's ``read_en`` to its ``read_data`` (the request stages, the
#: RAM's read, its output register); the compute unit's read-modify-write pipeline is built
#: for it.
GEMM_READ_LATENCY = READ_LATENCY + REQUEST_STAGES

READ_CLIENTS = ("epi_read", "store")
WRITE_CLIENTS = ("epi_write", "load_write")


def accumulator_row_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One accumulator row: ``cols`` int32."""
    return data.ArrayLayout(signed(config.acc_bits), config.cols)


class Accumulator(MemorySpace):
    """Banked int32 accumulator with a GEMM read-modify-write port (see module docs).

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``accumulator_rows`` and ``cols``.
    """

    def banked_memory(self, config: AcceleratorConfig) -> BankedMemory:
        """:data:`ACC_BANKS` banks of ``cols`` int32 with the exclusive ``gemm`` port."""
        return BankedMemory(
            depth=config.accumulator_rows,
            data_shape=accumulator_row_layout(config),
            banks=ACC_BANKS,
            read_clients=READ_CLIENTS,
            write_clients=WRITE_CLIENTS,
            exclusive="gemm",
            request_stages=REQUEST_STAGES,
        )
