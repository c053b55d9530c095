# amaranth: UnusedElaboratable=no
"""The segment-table SRAM: ``pwl_functions`` PWL tables of ``pwl_segments`` segments each.

LOADT writes it field by field (one value per beat of :attr:`SegmentTable.write`); the epilogue
(``hw/epilogue.py``) reads it through :attr:`SegmentTable.lookup`, whose ports are laid out for a
pipelined binary search that serves ``C = cols`` lanes every cycle.

Storage (``F = pwl_functions``, ``S = pwl_segments = 2**L``; all read ports synchronous):

* ``meta``: per function the table's shift and the breakpoints of the first
  :data:`SHARED_LEVELS` search levels (``2**SHARED_LEVELS - 1`` int32, heap order: level ``l``,
  node ``j`` at position ``2**l - 1 + j``). One read port, addressed by function: every lane of a
  row uses the same function, so one wide read serves all lanes and each lane multiplexes the node
  it needs.
* ``level l`` for ``SHARED_LEVELS <= l < L``: one copy per lane of the ``2**l`` level-``l``
  breakpoints of every function (``F * 2**l`` int32, address ``fn * 2**l + j``), one read port
  each. Each lane's search is at a different node, so each needs its own port.
* ``slope`` and ``intercept``: one copy per lane (``F * S`` int16 / int32, address
  ``fn * S + seg``).

The per-lane memories (levels, slope, intercept: the block RAMs) carry Yosys's ``no_rw_check``
attribute: a read addressed in the cycle in which LOADT writes the same entry is undefined on
the FPGA (in simulation it returns the old value). Such a read needs the same function read by
EPI and written by LOADT without a token between them, which docs/isa.md makes a HAZARD (the
golden model rejects the program), so no valid program sees it. Without the attribute Yosys
emulates the collision on ECP5 (the DP16KD leaves it undefined between its two ports): a
write delayed by a flip-flop and a bypass multiplexer per read-data bit, 72 flip-flops and 41
LUTs per memory, and the delayed write data on one flip-flop per bit that fed all 40 block RAMs
(the epilogue unit's critical path, 12.7 ns of routing; docs/fpga.md).

Breakpoint ``i`` (``0 <= i <= S-2``, ascending) is node ``j`` of level ``l`` where ``i + 1 = (2j +
1) * 2**(L-1-l)``: the root (level 0) is breakpoint ``S/2 - 1``, which splits the segments in
halves. The search (``seg = number of breakpoints <= x``) starts at ``j = 0`` and does, per level,
``j = 2j + (x >= node(l, j))``; after ``L`` levels ``j`` is the segment. Ties between breakpoints
(empty segments) and breakpoints at the int32 limits need no special case: ``x >= bp`` is the
exact predicate of the count.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.numeric import ACC_BITS, MAX_SHIFT, SLOPE_BITS

__all__ = [
    "SHARED_LEVELS",
    "SHIFT_BITS",
    "SegmentTable",
    "TableField",
    "lookup_signature",
    "meta_layout",
    "table_write_layout",
]

#: Search levels whose breakpoints come from the one shared ``meta`` read (levels 0..2: 7 nodes).
SHARED_LEVELS = 3
#: Width of a shift field (0..MAX_SHIFT).
SHIFT_BITS = MAX_SHIFT.bit_length()
#: Attributes of the per-lane block RAMs: read-during-write collisions are not emulated (see the
#: module docs: a valid program never reads an entry in the cycle LOADT writes it).
LANE_MEMORY_ATTRS = {"no_rw_check": 1}


class TableField(enum.Enum, shape=2):
    """Which field of a PWL table a :attr:`SegmentTable.write` beat carries."""

    SHIFT = 0
    BREAKPOINT = 1
    SLOPE = 2
    INTERCEPT = 3


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _check_config(config) -> None:
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    if config.acc_bits != ACC_BITS or config.slope_bits != SLOPE_BITS:
        raise ValueError(
            f"config.acc_bits = {config.acc_bits!r}, config.slope_bits = {config.slope_bits!r}: "
            f"only {ACC_BITS}-bit breakpoints/intercepts and {SLOPE_BITS}-bit slopes are supported"
        )
    levels = _log2(config.pwl_segments)
    if (1 << levels) != config.pwl_segments or levels <= SHARED_LEVELS:
        raise ValueError(
            f"config.pwl_segments = {config.pwl_segments!r}: must be a power of two above "
            f"{1 << SHARED_LEVELS}"
        )
    if config.pwl_functions < 2 or config.pwl_functions & (config.pwl_functions - 1):
        raise ValueError(
            f"config.pwl_functions = {config.pwl_functions!r}: must be a power of two >= 2"
        )


def table_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Payload of :attr:`SegmentTable.write`: one field value of one function's table.

    ``fn``: function; ``field``: :class:`TableField`; ``index``: breakpoint (0..S-2), slope or
    intercept (0..S-1) number, ignored for SHIFT; ``value``: the value, sign- or zero-extended to
    32 bits (SHIFT uses ``value[0:6]``, SLOPE ``value[0:16]``). A BREAKPOINT beat with index
    ``S-1`` (there is no such breakpoint) writes nothing.
    """
    return data.StructLayout({
        "fn": unsigned(_log2(config.pwl_functions)),
        "field": TableField,
        "index": unsigned(_log2(config.pwl_segments)),
        "value": signed(ACC_BITS),
    })


