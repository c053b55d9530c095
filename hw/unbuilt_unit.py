"""Stand-in for a unit whose RTL is not integrated yet: SYNC runs, everything else fails loudly.

While the load, compute and store units are being built, the accelerator instantiates this in
their place so the dispatcher, queues, tokens and status path run end to end. It executes SYNC
for real (SYNC has no effect but its tokens: wait for the popped tokens, then push) and stops
every other instruction with status :data:`hw.registers.STATUS_NOT_BUILT` (15) at its word offset:
it never pretends to execute an instruction it cannot.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.isa import ALLOWED_DEPS, Opcode, Unit
from hw.registers import STATUS_NOT_BUILT
from hw.unit_interface import ErrorSignature, FlushSignature, TokenSignature, unit_command_layout

__all__ = ["UnbuiltUnit"]


class UnbuiltUnit(wiring.Component):
    """The queue end of a unit that is not built: SYNC, and STATUS_NOT_BUILT for the rest.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator's config.
    unit : hw.isa.Unit
        LOAD, COMPUTE or STORE: decides which token ports exist (``pop_prev``, ``pop_next``,
        ``push_prev``, ``push_next``, as :data:`hw.isa.ALLOWED_DEPS` allows).

    Ports
    -----
    cmd : In(stream.Signature(UnitCommand))
    flush : In(FlushSignature)
    error : Out(ErrorSignature)
    pop_* / push_* : Out(TokenSignature)
    busy, retire : Out(1)
    """

    def __init__(self, config: AcceleratorConfig, unit: Unit):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        if unit not in (Unit.LOAD, Unit.COMPUTE, Unit.STORE):
            raise ValueError(f"unit must be LOAD, COMPUTE or STORE, got {unit!r}")
        self._config = config
        self._unit = unit
        members = {
            "cmd": In(stream.Signature(unit_command_layout(config))),
            "flush": In(FlushSignature),
            "error": Out(ErrorSignature),
            "busy": Out(1),
            "retire": Out(1),
        }
        for flag in sorted(ALLOWED_DEPS[unit]):
            members[flag] = Out(TokenSignature)
        super().__init__(members)

    @property
    def unit(self) -> Unit:
        return self._unit

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        flags = sorted(ALLOWED_DEPS[self._unit])
        pops = [f for f in flags if f.startswith("pop")]
        pushes = [f for f in flags if f.startswith("push")]

        held = Signal()
        cmd = Signal(unit_command_layout(self._config))
        popped = {f: Signal(name=f"{f}_done") for f in pops}
        header = cmd.word.header
        m.d.comb += [self.cmd.ready.eq(~held & ~self.error.valid), self.busy.eq(held)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [held.eq(1), cmd.eq(self.cmd.payload)]
            m.d.sync += [p.eq(0) for p in popped.values()]

        discard = self.flush.valid & (cmd.pc > self.flush.pc)
        is_sync = header.opcode == Opcode.SYNC
        with m.If(held):
            with m.If(discard):
                m.d.sync += held.eq(0)
            with m.Elif(~is_sync):
                m.d.sync += [
                    held.eq(0),
                    self.error.valid.eq(1),
                    self.error.code.eq(STATUS_NOT_BUILT),
                    self.error.pc.eq(cmd.pc),
                ]
            with m.Else():
                all_popped = 1
                for f in pops:
                    port = getattr(self, f)
                    want = getattr(header, f) & ~popped[f]
                    m.d.comb += port.valid.eq(want)
                    with m.If(want & port.ready):
                        m.d.sync += popped[f].eq(1)
                    all_popped = all_popped & (~getattr(header, f) | popped[f])
                pushes_ready = 1
                for f in pushes:
                    pushes_ready = pushes_ready & (~getattr(header, f) | getattr(self, f).ready)
                with m.If(all_popped & pushes_ready):
                    for f in pushes:
                        m.d.comb += getattr(self, f).valid.eq(getattr(header, f))
                    m.d.comb += self.retire.eq(1)
                    m.d.sync += held.eq(0)
        return m
