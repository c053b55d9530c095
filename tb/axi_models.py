"""Reusable cocotb bus models for the DMA testbenches: valid/ready stream endpoints that pack
``lib.data`` layouts, an AXI4 DRAM (cocotbext-axi ``AxiRam``) with random pauses on all five
channels and injectable error regions, and a monitor of the AXI burst rules.

Endpoints follow cocotbext-axi's style: each owns a queue; :class:`ClockedEndpoints` drives them
all in the falling half of the cycle and samples handshakes after the signals settled
(:class:`~cocotb.triggers.ReadOnly`), so accounting does not depend on event order at the edge.
"""

from __future__ import annotations

import random
from collections import deque

from cocotb.triggers import FallingEdge, ReadOnly
from cocotbext.axi import AxiBus, AxiRam

from hw.isa import encode

MAX_BURST_BEATS = 256
PAGE_BYTES = 4096


def layout_fields(layout) -> dict[str, tuple[int, int]]:
    """``{name: (offset, width)}`` of a ``lib.data.StructLayout`` (nested names joined by ``.``)."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    out = {}
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.StructLayout):
            for sub, (off, width) in layout_fields(shape).items():
                out[f"{name}.{sub}"] = (field.offset + off, width)
        else:
            out[name] = (field.offset, Shape.cast(shape).width)
    return out


def pack(fields: dict[str, tuple[int, int]], **values) -> int:
    """Pack ``values`` (unsigned or negative ints) into one integer by ``fields``."""
    word = 0
    for name, value in values.items():
        off, width = fields[name]
        word |= (int(value) & ((1 << width) - 1)) << off
    return word


def unpack(fields: dict[str, tuple[int, int]], word: int, signed=()) -> dict[str, int]:
    """Inverse of :func:`pack`; names in ``signed`` are sign-extended."""
    out = {}
    for name, (off, width) in fields.items():
        v = (word >> off) & ((1 << width) - 1)
        if name in signed and v >> (width - 1):
            v -= 1 << width
        out[name] = v
    return out


class StreamSource:
    """Drives ``<prefix>__valid`` / ``__payload`` from a queue; ``gap_prob`` holds valid low."""

    def __init__(self, dut, prefix: str, gap_prob: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.gap_prob = gap_prob
        self.rng = rng or random.Random(0)
        self.queue: deque[int] = deque()
        self._offering = False
        self.valid.value = 0

    def send(self, payloads) -> None:
        self.queue.extend(payloads)

    @property
    def idle(self) -> bool:
        return not self.queue

    def drive(self) -> None:
        offer = bool(self.queue) and not (self.gap_prob and self.rng.random() < self.gap_prob)
        if offer:
            self.payload.value = self.queue[0]
        if offer != self._offering:
            self.valid.value = int(offer)
            self._offering = offer

    def observe(self, cycle: int) -> None:
        if self._offering and self.ready.value:
            self.queue.popleft()


class StreamSink:
    """Receives ``<prefix>__*``; ``ready`` low with probability ``stall_prob``; ``on_beat``
    (optional) is called with each payload as it is taken."""

    def __init__(
        self,
        dut,
        prefix: str,
        stall_prob: float = 0.0,
        rng: random.Random | None = None,
        on_beat=None,
    ):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.stall_prob = stall_prob
        self.rng = rng or random.Random(0)
        self.received: list[int] = []
        self.on_beat = on_beat
        self._ready = False
        self.ready.value = 0

    def drive(self) -> None:
        ready = not (self.stall_prob and self.rng.random() < self.stall_prob)
        if ready != self._ready:
            self.ready.value = int(ready)
            self._ready = ready

    def observe(self, cycle: int) -> None:
        if self._ready and self.valid.value:
            v = int(self.payload.value)
            self.received.append(v)
            if self.on_beat is not None:
                self.on_beat(v)


class ClockedEndpoints:
    """One clocked coroutine driving and sampling every endpoint (and optional callbacks)."""

    def __init__(self, clk) -> None:
        self.clk = clk
        self.endpoints: list = []
        self.cycle = 0

    def add(self, ep):
        self.endpoints.append(ep)
        return ep

    async def run(self) -> None:
        falling, settled = FallingEdge(self.clk), ReadOnly()
        while True:
            await falling
            for ep in self.endpoints:
                ep.drive()
            await settled
            for ep in self.endpoints:
                ep.observe(self.cycle)
            self.cycle += 1



class UnitCommands:
    """Mixin for the testbench of one instruction unit: sends ``UnitCommand`` words on the
    unit's ``cmd`` stream and waits for it to finish.

    The testbench provides ``dut``, ``cmd`` (a :class:`StreamSource` on ``cmd``), ``cmd_f`` (the
    command layout's fields) and ``unit_name`` (for the timeout message).
    """

    unit_name = "unit"

    def send(self, instr, pc: int, base: int = 0) -> None:
        """Queue ``instr`` as a command with word offset ``pc`` and resolved DRAM ``base``."""
        word = encode(instr)
        self.cmd.send([word | (pc << self.cmd_f["pc"]) | (base << self.cmd_f["base"])])

    async def run_until_done(self, timeout: int = 400_000) -> tuple[int, int] | None:
        """Wait until the unit took every command and stays idle (None) or reports an error
        (its ``(code, pc)``)."""
        dut = self.dut
        for _ in range(timeout):
            await FallingEdge(dut.clk)
            await ReadOnly()
            if dut.error__valid.value:
                return int(dut.error__code.value), int(dut.error__pc.value)
            if self.cmd.idle and not dut.busy.value and not dut.cmd__valid.value:
                idle = 0
                for _ in range(4):
                    await FallingEdge(dut.clk)
                    await ReadOnly()
                    idle += not dut.busy.value
                if idle == 4 and self.cmd.idle:
                    return None
        raise AssertionError(f"{self.unit_name} still busy after {timeout} cycles")

def random_pauses(rng: random.Random, prob: float):
    """A cocotbext-axi pause generator: True (pause) with probability ``prob`` per cycle, in
    bursts (a pause lasts 1..4 cycles) so latency varies as well as throughput."""

    def gen():
        while True:
            if rng.random() < prob:
                for _ in range(rng.randint(1, 4)):
                    yield True
            else:
                yield False

    return gen()


class Dram:
    """The DRAM: an ``AxiRam`` on the prefix ``prefix`` (``__``-separated names).

    ``error_ranges`` are byte ranges ``[lo, hi)`` whose reads and writes answer SLVERR (for
    writes, the bytes are not written). ``pause_prob`` > 0 pauses all five channels at random.
    """

    def __init__(
        self,
        dut,
        prefix: str,
        size: int,
        *,
        rng: random.Random,
        pause_prob: float = 0.0,
        read: bool = True,
        write: bool = True,
    ) -> None:
        bus = AxiBus.from_prefix(dut, prefix, bus_separator="__") if read and write else None
        self.error_ranges: list[tuple[int, int]] = []
        if bus is None:
            raise ValueError("Dram needs both halves; use a harness that exposes a full AXI4 port")
        self.ram = AxiRam(bus, dut.clk, dut.rst, size=size)
        self.size = size
        ram = self.ram

        def bad(addr: int, n: int) -> bool:
            return any(addr < hi and addr + n > lo for lo, hi in self.error_ranges)

        orig_read, orig_write = ram.read_if._read, ram.write_if._write

        async def _read(address, length):
            if bad(address, length):
                raise OSError(f"injected read error at {address:#x}")
            return await orig_read(address, length)

        async def _write(address, data):
            if bad(address, len(data)):
                raise OSError(f"injected write error at {address:#x}")
            return await orig_write(address, data)

        ram.read_if._read = _read
        ram.write_if._write = _write
        if pause_prob:
            for ch in (
                ram.write_if.aw_channel,
                ram.write_if.w_channel,
                ram.write_if.b_channel,
                ram.read_if.ar_channel,
                ram.read_if.r_channel,
            ):
                ch.set_pause_generator(random_pauses(random.Random(rng.random()), pause_prob))


class BurstMonitor:
    """Checks every AR and AW handshake of ``<prefix>__*``: INCR, full-width beats, at most 256
    beats, no 4 KiB crossing, and (writes) that ``wlast`` closes each burst at its length.
    Violations are collected in :attr:`errors` (the TB asserts it is empty)."""

    def __init__(self, dut, prefix: str, beat_bytes: int) -> None:
        self.dut, self.p, self.bw = dut, prefix, beat_bytes
        self.errors: list[str] = []
        self.ar_bursts = 0
        self.aw_bursts = 0
        self.max_outstanding_reads = 0
        self._aw_lens: deque[int] = deque()
        self._w_beat = 0

    def _sig(self, name):
        return getattr(self.dut, f"{self.p}__{name}")

    def _check(self, kind: str, addr: int, length: int, size: int, burst: int) -> None:
        beats = length + 1
        if burst != 1:
            self.errors.append(f"{kind} burst type {burst} (expected INCR=1)")
        if 1 << size != self.bw:
            self.errors.append(f"{kind} size {size}: beats of {1 << size} bytes, bus {self.bw}")
        if addr % self.bw:
            self.errors.append(f"{kind} address {addr:#x} not beat aligned")
        if beats > MAX_BURST_BEATS:
            self.errors.append(f"{kind} burst of {beats} beats")
        if addr % PAGE_BYTES + beats * self.bw > PAGE_BYTES:
            self.errors.append(f"{kind} burst at {addr:#x} of {beats} beats crosses 4 KiB")

    async def run(self) -> None:
        s = self._sig
        outstanding = 0
        # Sample in the settled second half of each cycle: cocotbext-axi drives its outputs after
        # the rising edge and the endpoints here drive theirs at the falling edge.
        while True:
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            if s("arvalid").value and s("arready").value:
                self.ar_bursts += 1
                outstanding += 1
                self._check(
                    "AR",
                    int(s("araddr").value),
                    int(s("arlen").value),
                    int(s("arsize").value),
                    int(s("arburst").value),
                )
            if s("rvalid").value and s("rready").value and s("rlast").value:
                outstanding -= 1
            self.max_outstanding_reads = max(self.max_outstanding_reads, outstanding)
            if s("awvalid").value and s("awready").value:
                self.aw_bursts += 1
                self._aw_lens.append(int(s("awlen").value) + 1)
                self._check(
                    "AW",
                    int(s("awaddr").value),
                    int(s("awlen").value),
                    int(s("awsize").value),
                    int(s("awburst").value),
                )
            if s("wvalid").value and s("wready").value:
                if not self._aw_lens:
                    self.errors.append("W beat before its AW")
                    continue
                self._w_beat += 1
                last = bool(s("wlast").value)
                if last != (self._w_beat == self._aw_lens[0]):
                    self.errors.append(
                        f"wlast={int(last)} at beat {self._w_beat} of a {self._aw_lens[0]}-beat "
                        "burst"
                    )
                if last:
                    self._aw_lens.popleft()
                    self._w_beat = 0
