# amaranth: UnusedElaboratable=no
"""One of the accelerator's memory spaces over a :class:`hw.banked_memory.BankedMemory`.

The scratchpad and the accumulator are the same thing seen from outside: a banked SRAM whose
clients are the ports of the component, named for the units that use them. This class holds
what they share (the config, the row-address width, the bank memories, the pass-through of every
client port); a subclass says only how its :class:`~hw.banked_memory.BankedMemory` is shaped
(:meth:`MemorySpace.banked_memory`).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring

from hw.banked_memory import BankedMemory
from hw.config import AcceleratorConfig

__all__ = ["MemorySpace"]


class MemorySpace(wiring.Component):
    """A banked memory space: every client port of its :class:`BankedMemory`, passed through.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator's configuration; :meth:`banked_memory` reads the sizes from it.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        self._mem = self.banked_memory(config)
        super().__init__(dict(self._mem.signature.members))

    def banked_memory(self, config: AcceleratorConfig) -> BankedMemory:
        """The banked SRAM behind this space, built for ``config`` (subclasses define it)."""
        raise NotImplementedError(f"{type(self).__name__} must define banked_memory()")

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the memory was built for."""
        return self._config

    @property
    def addr_bits(self) -> int:
        """Width of a row address."""
        return self._mem.addr_bits

    @property
    def memories(self):
        """The bank memories (``lib.memory.Memory``), bank 0 first."""
        return self._mem.memories

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.banks = self._mem
        for name in self._mem.signature.members:
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(self._mem, name))
        return m
