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
from hw.isa import ALLOWED_DEPS, TOKEN_POPS, TOKEN_PUSHES, Opcode, Unit
from hw.registers import STATUS_NOT_BUILT
from hw.unit_ports import (
    ERROR_SIGNATURE,
    FLUSH_SIGNATURE,
    TOKEN_SIGNATURE,
    unit_command_layout,
)

__all__ = ["UnbuiltUnit"]


class UnbuiltUnit(wiring.Component):
    """The queue end of a unit that is not built: SYNC, and STATUS_NOT_BUILT for the rest.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator's config.
    unit : hw.isa.Unit
        LOAD, COMPUTE or STORE: decides which token queues it pops and pushes
        (:data:`hw.isa.TOKEN_POPS`, :data:`hw.isa.TOKEN_PUSHES`).

    Ports
    -----
    cmd : In(stream.Signature(unit_command_layout(config)))
    flush_above : In(FLUSH_SIGNATURE)
    error : Out(ERROR_SIGNATURE)
    pop_<q> : In(TOKEN_SIGNATURE)
        Tokens popped by the unit's ``pop_*`` flags (e.g. ``pop_c2l`` for the load unit).
    push_<q> : Out(TOKEN_SIGNATURE)
        Tokens pushed by its ``push_*`` flags.
    stall_<q> : Out(1)
        Waiting for a token of queue ``q``.
    busy, retired : Out(1)
        Holds an instruction; one cycle per completed SYNC.
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
            "flush_above": In(FLUSH_SIGNATURE),
            "error": Out(ERROR_SIGNATURE),
            "busy": Out(1),
            "retired": Out(1),
        }
        for q in self.pops.values():
            members[f"pop_{q}"] = In(TOKEN_SIGNATURE)
            members[f"stall_{q}"] = Out(1)
        for q in self.pushes.values():
            members[f"push_{q}"] = Out(TOKEN_SIGNATURE)
        super().__init__(members)

    @property
    def unit(self) -> Unit:
        return self._unit

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def pops(self) -> dict[str, str]:
        """Dependency flag -> token queue, for the flags that pop."""
        return {f: TOKEN_POPS[(self._unit, f)] for f in sorted(ALLOWED_DEPS[self._unit])
                if (self._unit, f) in TOKEN_POPS}

    @property
    def pushes(self) -> dict[str, str]:
        """Dependency flag -> token queue, for the flags that push."""
        return {f: TOKEN_PUSHES[(self._unit, f)] for f in sorted(ALLOWED_DEPS[self._unit])
                if (self._unit, f) in TOKEN_PUSHES}

    def elaborate(self, platform):
        m = Module()
        held = Signal()
        cmd = Signal(unit_command_layout(self._config))
        popped = {f: Signal(name=f"{f}_done") for f in self.pops}
        header = cmd.word.header
        m.d.comb += [self.cmd.ready.eq(~held & ~self.error.valid), self.busy.eq(held)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [held.eq(1), cmd.eq(self.cmd.payload)]
            m.d.sync += [p.eq(0) for p in popped.values()]

        discard = self.flush_above.valid & (cmd.pc > self.flush_above.pc)
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
                for f, q in self.pops.items():
                    port = getattr(self, f"pop_{q}")
                    want = getattr(header, f) & ~popped[f]
                    m.d.comb += [port.ready.eq(want),
                                 getattr(self, f"stall_{q}").eq(want & ~port.valid)]
                    with m.If(want & port.valid):
                        m.d.sync += popped[f].eq(1)
                    all_popped = all_popped & (~getattr(header, f) | popped[f])
                pushes_ready = 1
                for f, q in self.pushes.items():
                    port = getattr(self, f"push_{q}")
                    pushes_ready = pushes_ready & (~getattr(header, f) | port.ready)
                with m.If(all_popped & pushes_ready):
                    for f, q in self.pushes.items():
                        m.d.comb += getattr(self, f"push_{q}").valid.eq(getattr(header, f))
                    m.d.comb += self.retired.eq(1)
                    m.d.sync += held.eq(0)
        return m
