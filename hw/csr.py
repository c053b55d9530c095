"""The host register file: an AXI4-Lite slave generated from the register map of ``hw.registers``.

Writes and reads follow the map: RW fields take the written bytes (``wstrb``), W1P fields pulse
for one cycle when a 1 is written, RO fields ignore writes. One write and one read are handled
at a time; each channel holds its handshake until the response is taken, so any amount of
backpressure on B and R is fine. An access outside the map answers SLVERR (reads return 0).

64-bit counters read consistently: reading a counter's low word returns it and latches the
high word of the same cycle; reading the high word returns the latched value. Read low, then high.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AxiResp, axi4_lite_signature
from hw.config import AcceleratorConfig
from hw.registers import COUNTERS, REGISTER_BYTES, REGISTERS, by_name

__all__ = ["CODE_BITS", "CSR_ADDR_BITS", "Csr", "PC_BITS"]

#: Address width of the register file's AXI4-Lite port (a 4 KiB region).
CSR_ADDR_BITS = 12
#: Width of a word offset (``STATUS_OFFSET``, ``PROG_LEN``).
PC_BITS = 32
#: Width of a status code (``STATUS.code``).
CODE_BITS = 4


class Csr(wiring.Component):
    """AXI4-Lite register file.

    Parameters
    ----------
    config : AcceleratorConfig
        Its fingerprint is the ``FINGERPRINT`` register's value.

    Ports
    -----
    bus : In(axi4_lite_signature(12, 32))
        The slave port.
    start, soft_reset : Out(1)
        One-cycle pulses from ``CTRL``.
    core_reset : Out(1)
        A flip-flop: high in the cycle after the domain reset or a ``CTRL.soft_reset`` write
        (with ``soft_reset``), and in the first cycle; the reset of everything but the register
        file, so that its nets start at a flip-flop with no logic before them.
    reset_request : Out(1)
        ``core_reset``'s next value (for resets registered elsewhere in step with it).
    irq_enable : Out(1)
        ``CTRL.irq_enable``.
    prog_addr : Out(64)
        ``PROG_ADDR`` (bits 3:0 are zero).
    prog_len : Out(32)
        ``PROG_LEN``.
    dram_limit : Out(64)
        ``DRAM_LIMIT``.
    state : In(2)
        ``STATUS.state`` (:class:`hw.registers.RunState`).
    code : In(4)
        ``STATUS.code``.
    offset : In(32)
        ``STATUS_OFFSET``.
    counters : In(64).array(len(COUNTERS))
        The event counters, in :data:`hw.registers.COUNTERS` order.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        self._config = config
        super().__init__(
            {
                "bus": In(axi4_lite_signature(CSR_ADDR_BITS, 32)),
                "start": Out(1),
                "soft_reset": Out(1),
                "core_reset": Out(1),
                "reset_request": Out(1),
                "irq_enable": Out(1),
                "prog_addr": Out(64),
                "prog_len": Out(32),
                "dram_limit": Out(64),
                "state": In(2),
                "code": In(CODE_BITS),
                "offset": In(PC_BITS),
                "counters": In(64).array(len(COUNTERS)),
            }
        )

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        ctrl, status = by_name("CTRL"), by_name("STATUS")
        fingerprint = int(self._config.fingerprint, 16)

        # Values of the RW registers (their RO bits stay at zero).
        rw = {
            "CTRL": Signal(32, name="ctrl_q"),
            "PROG_ADDR": Signal(64, name="prog_addr_q"),
            "PROG_LEN": Signal(32, name="prog_len_q"),
            "DRAM_LIMIT": Signal(64, name="dram_limit_q"),
        }
        writable_mask = {
            name: sum(f.mask for f in by_name(name).fields if f.access == "RW") for name in rw
        }
        m.d.comb += [
            self.irq_enable.eq(rw["CTRL"][ctrl.field("irq_enable").lsb]),
            self.prog_addr.eq(rw["PROG_ADDR"]),
            self.prog_len.eq(rw["PROG_LEN"]),
            self.dram_limit.eq(rw["DRAM_LIMIT"]),
        ]
        counter_values = {name: self.counters[i] for i, (name, _) in enumerate(COUNTERS)}
        status_value = Signal(32)
        m.d.comb += [
            status_value[status.field("state").lsb :][: status.field("state").width].eq(
                self.state
            ),
            status_value[status.field("code").lsb :][: status.field("code").width].eq(self.code),
        ]

        def value_of(reg):
            if reg.name in rw:
                return rw[reg.name]
            if reg.counter:
                return counter_values[reg.name]
            return {
                "ID": Const(reg.reset, 32),
                "STATUS": status_value,
                "STATUS_OFFSET": self.offset,
                "FINGERPRINT": Const(fingerprint, 64),
            }[reg.name]

        # ---------------------------------------------------------------- writes
        aw_held = Signal()
        aw_addr = Signal(CSR_ADDR_BITS)
        w_held = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        m.d.comb += [bus.awready.eq(~aw_held), bus.wready.eq(~w_held)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_held.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        byte_mask = Cat(*(w_strb[i].replicate(8) for i in range(4)))
        write_now = aw_held & w_held & ~bus.bvalid
        word_index = aw_addr[2:]
        with m.If(write_now):
            m.d.sync += [aw_held.eq(0), w_held.eq(0), bus.bvalid.eq(1),
                         bus.bresp.eq(AxiResp.SLVERR)]
            for reg in REGISTERS:
                for w in range(reg.words):
                    with m.If(word_index == (reg.offset // REGISTER_BYTES) + w):
                        m.d.sync += bus.bresp.eq(AxiResp.OKAY)
                        if reg.name in rw:
                            target = rw[reg.name].word_select(w, 32)
                            keep = byte_mask & ((writable_mask[reg.name] >> (32 * w)) & 0xFFFF_FFFF)
                            m.d.sync += target.eq((target & ~keep) | (w_data & keep))
        start_field, reset_field = ctrl.field("start"), ctrl.field("soft_reset")
        ctrl_write = write_now & (word_index == ctrl.offset // REGISTER_BYTES)
        soft_write = ctrl_write & w_strb[0] & w_data[reset_field.lsb]
        m.d.sync += [
            self.start.eq(ctrl_write & w_strb[0] & w_data[start_field.lsb]),
            self.soft_reset.eq(soft_write),
        ]
        core_reset = Signal(reset_less=True, init=1)
        m.d.comb += [
            self.reset_request.eq(ResetSignal() | soft_write),
            self.core_reset.eq(core_reset),
        ]
        m.d.sync += core_reset.eq(self.reset_request)

        # ---------------------------------------------------------------- reads
        high_latch = Signal(32)
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        # One Switch (a parallel multiplexer), not a chain of Ifs: the counters reach `rdata`
        # through a few LUT levels, not one multiplexer per register word.
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(bus.araddr[2:]):
                for reg in REGISTERS:
                    value = value_of(reg)
                    for w in range(reg.words):
                        with m.Case((reg.offset // REGISTER_BYTES) + w):
                            m.d.sync += bus.rresp.eq(AxiResp.OKAY)
                            if reg.counter and w == 1:
                                m.d.sync += bus.rdata.eq(high_latch)
                            else:
                                m.d.sync += bus.rdata.eq(value.word_select(w, 32))
                            if reg.counter and w == 0:
                                m.d.sync += high_latch.eq(value[32:64])
                with m.Default():
                    m.d.sync += [bus.rdata.eq(0), bus.rresp.eq(AxiResp.SLVERR)]
        return m
