# amaranth: UnusedElaboratable=no
"""The bias/scale SRAM: ``bias_entries`` entries of {bias int32, multiplier int16, shift 0..47}.

Two memories, because their readers differ: the **bias** words are read only by GEMM's BIAS
modes, the **scale** words (multiplier and shift) only by EPI; each has its own read port, so an
EPI reading scales overlaps a GEMM reading biases. LOADT writes whole entries (both memories);
EPI dest SCALE writes multiplier and shift only. The two writers share the scale memory's write
port through an arbiter whose grant is a flip-flop: each writer's ``ready`` is that flip-flop,
never the other writer's ``valid`` (the writers sit in different units, and the combinational
grant ran from one unit's write slice through the arbitration into the other's). The grant
for the next cycle goes to the other writer when both are valid (they alternate), to the only
one valid, and stays when neither is: a writer that becomes valid while the grant is with the
other waits one cycle.

Both reads return ``C = cols`` consecutive entries ``addr, addr+1, ..., addr+C-1`` per request
(modulo ``bias_entries``), starting at any entry: GEMM BIAS reads ``bias + u*C`` once per output
tile, EPI ``scale_mode`` COL reads ``scale + u*C`` once per tile. ``broadcast = 1`` on a scale
read returns entry ``addr`` in every lane instead (``scale_mode`` ROW: one entry per row).

Banking: ``B = min(next power of two >= C, bias_entries)`` banks; entry ``e`` lives in bank ``e mod
B`` at row ``e div B``. The ``C <= B`` entries of a read are in distinct banks, so every bank
reads one row per request (bank ``b`` reads row ``addr div B + (b < addr mod B)``) and a
rotation by ``addr mod B`` puts them in lane order. (If ``C > bias_entries``, ``B =
bias_entries``: every bank holds one entry and lanes ``c`` and ``c + B`` get the same one.)

Reads are request/response streams: a request is answered two cycles after its handshake, in
order; the response queue (3 rows) takes backpressure, and requests are accepted only while it
has room (one request per cycle while the response is taken).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.numeric import ACC_BITS, SCALE_BITS
from hw.segment_table import SHIFT_BITS

__all__ = [
    "BiasScaleSram",
    "bias_data_layout",
    "bias_read_layout",
    "load_write_layout",
    "scale_data_layout",
    "scale_layout",
    "scale_read_layout",
    "scale_write_layout",
]

#: Rows the response queue of each read port holds (enough for one request per cycle).
RESPONSE_DEPTH = 3


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _addr_bits(config: AcceleratorConfig) -> int:
    return _log2(config.bias_entries)


def scale_layout() -> data.StructLayout:
    """One scale word: ``mult`` (int16) and ``shift`` (0..47 in 6 bits)."""
    return data.StructLayout({"mult": signed(SCALE_BITS), "shift": unsigned(SHIFT_BITS)})


def load_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.load_write`: one whole entry (LOADT)."""
    return data.StructLayout({
        "addr": unsigned(_addr_bits(config)),
        "bias": signed(ACC_BITS),
        "mult": signed(SCALE_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def scale_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.scale_write`: multiplier and shift of one entry (EPI)."""
    return data.StructLayout({
        "addr": unsigned(_addr_bits(config)),
        "mult": signed(SCALE_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def bias_read_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.bias_read`: the first of ``cols`` entries."""
    return data.StructLayout({"addr": unsigned(_addr_bits(config))})


def bias_data_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.bias_data`: ``bias[c]`` = bias of entry ``addr + c``."""
    return data.StructLayout({"bias": data.ArrayLayout(signed(ACC_BITS), config.cols)})


def scale_read_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.scale_read`: first entry, and ``broadcast`` (ROW)."""
    return data.StructLayout({"addr": unsigned(_addr_bits(config)), "broadcast": 1})


def scale_data_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`BiasScaleSram.scale_data`: ``mult[c]``, ``shift[c]`` of entry ``addr +
    c`` (``addr`` in every lane when ``broadcast``); the layout of the epilogue's input fields."""
    return data.StructLayout({
        "mult": data.ArrayLayout(signed(SCALE_BITS), config.cols),
        "shift": data.ArrayLayout(unsigned(SHIFT_BITS), config.cols),
    })


class BiasScaleSram(wiring.Component):
    """Banked bias and scale memories with ``cols``-wide read ports (see the module docs).

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``bias_entries``, ``cols``, ``acc_bits`` (32) and ``scale_bits`` (16).

    Attributes
    ----------
    load_write : In(stream.Signature(load_write_layout(config)))
        Whole entries (LOADT), one per beat.
    scale_write : In(stream.Signature(scale_write_layout(config)))
        Multiplier and shift of one entry per beat (EPI dest SCALE). Shares the scale memory's
        write port with ``load_write``: both ``ready`` come from one grant flip-flop, which
        alternates while both are valid (see the module docs). A write is visible to
        reads whose request handshakes two or more cycles after the write's.
    bias_read : In(stream.Signature(bias_read_layout(config)))
    bias_data : Out(stream.Signature(bias_data_layout(config)))
        GEMM BIAS modes: ``cols`` consecutive biases per request.
    scale_read : In(stream.Signature(scale_read_layout(config)))
    scale_data : Out(stream.Signature(scale_data_layout(config)))
        EPI: ``cols`` consecutive (multiplier, shift) pairs, or one broadcast.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        if config.acc_bits != ACC_BITS or config.scale_bits != SCALE_BITS:
            raise ValueError(
                f"config.acc_bits = {config.acc_bits!r}, config.scale_bits = "
                f"{config.scale_bits!r}: only {ACC_BITS}-bit biases and {SCALE_BITS}-bit "
                "multipliers are supported"
            )
        entries = config.bias_entries
        if entries < 2 or entries & (entries - 1):
            raise ValueError(f"config.bias_entries = {entries!r}: must be a power of two >= 2")
        self._config = config
        super().__init__({
            "load_write": In(stream.Signature(load_write_layout(config))),
            "scale_write": In(stream.Signature(scale_write_layout(config))),
            "bias_read": In(stream.Signature(bias_read_layout(config))),
            "bias_data": Out(stream.Signature(bias_data_layout(config))),
            "scale_read": In(stream.Signature(scale_read_layout(config))),
            "scale_data": Out(stream.Signature(scale_data_layout(config))),
        })
        depth = entries // self.banks
        self._bias_banks = [
            Memory(shape=signed(ACC_BITS), depth=depth, init=[]) for _ in range(self.banks)
        ]
        self._scale_banks = [
            Memory(shape=scale_layout(), depth=depth, init=[]) for _ in range(self.banks)
        ]
        self._bias_queue = SyncFIFO(width=bias_data_layout(config).size, depth=RESPONSE_DEPTH)
        self._scale_queue = SyncFIFO(width=scale_data_layout(config).size, depth=RESPONSE_DEPTH)

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the SRAM was built for."""
        return self._config

    @property
    def banks(self) -> int:
        """Number of banks: the next power of two >= ``cols``, at most ``bias_entries``."""
        return min(1 << (self._config.cols - 1).bit_length(), self._config.bias_entries)

    @property
    def read_latency(self) -> int:
        """Cycles from a read request's handshake to its response being valid."""
        return 2

    def elaborate(self, platform) -> Module:
        m = Module()
        bank_bits = _log2(self.banks)

        # Write arbitration: LOADT and EPI dest SCALE share the scale memory; the grant is a
        # flip-flop, decided from this cycle's valids for the next.
        lw, sw = self.load_write, self.scale_write
        pick_scale = Signal()  # the grant: EPI's scale write (1) or LOADT's entry (0)
        m.d.comb += [lw.ready.eq(~pick_scale), sw.ready.eq(pick_scale)]
        with m.If(lw.valid & sw.valid):
            m.d.sync += pick_scale.eq(~pick_scale)
        with m.Elif(lw.valid | sw.valid):
            m.d.sync += pick_scale.eq(sw.valid)
        load_fire = lw.valid & ~pick_scale
        scale_fire = sw.valid & pick_scale
        # The granted write, registered, then decoded into the banks' write ports.
        w_addr = Signal(_addr_bits(self._config))
        w_scale = Signal(scale_layout())
        w_bias = Signal(signed(ACC_BITS))
        w_scale_en = Signal()
        w_bias_en = Signal()
        m.d.sync += [
            w_addr.eq(Mux(pick_scale, sw.payload.addr, lw.payload.addr)),
            w_scale.mult.eq(Mux(pick_scale, sw.payload.mult, lw.payload.mult)),
            w_scale.shift.eq(Mux(pick_scale, sw.payload.shift, lw.payload.shift)),
            w_bias.eq(lw.payload.bias),
            w_scale_en.eq(load_fire | scale_fire),
            w_bias_en.eq(load_fire),
        ]

        for kind, banks, value, enable in (
            ("bias", self._bias_banks, w_bias, w_bias_en),
            ("scale", self._scale_banks, w_scale, w_scale_en),
        ):
            for b, mem in enumerate(banks):
                m.submodules[f"{kind}_bank_{b}"] = mem
                port = mem.write_port()
                m.d.comb += [
                    port.addr.eq(w_addr[bank_bits:]),
                    port.data.eq(value),
                    port.en.eq(enable & (w_addr[:bank_bits] == b)),
                ]

        self._read_port(m, "bias", self._bias_banks, self._bias_queue, self.bias_read, None,
                        self.bias_data)
        self._read_port(m, "scale", self._scale_banks, self._scale_queue, self.scale_read,
                        self.scale_read.payload.broadcast, self.scale_data)
        return m

    def _read_port(self, m, kind, banks, queue, request, broadcast, response) -> None:
        """Banked read of ``cols`` consecutive entries, rotated into lane order, queued."""
        nb, bank_bits, lanes = self.banks, _log2(self.banks), self._config.cols
        m.submodules[f"{kind}_queue"] = queue
        in_flight = Signal(name=f"{kind}_in_flight")
        accept = Signal(name=f"{kind}_accept")
        m.d.comb += [
            request.ready.eq(queue.level + in_flight < RESPONSE_DEPTH),
            accept.eq(request.valid & request.ready),
        ]
        addr = request.payload.addr
        low, high = addr[:bank_bits], addr[bank_bits:]
        words = []
        for b, mem in enumerate(banks):
            port = mem.read_port()
            m.d.comb += port.addr.eq(high + (b < low))
            words.append(Value.cast(port.data))
        low_d = Signal(bank_bits, name=f"{kind}_low")
        broadcast_d = Signal(name=f"{kind}_broadcast")
        m.d.sync += [in_flight.eq(accept), low_d.eq(low)]
        if broadcast is not None:
            m.d.sync += broadcast_d.eq(broadcast)
        lane_words = []
        for c in range(lanes):
            index = Signal(bank_bits, name=f"{kind}_lane{c}_bank")
            m.d.comb += index.eq(Mux(broadcast_d, low_d, low_d + c))
            lane_words.append(_select(words, index, nb))
        if kind == "bias":
            packed = Cat(*lane_words)
        else:
            packed = Cat(*(w[:SCALE_BITS] for w in lane_words),
                         *(w[SCALE_BITS:] for w in lane_words))
        m.d.comb += [
            queue.w_en.eq(in_flight),
            queue.w_data.eq(packed),
            response.valid.eq(queue.r_rdy),
            response.payload.eq(queue.r_data),
            queue.r_en.eq(response.ready),
        ]


def _select(words, index, count):
    """``words[index]`` (``count`` a power of two, ``index`` ``log2(count)`` bits)."""
    while count > 1:
        words = [Mux(index[0], hi, lo) for lo, hi in zip(words[0::2], words[1::2], strict=True)]
        index = index[1:]
        count //= 2
    return words[0]