def meta_layout() -> data.StructLayout:
    """Data of the ``meta`` read: the table's shift and the shared levels' breakpoints."""
    return data.StructLayout({
        "shift": unsigned(SHIFT_BITS),
        "bp": data.ArrayLayout(signed(ACC_BITS), (1 << SHARED_LEVELS) - 1),
    })


def lookup_signature(config: AcceleratorConfig) -> wiring.Signature:
    """The read ports of the segment table, from the reader's side (``Out`` = address).

    Every read is synchronous: ``*_data`` holds the entry addressed by ``*_addr`` in the previous
    cycle. Members (``C = cols``, ``fb = log2 pwl_functions``, ``L = log2 pwl_segments``):

    ``meta_addr`` Out(fb), ``meta_data`` In(:func:`meta_layout`)
        Function ``fn``'s shift and shared-level breakpoints.
    ``level{l}_addr`` Out(fb + l).array(C), ``level{l}_data`` In(signed(32)).array(C)
        For ``SHARED_LEVELS <= l < L``: lane ``c`` reads node ``j`` of function ``fn`` at address
        ``fn * 2**l + j`` (``Cat(j, fn)``).
    ``seg_addr`` Out(fb + L).array(C), ``slope`` In(signed(16)).array(C), ``intercept``
    In(signed(32)).array(C)
        Lane ``c`` reads segment ``seg`` of ``fn`` at ``Cat(seg, fn)``.
    """
    _check_config(config)
    fb, levels, lanes = _log2(config.pwl_functions), _log2(config.pwl_segments), config.cols
    members = {"meta_addr": Out(fb), "meta_data": In(meta_layout())}
    for level in range(SHARED_LEVELS, levels):
        members[f"level{level}_addr"] = Out(fb + level).array(lanes)
        members[f"level{level}_data"] = In(signed(ACC_BITS)).array(lanes)
    members["seg_addr"] = Out(fb + levels).array(lanes)
    members["slope"] = In(signed(SLOPE_BITS)).array(lanes)
    members["intercept"] = In(signed(ACC_BITS)).array(lanes)
    return wiring.Signature(members)


