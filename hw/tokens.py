"""The four dependency-token queues between the units, as up/down counters.

Tokens carry no data: each queue (``hw.isa.TOKEN_QUEUES``: l2c, c2l, c2s, s2c) is a counter of
capacity ``instr_fifo_depth``. Its consumer pops (waits while it is zero), its producer pushes
(waits while it is full); a pop and a push in the same cycle both move. The handshakes are
``hw.unit_ports.TOKEN_SIGNATURE`` from the side that gives the token: the counter gives to the
consumer (``valid`` = non-zero, ``ready`` = take one), the producer gives to the counter.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.isa import TOKEN_QUEUES
from hw.unit_ports import TOKEN_SIGNATURE

__all__ = ["TokenCounters"]


class TokenCounters(wiring.Component):
    """Token counters ``l2c``, ``c2l``, ``c2s``, ``s2c``.

    Parameters
    ----------
    config : AcceleratorConfig
        ``instr_fifo_depth`` is each counter's capacity.

    Ports
    -----
    pop_<q> : Out(TOKEN_SIGNATURE)
        To the consumer of queue ``q``.
    push_<q> : In(TOKEN_SIGNATURE)
        From the producer of queue ``q``.
    clear : In(1)
        Empty every queue (start of a run; tokens left at HALT are dropped).
    count_<q> : Out(range(capacity + 1))
        Tokens in ``q`` (for debug and the watchdog's report).
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        cap = config.instr_fifo_depth
        members = {"clear": In(1)}
        for q in TOKEN_QUEUES:
            members[f"pop_{q}"] = Out(TOKEN_SIGNATURE)
            members[f"push_{q}"] = In(TOKEN_SIGNATURE)
            members[f"count_{q}"] = Out(range(cap + 1))
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cap = self._config.instr_fifo_depth
        for q in TOKEN_QUEUES:
            count = Signal(range(cap + 1), name=f"tokens_{q}")
            pop, push = getattr(self, f"pop_{q}"), getattr(self, f"push_{q}")
            m.d.comb += [
                pop.valid.eq(count != 0),
                push.ready.eq(count != cap),
                getattr(self, f"count_{q}").eq(count),
            ]
            popped = pop.valid & pop.ready
            pushed = push.valid & push.ready
            with m.If(self.clear):
                m.d.sync += count.eq(0)
            with m.Elif(pushed & ~popped):
                m.d.sync += count.eq(count + 1)
            with m.Elif(popped & ~pushed):
                m.d.sync += count.eq(count - 1)
        return m
