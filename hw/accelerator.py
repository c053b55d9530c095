"""The accelerator's top level: ``Accelerator(config)``, what ``make rtl`` / ``nmx rtl`` emit.

Ports (flat names, as vendor tools infer AXI interfaces): ``m_axi_*``, one AXI4 master
(``dma_data_bits`` data, ``addr_bits`` address, :data:`AXI_ID_BITS` ID) shared by instruction
fetch and the load and store units; ``s_axi_*``, the AXI4-Lite slave of the registers
(:mod:`hw.registers`, :class:`hw.csr.Csr`); ``irq``; ``clk`` and ``rst`` (the ``sync`` domain).

Inside: the register file, the :class:`~hw.dispatcher.Dispatcher` (fetch, decode, SETBASE, HALT,
queues, status), the :class:`~hw.tokens.TokenCounters`, the units, a round-robin
:class:`~hw.axi_arbiter.AxiReadArbiter` between fetch (master 0) and the load unit (master 1),
and the 64-bit event counters of ``hw.registers.COUNTERS``.

The units: :class:`hw.load_unit.LoadUnit`, :class:`hw.compute_unit.ComputeUnit` (with the
systolic array, transposer and :class:`hw.epilogue.Epilogue`) and
:class:`hw.store_unit.StoreUnit` (the AXI write channels), around the memories they share:
:class:`hw.scratchpad.Scratchpad`, :class:`hw.accumulator.Accumulator`,
:class:`hw.bias_scale.BiasScaleSram` and :class:`hw.segment_table.SegmentTable`.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.accumulator import Accumulator
from hw.axi import axi4_lite_signature, axi4_signature, connect_flat, flat_members
from hw.axi_arbiter import AxiReadArbiter
from hw.bias_scale import BiasScaleSram
from hw.compute_unit import ComputeUnit
from hw.config import AcceleratorConfig
from hw.csr import CSR_ADDR_BITS, Csr
from hw.dispatcher import Dispatcher
from hw.dma import StreamRing
from hw.epilogue import Epilogue, OutWidth
from hw.load_unit import LoadUnit
from hw.registers import COUNTERS, RunState
from hw.scratchpad import Scratchpad
from hw.segment_table import SegmentTable
from hw.store_unit import StoreUnit
from hw.tokens import TokenCounters
from hw.unit_ports import AXI_ID_BITS as UNIT_ID_BITS
from hw.write_fence import WriteFence

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
        self._compute = ComputeUnit(config)
        self._spad = Scratchpad(config)
        self._acc = Accumulator(config)
        self._bias_scale = BiasScaleSram(config)
        self._tables = SegmentTable(config)
        # One tag bit (unused, tied to 0): a zero-width tag becomes `[-1:0]` wires in Verilog.
        self._epilogue = Epilogue(config, tag_bits=1)
        self._store = StoreUnit(config)
        self._arbiter = AxiReadArbiter(config.addr_bits, config.dma_data_bits, UNIT_ID_BITS, 2)
        # The load unit's four memory writes go through register slices that hold its l2c token
        # until they have landed (hw/write_fence.py).
        self._load_fence = WriteFence({
            name: getattr(self._load, name).payload.shape()
            for name in ("spad_write", "acc_write", "bias_write", "table_write")
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        csr = self._csr
        m.submodules.csr = csr
        connect_flat(m, self, "s_axi", csr.bus)

        # Everything but the register file is reset by CTRL.soft_reset; a start also clears each
        # unit's registers (ISA v3: DMACFG slots, errors), not its RAMs. Both resets reach the
        # blocks from flip-flops, so that the nets that fan out to every register of the core
        # start at a flip-flop with no logic before them: CTRL.soft_reset is one already (it
        # acts in the cycle after the CTRL write); the unit reset is registered here, so the
        # units are cleared one cycle after the dispatcher starts, which ignores their errors in
        # that cycle and sends them nothing before its first fetch returns.
        #
        # Each reset is the reset of its own clock domain (same clock), driven by flip-flops
        # with no LUT between them and the registers' reset inputs (a ResetInserter would OR the
        # domain reset in front of every register's reset with a LUT). The core reset (the
        # domain reset or CTRL.soft_reset) and the unit reset (the same, or a start) are
        # each a small tree: one flip-flop per block of loads, all loaded from the same request
        # in the same cycle, so every copy equals the register file's `core_reset` (or the unit
        # reset) and nothing changes in timing. The copies are `core` (dispatcher, tokens, read
        # arbiter, counters), `mem` (the shared memories, the epilogue, the fence and the read
        # request slices), and `unit_load` / `unit_compute` / `unit_store` (one per unit):
        # thousands of flip-flops on one net of one flip-flop were routed as a general net
        # across the die (session 10: 18.53 ns of routing, no logic). See `_reset_copy` for how
        # the copies stay apart in Yosys.
        cfg = self._config
        core = Module()
        m.submodules.core = DomainRenamer("core")(core)
        core_request = csr.reset_request
        started = self._dispatcher.started
        unit_request = core_request | started
        for name, request, variant in (("core", core_request, "plain"),
                                       ("mem", core_request, "sync_reset"),
                                       ("unit_load", unit_request, "plain"),
                                       ("unit_compute", unit_request, "sync_reset"),
                                       ("unit_store", unit_request, "enable")):
            cd = ClockDomain(name, local=True)
            m.domains += cd
            m.d.comb += [cd.clk.eq(ClockSignal()),
                         cd.rst.eq(self._reset_copy(m, f"{name}_rst", request, variant))]
        dispatcher, tokens = self._dispatcher, self._tokens
        load, compute, store = self._load, self._compute, self._store
        core.submodules.dispatcher = dispatcher
        core.submodules.tokens = tokens
        unit_reset = Signal(reset_less=True)
        m.d.sync += unit_reset.eq(started)
        core.submodules.load_unit = DomainRenamer("unit_load")(load)
        core.submodules.compute_unit = DomainRenamer("unit_compute")(compute)
        core.submodules.store_unit = DomainRenamer("unit_store")(store)
        core.submodules.read_arbiter = arbiter = self._arbiter
        core.d.comb += [
            dispatcher.start.eq(csr.start),
            dispatcher.prog_addr.eq(csr.prog_addr),
            dispatcher.prog_len.eq(csr.prog_len),
            tokens.clear.eq(started),
            load.dram_limit.eq(csr.dram_limit),
            store.dram_limit.eq(csr.dram_limit),
        ]
        units = {"load": load, "compute": compute, "store": store}
        for name, unit in units.items():
            wiring.connect(core, getattr(dispatcher, f"{name}_cmd"), unit.cmd)
            wiring.connect(core, getattr(dispatcher, f"{name}_error"), unit.error)
        self._flush_copies(core, dispatcher.flush, units)
        fence = self._load_fence
        core.submodules.load_fence = DomainRenamer("mem")(fence)
        for unit in (load, store):
            for member in unit.signature.members:
                if unit is load and member == "push_l2c":
                    wiring.connect(core, load.push_l2c, fence.push_in)
                    wiring.connect(core, fence.push_out, tokens.push_l2c)
                elif member.startswith(("pop_", "push_")):
                    wiring.connect(core, getattr(tokens, member), getattr(unit, member))
        # The compute unit's token ports: pop {available, take}, push {space, put}.
        for q in ("l2c", "s2c"):
            pop, port = getattr(tokens, f"pop_{q}"), getattr(compute, f"pop_{q}")
            core.d.comb += [port.available.eq(pop.valid), pop.ready.eq(port.take)]
        for q in ("c2l", "c2s"):
            push, port = getattr(tokens, f"push_{q}"), getattr(compute, f"push_{q}")
            core.d.comb += [push.valid.eq(port.put), port.space.eq(push.ready)]
        # Each unit's idle, registered near it, with its command stream empty: the registered
        # flags are a cycle late, and a unit idle in the cycle before may have taken a
        # command since (the queues are empty now, but `cmd.valid` was high then). The run
        # ends a cycle later; nothing can make an idle unit busy but a command.
        idle = []
        for name, busy in (("load", load.busy | fence.pending), ("compute", compute.busy),
                           ("store", store.busy)):
            flag = Signal(name=f"{name}_idle")
            core.d.sync += flag.eq(~busy & ~units[name].cmd.valid)
            idle.append(flag)
        core.d.comb += [
            dispatcher.units_idle.eq(idle[0] & idle[1] & idle[2]),
            compute.clear.eq(0),  # its reset (`started`, registered) clears its counters
        ]
        self._wire_memories(core, started)

        # ------------------------------------------------------------ AXI master
        wiring.connect(core, dispatcher.axi, arbiter.inputs[0])
        wiring.connect(core, load.axi, arbiter.inputs[1])
        for name, member in arbiter.out.signature.members.items():
            flat = getattr(self, f"m_axi_{name}")
            if member.flow == Out:
                core.d.comb += flat.eq(getattr(arbiter.out, name))
            else:
                core.d.comb += getattr(arbiter.out, name).eq(flat)
        # The store unit is the only writer: its 4-bit IDs under a 0 top bit.
        for name, member in store.axi.signature.members.items():
            flat, inner = getattr(self, f"m_axi_{name}"), getattr(store.axi, name)
            if member.flow == Out:
                core.d.comb += flat.eq(inner)
            else:
                core.d.comb += inner.eq(flat)

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
            "STALL_L2C": None,
            "STALL_C2L": load.stall_token,
            "STALL_C2S": store.stall_token,
            "STALL_S2C": None,
            "STALL_AXI_READ": (self.m_axi_arvalid & ~self.m_axi_arready)
            | ((reads_out != 0) & ~(self.m_axi_rvalid & self.m_axi_rready)),
            "STALL_AXI_WRITE": (self.m_axi_awvalid & ~self.m_axi_awready)
            | (self.m_axi_wvalid & ~self.m_axi_wready)
            | ((writes_out != 0) & ~(self.m_axi_wvalid & self.m_axi_wready) & ~b_fire),
            "STALL_FETCH": dispatcher.stall_fetch,
            "STALL_DISPATCH": dispatcher.stall_dispatch,
            "RETIRED_DISPATCH": dispatcher.retire,
            "RETIRED_LOAD": load.retired,
            "RETIRED_COMPUTE": None,
            "RETIRED_STORE": store.retired,
            "ARRAY_MACS": None,
        }
        # The compute unit keeps its own 64-bit counters (cleared at start with the others).
        own = {
            "STALL_L2C": compute.counters.stall_l2c,
            "STALL_S2C": compute.counters.stall_s2c,
            "RETIRED_COMPUTE": compute.counters.retired,
            "ARRAY_MACS": compute.counters.array_rows * (cfg.rows * cfg.cols),
        }
        # Every event, the run state and the clear are registered before the 64-bit adders:
        # the events come from the units' state all over the die, and a route from there into
        # a 64-bit carry chain would be one of the longest paths between blocks. The counters
        # then run one cycle behind (every count the same, one cycle later).
        running_q = Signal()
        unit_reset_q = Signal(reset_less=True)
        core.d.sync += running_q.eq(running)
        m.d.sync += unit_reset_q.eq(unit_reset)
        for i, (name, _) in enumerate(COUNTERS):
            if events[name] is None:
                core.d.comb += csr.counters[i].eq(own[name])
                continue
            count = Signal(64, name=f"count_{name.lower()}")
            event = Signal(name=f"event_{name.lower()}")
            core.d.sync += event.eq(events[name])
            core.d.comb += csr.counters[i].eq(count)
            # Cleared from the registered start (`unit_reset`, a cycle after `started`, when
            # the dispatcher is running): the cleared value is that cycle's event, so the
            # counts are those of a clear in the cycle of `started` (nothing counts then).
            with core.If(unit_reset_q):
                core.d.sync += count.eq(event)
            with core.Elif(running_q):
                core.d.sync += count.eq(count + event)
        return m

    @staticmethod
    def _reset_copy(m: Module, name: str, request, variant: str) -> Signal:
        """A flip-flop that takes ``request`` every cycle (high in the first cycle), as the
        root of one block's reset.

        Yosys merges flip-flops with the same inputs (``opt_merge``, across the flattened
        hierarchy, whatever their ``keep``), which would fold copies with the same request back
        into one net. The variants are the same function built as different cells: ``plain``
        (a flip-flop), ``sync_reset`` (set by the domain reset, which ``request`` contains
        anyway), ``enable`` (loads only while ``request`` or itself is high: it holds 0
        otherwise, which is what it would load).
        """
        if variant == "plain":
            copy = Signal(name=name, reset_less=True, init=1)
            m.d.sync += copy.eq(request)
        elif variant == "sync_reset":
            copy = Signal(name=name, init=1)
            m.d.sync += copy.eq(request)
        elif variant == "enable":
            copy = Signal(name=name, reset_less=True, init=1)
            with m.If(request | copy):
                m.d.sync += copy.eq(request)
        else:
            raise ValueError(f"unknown reset copy variant {variant!r}")
        return copy

    @staticmethod
    def _flush_copies(core: Module, flush, units: dict) -> None:
        """Drive each unit's ``flush_above`` from its own registered copy of ``flush``.

        The dispatcher's held error crosses the die to every unit's flush compare; a copy per
        unit (placed near its loads) takes the crossing into a flip-flop, and every unit sees a
        flush a cycle later (the units already take it as arriving at any time: an error
        reaches ``flush`` two cycles after a unit raised it). Yosys merges flip-flops with the
        same inputs (``opt_merge``, across the flattened hierarchy, whatever their ``keep``),
        so the copies differ in their reset or enable: the load unit's are reset by the core
        reset (``valid``) or not at all (``pc``), the compute unit's ``valid`` has no reset and
        its ``pc`` loads only while ``flush.valid`` (it is read only then), the store unit's are
        reset with the store unit (`unit_store` domain).
        """
        for name, unit in units.items():
            valid = Signal(name=f"{name}_flush_valid", reset_less=(name == "compute"))
            pc = Signal.like(flush.pc, name=f"{name}_flush_pc", reset_less=(name != "store"))
            domain = core.d.unit_store if name == "store" else core.d.sync
            domain += valid.eq(flush.valid)
            if name == "compute":
                with core.If(flush.valid):
                    domain += pc.eq(flush.pc)
            else:
                domain += pc.eq(flush.pc)
            core.d.comb += [unit.flush_above.valid.eq(valid), unit.flush_above.pc.eq(pc)]

    def _wire_memories(self, core: Module, started) -> None:
        """Connect the units to the memories and the epilogue."""
        load, compute = self._load, self._compute
        spad, acc, bias_scale, tables, epi = (
            self._spad, self._acc, self._bias_scale, self._tables, self._epilogue)
        # (the memories, the epilogue, the fence and the request slices are reset by the `mem`
        # copy of the core reset)
        core.submodules.scratchpad = DomainRenamer("mem")(spad)
        core.submodules.accumulator = DomainRenamer("mem")(acc)
        core.submodules.bias_scale = DomainRenamer("mem")(bias_scale)
        core.submodules.segment_table = DomainRenamer("mem")(tables)
        core.submodules.epilogue = DomainRenamer("mem")(epi)

        def stream_copy(src, dst, **fields):
            """``src`` -> ``dst`` (streams); payload bits copied, or ``fields`` set by name."""
            core.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
            if fields:
                core.d.comb += [getattr(dst.payload, k).eq(v) for k, v in fields.items()]
            else:
                core.d.comb += dst.payload.as_value().eq(src.payload.as_value())

        # The store unit's and the EPI's read requests reach the memories through a register
        # slice: a bank's grant depends on every client's request and on the GEMM's exclusive
        # read in the same cycle, and without the slice that decision ran from the compute
        # unit's result handshake through the accumulator's arbiter into the store unit's
        # request registers (the whole design's critical path). One cycle more per read; the
        # memories' credit keeps one row per cycle. A `StreamRing`: the grant moves its read
        # pointer and fill level only, not the enables of its entries.
        store_spad_req = StreamRing(spad.store.req.payload.shape())
        store_acc_req = StreamRing(acc.store.req.payload.shape())
        epi_acc_req = StreamRing(acc.epi_read.req.payload.shape())
        core.submodules.store_spad_req = DomainRenamer("mem")(store_spad_req)
        core.submodules.store_acc_req = DomainRenamer("mem")(store_acc_req)
        core.submodules.epi_acc_req = DomainRenamer("mem")(epi_acc_req)
        # The load unit's writes reach the memories through the fence's slices.
        fence = self._load_fence
        for name in fence.names:
            wiring.connect(core, getattr(load, name), getattr(fence, f"{name}_in"))
        # Scratchpad: LOAD writes whole rows, EPI lanes 0..C-1, GEMM reads weights and operands.
        ls = fence.spad_write_out
        stream_copy(ls, spad.load_write, addr=ls.payload.addr, data=ls.payload.data,
                    mask=(1 << self._config.lanes) - 1)
        wiring.connect(core, compute.spad_write, spad.epi_write)
        wiring.connect(core, compute.spad_weights, spad.weights)
        wiring.connect(core, compute.spad_operands, spad.operands)
        # Accumulator: GEMM's fixed-timing port, EPI read/write, LOAD writes.
        wiring.connect(core, compute.acc_gemm, acc.gemm)
        wiring.connect(core, compute.acc_read.req, epi_acc_req.i)
        wiring.connect(core, epi_acc_req.o, acc.epi_read.req)
        wiring.connect(core, acc.epi_read.resp, compute.acc_read.resp)
        wiring.connect(core, compute.acc_write, acc.epi_write)
        stream_copy(fence.acc_write_out, acc.load_write)
        # Store unit reads (through the slices above).
        store = self._store
        stream_copy(store.spad_read, store_spad_req.i)
        wiring.connect(core, store_spad_req.o, spad.store.req)
        stream_copy(spad.store.resp, store.spad_resp)
        stream_copy(store.acc_read, store_acc_req.i)
        wiring.connect(core, store_acc_req.o, acc.store.req)
        stream_copy(acc.store.resp, store.acc_resp)
        # Bias/scale SRAM: LOADT BIAS writes entries, EPI dest SCALE multipliers and shifts.
        stream_copy(fence.bias_write_out, bias_scale.load_write)
        stream_copy(compute.scale_write, bias_scale.scale_write)
        breq, bresp = compute.bias_read.req, compute.bias_read.resp
        stream_copy(breq, bias_scale.bias_read, addr=breq.payload.entry)
        core.d.comb += [bresp.valid.eq(bias_scale.bias_data.valid),
                        bias_scale.bias_data.ready.eq(bresp.ready)]
        sreq, sresp = compute.scale_read.req, compute.scale_read.resp
        stream_copy(sreq, bias_scale.scale_read, addr=sreq.payload.entry, broadcast=0)
        core.d.comb += [sresp.valid.eq(bias_scale.scale_data.valid),
                        bias_scale.scale_data.ready.eq(sresp.ready)]
        for c in range(self._config.cols):
            core.d.comb += [
                bresp.payload.data[c].bias.eq(bias_scale.bias_data.payload.bias[c]),
                sresp.payload.data[c].mult.eq(bias_scale.scale_data.payload.mult[c]),
                sresp.payload.data[c].shift.eq(bias_scale.scale_data.payload.shift[c]),
            ]
        # Segment tables: LOADT PWL writes them (the SHIFT beat, last, marks a function loaded).
        stream_copy(fence.table_write_out, tables.write)
        core.d.comb += [tables.clear.eq(started), compute.fn_loaded.eq(tables.loaded)]
        wiring.connect(core, epi.table, tables.lookup)
        # Epilogue rows and results.
        ein = compute.epilogue_in
        out_bits = ein.payload.out_bits
        stream_copy(
            ein, epi.rows,
            acc=ein.payload.acc, mult=ein.payload.mult, shift=ein.payload.shift,
            fn=ein.payload.fn,
            out_width=Mux(out_bits == 8, OutWidth.INT8,
                          Mux(out_bits == 16, OutWidth.INT16, OutWidth.INT32)),
            tag=0,
        )
        stream_copy(epi.results, compute.epilogue_out)
        core.d.comb += compute.epilogue_out.payload.eq(epi.results.payload.data)
