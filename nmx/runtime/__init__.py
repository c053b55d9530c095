"""Host runtime: drive one accelerator through a :class:`~nmx.runtime.transport.Transport`.

:class:`~nmx.runtime.device.Device` is the driver (registers by name from :mod:`hw.registers`,
start, wait, status as exceptions, counters, bundles); a transport reaches either the Verilated
accelerator (:class:`sim.rtl_harness.VerilatorTransport`) or a board (``nmx.runtime.mmio``).
"""

from nmx.runtime.device import Device, DeviceError, DeviceRun, RunError, RunTimeout
from nmx.runtime.transport import Transport

__all__ = ["Device", "DeviceError", "DeviceRun", "RunError", "RunTimeout", "Transport"]
