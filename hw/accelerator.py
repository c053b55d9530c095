"""The accelerator's top level: ``Accelerator(config)``, what ``make rtl`` / ``nmx rtl`` emit.

Ports (flat names, as vendor tools infer AXI interfaces): ``m_axi_*``, one AXI4 master
(``dma_data_bits`` data, ``addr_bits`` address, :data:`AXI_ID_BITS` ID) shared by instruction
fetch and the load and store units; ``s_axi_*``, the AXI4-Lite slave of the registers
(:mod:`hw.registers`, :class:`hw.csr.Csr`); ``irq``; ``clk`` and ``rst`` (the ``sync`` domain).

Inside: the register file, the :class:`~hw.dispatcher.Dispatcher` (fetch, decode, SETBASE, HALT,
queues, status), the :class:`~hw.tokens.TokenCounters`, the three units, a round-robin
:class:`~hw.axi_arbiter.AxiReadArbiter` between fetch (ID 0) and the load unit (ID 1), and the
64-bit event counters of ``hw.registers.COUNTERS``.

Integration state: the load, compute and store units are not integrated yet; each queue ends in
an :class:`~hw.unbuilt_unit.UnbuiltUnit`, which runs SYNC and stops every other instruction of its
unit with status 15 (``hw.registers.STATUS_NOT_BUILT``). The write channels are idle.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.axi import AxiLiteSignature, AxiSignature
from hw.axi_arbiter import AxiReadArbiter
from hw.config import AcceleratorConfig
from hw.csr import CSR_ADDR_BITS, Csr
from hw.dispatcher import UNITS, Dispatcher
from hw.isa import ALLOWED_DEPS, TOKEN_POPS, TOKEN_PUSHES, TOKEN_QUEUES, Unit
from hw.registers import COUNTERS, RunState
from hw.tokens import TokenCounters
from hw.unbuilt_unit import UnbuiltUnit

__all__ = ["AXI_ID_BITS", "Accelerator", "TOP_MODULE"]

#: Verilog module name of the accelerator.
TOP_MODULE = "nmx_accelerator"
#: ID width of ``m_axi``: a master ID bit plus the read arbiter's master index (fetch 0, load 1).
AXI_ID_BITS = 2
_OUTSTANDING_MAX = 255


class Accelerator(wiring.Component):
    """The whole accelerator for one :class:`~hw.config.AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
        The instance to build.

    Ports
    -----
    m_axi_<signal> : AXI4 master, ``hw.axi.AxiSignature(addr_bits, dma_data_bits, 1)``.
    s_axi_<signal> : AXI4-Lite slave, ``hw.axi.AxiLiteSignature(12, 32)``.
    irq : Out(1)
        High while ``STATUS.state`` is DONE and ``CTRL.irq_enable`` is set.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        self._m_axi = AxiSignature(config.addr_bits, config.dma_data_bits, AXI_ID_BITS)
        self._s_axi = AxiLiteSignature(CSR_ADDR_BITS, 32)
        members = {}
        for name, member in self._m_axi.members.items():
            members[f"m_axi_{name}"] = member
        for name, member in self._s_axi.members.items():
            members[f"s_axi_{name}"] = member.flip()
        members["irq"] = Out(1)
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        soft_reset = Signal()

        csr = Csr(cfg)
        m.submodules.csr = csr
        m.d.comb += soft_reset.eq(csr.soft_reset)
        for name in self._s_axi.members:
            port, inner = getattr(self, f"s_axi_{name}"), getattr(csr.bus, name)
            if self._s_axi.members[name].flow == Out:
                m.d.comb += inner.eq(port)
            else:
                m.d.comb += port.eq(inner)

        core = Module()
        m.submodules.core = ResetInserter(soft_reset)(core)

        dispatcher = Dispatcher(cfg)
        tokens = TokenCounters(cfg)
        core.submodules.dispatcher = dispatcher
        core.submodules.tokens = tokens
        started = dispatcher.started
        unit_ports = {u: UnbuiltUnit(cfg, Unit[u.upper()]) for u in UNITS}
        for u, unit in unit_ports.items():
            # A start clears each unit's registers (ISA v3: DMACFG slots, errors), not its RAMs.
            core.submodules[f"{u}_unit"] = ResetInserter(started)(unit)

        core.d.comb += [
            dispatcher.start.eq(csr.start),
            dispatcher.prog_addr.eq(csr.prog_addr),
            dispatcher.prog_len.eq(csr.prog_len),
            tokens.clear.eq(started),
        ]
        for u, unit in unit_ports.items():
            wiring.connect(core, getattr(dispatcher, f"{u}_cmd"), unit.cmd)
            wiring.connect(core, dispatcher.flush, unit.flush)
            wiring.connect(core, getattr(dispatcher, f"{u}_error"), unit.error)
            kind = Unit[u.upper()]
            for flag in sorted(ALLOWED_DEPS[kind]):
                table, verb = (TOKEN_POPS, "pop") if flag.startswith("pop") else (
                    TOKEN_PUSHES, "push")
                q = table[(kind, flag)]
                wiring.connect(core, getattr(unit, flag), getattr(tokens, f"{verb}_{q}"))
        core.d.comb += dispatcher.units_idle.eq(
            ~unit_ports["load"].busy & ~unit_ports["compute"].busy & ~unit_ports["store"].busy
        )

        # ------------------------------------------------------------ AXI master
        arbiter = AxiReadArbiter(cfg.addr_bits, cfg.dma_data_bits, 1, 2)
        core.submodules.read_arbiter = arbiter
        wiring.connect(core, dispatcher.axi, arbiter.inputs[0])
        core.d.comb += [arbiter.inputs[1].arvalid.eq(0), arbiter.inputs[1].rready.eq(1)]
        for name in arbiter.out.signature.members:
            port, inner = getattr(self, f"m_axi_{name}"), getattr(arbiter.out, name)
            if arbiter.out.signature.members[name].flow == Out:
                core.d.comb += port.eq(inner)
            else:
                core.d.comb += inner.eq(port)
        # Write channels: no writer is integrated yet.
        core.d.comb += [self.m_axi_bready.eq(1)]

        reads_out = Signal(range(_OUTSTANDING_MAX + 1))
        writes_out = Signal(range(_OUTSTANDING_MAX + 1))
        ar_fire = self.m_axi_arvalid & self.m_axi_arready
        r_last = self.m_axi_rvalid & self.m_axi_rready & self.m_axi_rlast
        aw_fire = self.m_axi_awvalid & self.m_axi_awready
        b_fire = self.m_axi_bvalid & self.m_axi_bready
        core.d.sync += [
            reads_out.eq(reads_out + ar_fire - r_last),
            writes_out.eq(writes_out + aw_fire - b_fire),
        ]
        core.d.comb += dispatcher.axi_idle.eq(
            (reads_out == 0) & (writes_out == 0) & ~self.m_axi_arvalid & ~self.m_axi_awvalid
            & ~self.m_axi_wvalid
        )

        # ------------------------------------------------------------ status, irq, counters
        core.d.comb += [
            csr.state.eq(dispatcher.state),
            csr.code.eq(dispatcher.code),
            csr.offset.eq(dispatcher.offset),
            self.irq.eq(csr.irq_enable & (dispatcher.state == RunState.DONE)),
        ]
        running = dispatcher.state == RunState.BUSY
        events = {
            "CYCLES": 1,
            "BUSY_LOAD": unit_ports["load"].busy,
            "BUSY_COMPUTE": unit_ports["compute"].busy,
            "BUSY_STORE": unit_ports["store"].busy,
            **{f"STALL_{q.upper()}": getattr(tokens, f"stall_{q}") for q in TOKEN_QUEUES},
            "STALL_AXI_READ": (self.m_axi_arvalid & ~self.m_axi_arready)
            | ((reads_out != 0) & ~(self.m_axi_rvalid & self.m_axi_rready)),
            "STALL_AXI_WRITE": (self.m_axi_awvalid & ~self.m_axi_awready)
            | (self.m_axi_wvalid & ~self.m_axi_wready)
            | ((writes_out != 0) & ~(self.m_axi_wvalid & self.m_axi_wready) & ~b_fire),
            "STALL_FETCH": dispatcher.stall_fetch,
            "STALL_DISPATCH": dispatcher.stall_dispatch,
            "RETIRED_DISPATCH": dispatcher.retire,
            "RETIRED_LOAD": unit_ports["load"].retire,
            "RETIRED_COMPUTE": unit_ports["compute"].retire,
            "RETIRED_STORE": unit_ports["store"].retire,
            "ARRAY_MACS": 0,
        }
        for i, (name, _) in enumerate(COUNTERS):
            count = Signal(64, name=f"count_{name.lower()}")
            core.d.comb += csr.counters[i].eq(count)
            step = events[name]  # ARRAY_MACS: 0 until the compute unit is integrated
            with core.If(started):
                core.d.sync += count.eq(0)
            with core.Elif(running):
                core.d.sync += count.eq(count + step)
        return m

