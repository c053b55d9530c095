"""How host code reaches one accelerator: the :class:`Transport` protocol.

A transport gives word access to the AXI4-Lite registers (byte offsets of :mod:`hw.registers`)
and byte access to the DRAM the accelerator's AXI master sees (device addresses), and waits for
the interrupt. Implementations: :class:`sim.rtl_harness.VerilatorTransport` (the Verilated
accelerator) and ``nmx.runtime.mmio.MmioTransport`` (a board). Shared by the ``harness`` and
``fpga`` branches (the host runtime contract).
"""

from __future__ import annotations

import typing

__all__ = ["Transport"]


@typing.runtime_checkable
class Transport(typing.Protocol):
    """How host code reaches one accelerator: its AXI4-Lite registers and the DRAM its AXI
    master sees.

    Attributes
    ----------
    mem_size : int
        Bytes of device DRAM visible to the host (device addresses ``0 .. mem_size - 1``).
    """

    mem_size: int

    def read32(self, offset: int) -> int:
        """Read the 32-bit register word at byte ``offset`` (:mod:`hw.registers`)."""
        ...

    def write32(self, offset: int, value: int) -> None:
        """Write the 32-bit register word at byte ``offset``."""
        ...

    def read_mem(self, address: int, length: int) -> bytes:
        """``length`` bytes of device DRAM from device address ``address``."""
        ...

    def write_mem(self, address: int, data: bytes) -> None:
        """Write ``data`` to device DRAM at device address ``address``."""
        ...

    def wait_irq(self, timeout: float) -> bool:
        """Block until ``irq`` is high or ``timeout`` seconds passed; True if ``irq`` is high."""
        ...

    def close(self) -> None:
        """Release the device (idempotent)."""
        ...
