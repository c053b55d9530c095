# amaranth: UnusedElaboratable=no
"""Test harness: the compute unit wired to a scratchpad and an accumulator.

What the integrator's top level will do for these three blocks, exposed for testbenches (the
Amaranth simulator tests and the Verilated ``compute_harness`` module): the compute unit's
command, token, error, bias/scale-SRAM and epilogue ports pass through; the scratchpad's and
accumulator's load/store clients are ports, so a bench fills and reads the memories the way the
load and store units will.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring

from hw.accumulator import Accumulator
from hw.compute_unit import ComputeUnit
from hw.config import AcceleratorConfig
from hw.scratchpad import Scratchpad

__all__ = ["ComputeHarness"]

PASSTHROUGH = ("cmd", "flush_above", "error", "pop_l2c", "pop_s2c", "push_c2l", "push_c2s",
               "bias_read", "scale_read", "scale_write", "fn_loaded", "epilogue_in",
               "epilogue_out", "busy", "counters", "clear")


class ComputeHarness(wiring.Component):
    """:class:`ComputeUnit` + :class:`Scratchpad` + :class:`Accumulator` (see module docs).

    Ports: the compute unit's :data:`PASSTHROUGH` ports, and ``spad_load`` (scratchpad
    ``load_write``), ``spad_store`` (scratchpad ``store``), ``acc_load`` (accumulator
    ``load_write``), ``acc_store`` (accumulator ``store``).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        self._cu = ComputeUnit(config)
        self._spad = Scratchpad(config)
        self._acc = Accumulator(config)
        members = {n: self._cu.signature.members[n] for n in PASSTHROUGH}
        members["spad_load"] = self._spad.signature.members["load_write"]
        members["spad_store"] = self._spad.signature.members["store"]
        members["acc_load"] = self._acc.signature.members["load_write"]
        members["acc_store"] = self._acc.signature.members["store"]
        super().__init__(members)

    @property
    def compute_unit(self) -> ComputeUnit:
        return self._cu

    @property
    def scratchpad(self) -> Scratchpad:
        return self._spad

    @property
    def accumulator(self) -> Accumulator:
        return self._acc

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.cu = cu = self._cu
        m.submodules.spad = spad = self._spad
        m.submodules.acc = acc = self._acc
        for n in PASSTHROUGH:
            member = cu.signature.members[n]
            if member.is_signature:
                wiring.connect(m, wiring.flipped(getattr(self, n)), getattr(cu, n))
            elif member.flow == wiring.In:
                m.d.comb += getattr(cu, n).eq(getattr(self, n))
            else:
                m.d.comb += getattr(self, n).eq(getattr(cu, n))
        wiring.connect(m, cu.spad_weights, spad.weights)
        wiring.connect(m, cu.spad_operands, spad.operands)
        wiring.connect(m, cu.spad_write, spad.epi_write)
        wiring.connect(m, cu.acc_gemm, acc.gemm)
        wiring.connect(m, cu.acc_read, acc.epi_read)
        wiring.connect(m, cu.acc_write, acc.epi_write)
        wiring.connect(m, wiring.flipped(self.spad_load), spad.load_write)
        wiring.connect(m, wiring.flipped(self.spad_store), spad.store)
        wiring.connect(m, wiring.flipped(self.acc_load), acc.load_write)
        wiring.connect(m, wiring.flipped(self.acc_store), acc.store)
        return m
