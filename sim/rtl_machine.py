"""The Verilated accelerator as a machine for :mod:`sim.network`: programs run through
:class:`nmx.runtime.device.Device` on one :class:`sim.rtl_harness.VerilatorTransport`, the RTL's
counters read after each run."""

from __future__ import annotations

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import Program
from sim.cycle_model import CycleParams
from sim.dram_image import DramImage

__all__ = ["RtlMachine"]

#: Device DRAM: the largest zoo bundle (ViT/BERT on default) needs a few MiB with its program.
MEM_SIZE = 1 << 24


class RtlMachine:
    """Runs programs on the Verilated accelerator (C++ harness, no cocotb).

    ``latency`` defaults to the cycle model's DRAM latency (:class:`sim.cycle_model.CycleParams`)
    so that RTL cycles and predictions describe the same memory; ``backpressure`` is the
    harness's per-cycle pause probability.
    """

    name = "rtl"

    def __init__(self, config: AcceleratorConfig, *, latency: int | None = None,
                 backpressure: float = 0.0, seed: int = 1, timeout: float = 3600.0):
        from nmx.runtime.device import Device
        from sim.rtl_harness import VerilatorTransport

        self.config = config
        self.latency = CycleParams().dram_latency if latency is None else int(latency)
        self.backpressure = backpressure
        self.timeout = timeout
        self.transport = VerilatorTransport(config, mem_size=MEM_SIZE, latency=self.latency,
                                            backpressure=backpressure, seed=seed)
        self.device = Device(self.transport, config)

    def run(self, program: Program, image: DramImage):
        from sim.network import MachineRun

        words = program.words()
        r = self.device.execute(words, image.data, timeout=self.timeout)
        if r.dram is None:
            raise NmxError("the device returned no DRAM image")
        dram = DramImage(r.dram.data, dict(image.regions), image.stamp)
        return MachineRun(dram, int(r.status.code), int(r.status.pc), dict(r.counters),
                          r.wall_s)

    def close(self) -> None:
        self.transport.close()