class SegmentTable(wiring.Component):
    """The PWL segment tables with the read ports of a ``cols``-lane pipelined search.

    Parameters
    ----------
    config : AcceleratorConfig
        Uses ``pwl_functions``, ``pwl_segments`` (a power of two >= 16), ``cols``, ``acc_bits``
        (32) and ``slope_bits`` (16).

    Attributes
    ----------
    write : In(stream.Signature(table_write_layout(config)))
        Field writes (LOADT). Always ready; a write is visible to reads addressed two cycles or
        more after its handshake. A per-lane read addressed one cycle after the handshake (the
        cycle of the memory write) returns the old entry in simulation and is undefined on the
        FPGA (module docs).
    lookup : In(lookup_signature(config))
        The epilogue's read ports (see :func:`lookup_signature`).
    loaded : Out(pwl_functions)
        Bit ``fn`` is set by a SHIFT write to function ``fn`` (the first field of a LOADT
        record) and cleared by ``clear``: the FN_UNLOADED check of EPI.
    clear : In(1)
        Start of a run: clears ``loaded`` (the contents stay).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        _check_config(config)
        self._config = config
        super().__init__({
            "write": In(stream.Signature(table_write_layout(config))),
            "lookup": In(lookup_signature(config)),
            "loaded": Out(config.pwl_functions),
            "clear": In(1),
        })
        funcs, segs, lanes = config.pwl_functions, config.pwl_segments, config.cols
        self._shift_mem = Memory(shape=unsigned(SHIFT_BITS), depth=funcs, init=[])
        n_shared = (1 << SHARED_LEVELS) - 1
        self._shared_mem = Memory(
            shape=data.ArrayLayout(signed(ACC_BITS), n_shared), depth=funcs, init=[]
        )
        self._level_mems = {
            level: [
                Memory(shape=signed(ACC_BITS), depth=funcs << level, init=[],
                       attrs=LANE_MEMORY_ATTRS)
                for _ in range(lanes)
            ]
            for level in range(SHARED_LEVELS, self.levels)
        }
        self._slope_mems = [
            Memory(shape=signed(SLOPE_BITS), depth=funcs * segs, init=[],
                   attrs=LANE_MEMORY_ATTRS)
            for _ in range(lanes)
        ]
        self._intercept_mems = [
            Memory(shape=signed(ACC_BITS), depth=funcs * segs, init=[], attrs=LANE_MEMORY_ATTRS)
            for _ in range(lanes)
        ]

    @property
    def config(self) -> AcceleratorConfig:
        """The configuration the table was built for."""
        return self._config

    @property
    def levels(self) -> int:
        """Binary-search levels: ``log2(pwl_segments)``."""
        return _log2(self._config.pwl_segments)

    @property
    def write_latency(self) -> int:
        """Cycles from a write's handshake until reads addressed in that cycle see it."""
        return 2

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self._config
        levels = self.levels
        look = self.lookup

        # Write path: register the request, and every write enable decoded from the request
        # before that register, so that each enable is a flip-flop of its own (the breakpoint
        # decode in front of the shared LUT RAM's write enables, after the request register,
        # was the epilogue unit's critical path: docs/fpga.md). The memories write in the
        # same cycle as with a decode after the register.
        req = Signal(table_write_layout(cfg))
        m.d.comb += self.write.ready.eq(1)
        m.d.sync += req.eq(self.write.payload)
        beat = self.write.payload

        def enable(name, condition):
            en = Signal(name=f"wen_{name}")
            m.d.sync += en.eq(self.write.valid & condition)
            return en

        is_field = {f: enable(f.name.lower(), beat.field == f)
                    for f in (TableField.SHIFT, TableField.SLOPE, TableField.INTERCEPT)}

        m.submodules.shift_mem = self._shift_mem
        port = self._shift_mem.write_port()
        m.d.comb += [
            port.addr.eq(req.fn),
            port.data.eq(req.value[:SHIFT_BITS]),
            port.en.eq(is_field[TableField.SHIFT]),
        ]
        with m.If(self.clear):
            m.d.sync += self.loaded.eq(0)
        with m.Elif(is_field[TableField.SHIFT]):
            m.d.sync += self.loaded.bit_select(req.fn, 1).eq(1)

        # Breakpoint i is node j of level l where i + 1 = (2j + 1) << low, low = L-1-l: i's
        # `low` low bits are ones and bit `low` is zero, and j = i >> (low + 1) (the + 1 makes
        # no carry past bit `low`). Index S-1 (all ones) is at no level.
        def at_level(index, level):
            low = levels - 1 - level
            return ~index[low] & (index[:low].all() if low else Const(1))

        def node_index(index, level):
            return index[levels - level:levels] if level else Const(0, 1)

        is_breakpoint = beat.field == TableField.BREAKPOINT
        m.submodules.shared_mem = self._shared_mem
        port = self._shared_mem.write_port(granularity=1)
        m.d.comb += [port.addr.eq(req.fn)]
        for level in range(SHARED_LEVELS):
            for j in range(1 << level):
                pos = (1 << level) - 1 + j
                m.d.comb += [
                    port.data[pos].eq(req.value),
                    port.en[pos].eq(enable(f"shared{pos}", is_breakpoint
                                           & at_level(beat.index, level)
                                           & (node_index(beat.index, level) == j))),
                ]

        level_en = {level: enable(f"level{level}", is_breakpoint & at_level(beat.index, level))
                    for level in self._level_mems}
        for level, mems in self._level_mems.items():
            for lane, mem in enumerate(mems):
                m.submodules[f"level{level}_mem_{lane}"] = mem
                wport = mem.write_port()
                rport = mem.read_port()
                m.d.comb += [
                    wport.addr.eq(Cat(node_index(req.index, level), req.fn)),
                    wport.data.eq(req.value),
                    wport.en.eq(level_en[level]),
                    rport.addr.eq(getattr(look, f"level{level}_addr")[lane]),
                    getattr(look, f"level{level}_data")[lane].eq(rport.data),
                ]

        for name, mems, field, width in (
            ("slope", self._slope_mems, TableField.SLOPE, SLOPE_BITS),
            ("intercept", self._intercept_mems, TableField.INTERCEPT, ACC_BITS),
        ):
            for lane, mem in enumerate(mems):
                m.submodules[f"{name}_mem_{lane}"] = mem
                wport = mem.write_port()
                rport = mem.read_port()
                m.d.comb += [
                    wport.addr.eq(Cat(req.index, req.fn)),
                    wport.data.eq(req.value[:width]),
                    wport.en.eq(is_field[field]),
                    rport.addr.eq(look.seg_addr[lane]),
                    getattr(look, name)[lane].eq(rport.data),
                ]

        # The shared read: shift and levels 0..SHARED_LEVELS-1 of one function for all lanes.
        shift_read = self._shift_mem.read_port()
        shared_read = self._shared_mem.read_port()
        m.d.comb += [
            shift_read.addr.eq(look.meta_addr),
            shared_read.addr.eq(look.meta_addr),
            look.meta_data.shift.eq(shift_read.data),
            look.meta_data.bp.eq(shared_read.data),
        ]
        return m
