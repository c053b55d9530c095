"""The accelerator's top level: ``Accelerator(config)``, what ``make rtl`` / ``nmx rtl`` emit.

Ports (flat names, as vendor tools infer AXI interfaces): ``m_axi_*``, one AXI4 master
(``dma_data_bits`` data, ``addr_bits`` address, :data:`AXI_ID_BITS` ID) shared by instruction
fetch and the load and store units; ``s_axi_*``, the AXI4-Lite slave of the registers
(:mod:`hw.registers`, :class:`hw.csr.Csr`); ``irq``; ``clk`` and ``rst`` (the ``sync`` domain).

Inside: the register file, the :class:`~hw.dispatcher.Dispatcher` (fetch, decode, SETBASE, HALT,
queues, status), the :class:`~hw.tokens.TokenCounters`, the units, a round-robin
:class:`~hw.axi_arbiter.AxiReadArbiter` between fetch (master 0) and the load unit (master 1),
and the 64-bit event counters of ``hw.registers.COUNTERS``.

Integration state: the load unit (:class:`hw.load_unit.LoadUnit`) is integrated and executes
DMACFG, LOAD, LOADT and SYNC with all their checks; the memories it writes (scratchpad,
accumulator, bias/scale and segment-table SRAMs) are not integrated yet, so its write requests
are accepted and dropped: nothing could read them, because GEMM, EPI and STORE stop the program.
The compute and store queues end in an :class:`~hw.unbuilt_unit.UnbuiltUnit`, which runs SYNC and
stops every other instruction with status 15 (``hw.registers.STATUS_NOT_BUILT``). The write
channels are idle.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.axi import axi4_lite_signature, axi4_signature, connect_flat, flat_members
from hw.axi_arbiter import AxiReadArbiter
from hw.config import AcceleratorConfig
from hw.csr import CSR_ADDR_BITS, Csr
from hw.dispatcher import Dispatcher
from hw.isa import Unit
from hw.load_unit import LoadUnit
from hw.registers import COUNTERS, RunState
from hw.tokens import TokenCounters
from hw.unbuilt_unit import UnbuiltUnit
from hw.unit_ports import AXI_ID_BITS as UNIT_ID_BITS

__all__ = ["AXI_ID_BITS", "Accelerator", "TOP_MODULE"]

#: Verilog module name of the accelerator.
TOP_MODULE = "nmx_accelerator"
#: ID width of ``m_axi``: a master's ID (``hw.unit_ports.AXI_ID_BITS``) under the read
#: arbiter's master index (fetch 0, load unit 1) in the top bit.
AXI_ID_BITS = UNIT_ID_BITS + 1
_OUTSTANDING_MAX = 255


class Accelerator(wiring.Component):
    """The whole accelerator for one :class:`~hw.config.AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
        The instance to build.

    Ports
    -----
    m_axi_<signal> : AXI4 master, ``hw.axi.axi4_signature(addr_bits, dma_data_bits, 5)``.
    s_axi_<signal> : AXI4-Lite slave, ``hw.axi.axi4_lite_signature(12, 32)``.
    irq : Out(1)
        High while ``STATUS.state`` is DONE and ``CTRL.irq_enable`` is set.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        m_axi = axi4_signature(config.addr_bits, config.dma_data_bits, AXI_ID_BITS)
        s_axi = axi4_lite_signature(CSR_ADDR_BITS, 32)
        super().__init__(
            {
                **flat_members("m_axi", m_axi),
                **flat_members("s_axi", s_axi.flip()),
                "irq": Out(1),
            }
        )
        self._csr = Csr(config)
        self._dispatcher = Dispatcher(config)
        self._tokens = TokenCounters(config)
        self._load = LoadUnit(config)
        self._compute = UnbuiltUnit(config, Unit.COMPUTE)
        self._store = UnbuiltUnit(config, Unit.STORE)
        self._arbiter = AxiReadArbiter(config.addr_bits, config.dma_data_bits, UNIT_ID_BITS, 2)

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        csr = self._csr
        m.submodules.csr = csr
        connect_flat(m, self, "s_axi", csr.bus)

        # Everything but the register file is reset by CTRL.soft_reset.
        core = Module()
        m.submodules.core = ResetInserter(csr.soft_reset)(core)
        dispatcher, tokens = self._dispatcher, self._tokens
        load, compute, store = self._load, self._compute, self._store
        core.submodules.dispatcher = dispatcher
        core.submodules.tokens = tokens
        started = dispatcher.started
        # A start clears each unit's registers (ISA v3: DMACFG slots, errors), not its RAMs.
        core.submodules.load_unit = ResetInserter(started)(load)
        core.submodules.compute_unit = ResetInserter(started)(compute)
        core.submodules.store_unit = ResetInserter(started)(store)
        core.submodules.read_arbiter = arbiter = self._arbiter

        core.d.comb += [
            dispatcher.start.eq(csr.start),
            dispatcher.prog_addr.eq(csr.prog_addr),
            dispatcher.prog_len.eq(csr.prog_len),
            tokens.clear.eq(started),
            load.dram_limit.eq(csr.dram_limit),
        ]
        units = {"load": load, "compute": compute, "store": store}
        for name, unit in units.items():
            wiring.connect(core, getattr(dispatcher, f"{name}_cmd"), unit.cmd)
            wiring.connect(core, dispatcher.flush, unit.flush_above)
            wiring.connect(core, getattr(dispatcher, f"{name}_error"), unit.error)
            for member in unit.signature.members:
                if member.startswith(("pop_", "push_")):
                    wiring.connect(core, getattr(tokens, member), getattr(unit, member))
        core.d.comb += dispatcher.units_idle.eq(~load.busy & ~compute.busy & ~store.busy)

        # The load unit's memory writes: no memory is integrated yet (see the module docs).
        for name in ("spad_write", "acc_write", "bias_write", "table_write"):
            core.d.comb += getattr(load, name).ready.eq(1)

        # ------------------------------------------------------------ AXI master
        wiring.connect(core, dispatcher.axi, arbiter.inputs[0])
        wiring.connect(core, load.axi, arbiter.inputs[1])
        for name, member in arbiter.out.signature.members.items():
            flat = getattr(self, f"m_axi_{name}")
            if member.flow == Out:
                core.d.comb += flat.eq(getattr(arbiter.out, name))
            else:
                core.d.comb += getattr(arbiter.out, name).eq(flat)
        core.d.comb += self.m_axi_bready.eq(1)  # no writer is integrated yet

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
            "BUSY_LOAD": load.busy,
            "BUSY_COMPUTE": compute.busy,
            "BUSY_STORE": store.busy,
            "STALL_L2C": compute.stall_l2c,
            "STALL_C2L": load.stall_token,
            "STALL_C2S": store.stall_c2s,
            "STALL_S2C": compute.stall_s2c,
            "STALL_AXI_READ": (self.m_axi_arvalid & ~self.m_axi_arready)
            | ((reads_out != 0) & ~(self.m_axi_rvalid & self.m_axi_rready)),
            "STALL_AXI_WRITE": (self.m_axi_awvalid & ~self.m_axi_awready)
            | (self.m_axi_wvalid & ~self.m_axi_wready)
            | ((writes_out != 0) & ~(self.m_axi_wvalid & self.m_axi_wready) & ~b_fire),
            "STALL_FETCH": dispatcher.stall_fetch,
            "STALL_DISPATCH": dispatcher.stall_dispatch,
            "RETIRED_DISPATCH": dispatcher.retire,
            "RETIRED_LOAD": load.retired,
            "RETIRED_COMPUTE": compute.retired,
            "RETIRED_STORE": store.retired,
            "ARRAY_MACS": 0,  # 0 until the compute unit is integrated
        }
        for i, (name, _) in enumerate(COUNTERS):
            count = Signal(64, name=f"count_{name.lower()}")
            core.d.comb += csr.counters[i].eq(count)
            with core.If(started):
                core.d.sync += count.eq(0)
            with core.Elif(running):
                core.d.sync += count.eq(count + events[name])
        return m
