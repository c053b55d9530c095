"""The host driver of one accelerator: :class:`Device` over a :class:`~nmx.runtime.Transport`.

Registers are addressed by name through :mod:`hw.registers` (the one register map; a 64-bit
register is two words, low word first, and reading the low word latches the high one). A run is
``PROG_ADDR``, ``PROG_LEN``, ``DRAM_LIMIT``, then ``CTRL`` with ``start`` (and ``irq_enable``);
:meth:`Device.wait` waits for ``STATUS.state`` DONE by the interrupt or by polling, and a
non-zero status code becomes a :class:`RunError` naming the code and the failing word offset.

Bundles (:class:`compiler.backend.bundle.Bundle`): :meth:`Device.run_bundle` writes the DRAM
image (with the quantised inputs) at device address 0 and the program above it (4 KiB aligned),
runs it with ``DRAM_LIMIT`` = the image size (the golden model's DRAM_RANGE rule), and reads the
final image and the outputs back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hw.config import AcceleratorConfig
from hw.errors import NmxError
from hw.isa import WORD_BYTES
from hw.registers import (
    COUNTERS,
    ID_VALUE,
    REGISTER_BYTES,
    Register,
    RunState,
    by_name,
    decode_fields,
)
from nmx.runtime.transport import Transport
from sim.dram_image import DramImage
from sim.golden import Status, StatusCode

__all__ = ["PROGRAM_ALIGN", "BundleLayout", "Device", "DeviceError", "DeviceRun", "RunError",
           "RunTimeout", "bundle_layout"]

#: Alignment of a bundle's program above its DRAM image (PROG_ADDR needs 16; a page keeps the
#: program's fetch bursts apart from the data's).
PROGRAM_ALIGN = 4096
_POLL_S = 1e-3


class DeviceError(NmxError):
    """The device is not the accelerator expected, or a register access failed."""


class RunError(DeviceError):
    """A run ended with a non-zero status code.

    Attributes
    ----------
    code : StatusCode
        The status code (``STATUS.code``).
    code_name : str
        Its name, e.g. ``"DRAM_RANGE"``.
    offset : int
        ``STATUS_OFFSET``: word offset of the failing instruction.
    counters : dict
        The event counters when the run ended.
    """

    def __init__(self, code: int, offset: int, counters: dict[str, int]):
        try:
            self.code = StatusCode(code)
            self.code_name = self.code.name
        except ValueError:
            self.code, self.code_name = code, f"UNKNOWN_{code}"
        self.offset = offset
        self.counters = counters
        super().__init__(f"run failed: {self.code_name} (code {code}) at word {offset}")


class RunTimeout(DeviceError):
    """The device did not finish within the timeout."""


@dataclass(frozen=True)
class DeviceRun:
    """One finished run: status, counters, the final DRAM image (bundle runs) and wall time.

    ``status`` is a :class:`sim.golden.Status` (code and word offset), comparable with the
    golden model's.
    """

    status: Status
    counters: dict[str, int]
    dram: DramImage | None = None
    wall_s: float = 0.0

    @property
    def cycles(self) -> int:
        """The RTL's ``CYCLES`` counter: cycles from start to done."""
        return self.counters["CYCLES"]


@dataclass(frozen=True)
class BundleLayout:
    """Where :meth:`Device.load_bundle` put a bundle in device memory."""

    image_size: int
    prog_addr: int
    prog_len: int

    @property
    def mem_needed(self) -> int:
        """Bytes of device DRAM the bundle occupies (image and program)."""
        return self.prog_addr + WORD_BYTES * self.prog_len


def _program_bytes(words) -> bytes:
    return b"".join(int(w).to_bytes(WORD_BYTES, "little") for w in words)


def bundle_layout(bundle) -> BundleLayout:
    """The layout :meth:`Device.load_bundle` uses for ``bundle`` (to size device memory)."""
    size = bundle.image.size
    prog_addr = -(-size // PROGRAM_ALIGN) * PROGRAM_ALIGN
    return BundleLayout(size, prog_addr, len(bundle.program.words()))


class Device:
    """One accelerator behind ``transport``, generated for ``config``.

    Parameters
    ----------
    transport : Transport
        Register and DRAM access (:class:`sim.rtl_harness.VerilatorTransport`, ``MmioTransport``).
    config : AcceleratorConfig
        The config the hardware was generated for; the ``ID`` and ``FINGERPRINT`` registers are
        checked against it unless ``check_id`` is False.
    """

    def __init__(self, transport: Transport, config: AcceleratorConfig, *,
                 check_id: bool = True):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
        for attr in ("read32", "write32", "read_mem", "write_mem", "wait_irq", "mem_size"):
            if not hasattr(transport, attr):
                raise TypeError(f"transport {transport!r} lacks {attr!r} (nmx.runtime.Transport)")
        self._t = transport
        self._config = config
        if check_id:
            ident = self.read("ID")
            if ident != ID_VALUE:
                raise DeviceError(f"ID register reads {ident:#010x}, expected {ID_VALUE:#010x} "
                                  "(not a NeuralMatrix accelerator of this ISA version)")
            fp = self.read("FINGERPRINT")
            if fp != int(config.fingerprint, 16):
                raise DeviceError(f"the device was generated for config fingerprint {fp:010x}, "
                                  f"not {config.fingerprint} (the config given)")

    @property
    def transport(self) -> Transport:
        return self._t

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    # ------------------------------------------------------------------ registers

    def read(self, name: str | Register) -> int:
        """A register's value by name (64-bit registers low word first)."""
        reg = by_name(name) if isinstance(name, str) else name
        value = 0
        for w in range(reg.words):
            value |= self._t.read32(reg.offset + REGISTER_BYTES * w) << (32 * w)
        return value

    def write(self, name: str | Register, value: int) -> None:
        """Write a register by name; read-only registers and values that do not fit raise."""
        reg = by_name(name) if isinstance(name, str) else name
        if reg.access == "RO":
            raise DeviceError(f"register {reg.name} is read-only")
        if not 0 <= value < 1 << reg.width:
            raise DeviceError(f"value {value:#x} does not fit the {reg.width}-bit register "
                              f"{reg.name}")
        for w in range(reg.words):
            self._t.write32(reg.offset + REGISTER_BYTES * w, (value >> (32 * w)) & 0xFFFFFFFF)

    def fields(self, name: str) -> dict[str, int]:
        """A register's fields, e.g. ``fields("STATUS") == {"state": 2, "code": 0}``."""
        return decode_fields(name, self.read(name))

    def counters(self) -> dict[str, int]:
        """Every event counter of ``hw.registers.COUNTERS`` by name."""
        return {name: self.read(name) for name, _ in COUNTERS}

    def state(self) -> RunState:
        """``STATUS.state``."""
        return RunState(self.fields("STATUS")["state"])

    # ------------------------------------------------------------------ runs

    def run(self, program_addr: int, prog_len: int, dram_limit: int, irq: bool = True) -> None:
        """Start the program of ``prog_len`` words at ``program_addr``; LOAD/LOADT/STORE may
        touch bytes below ``dram_limit``. ``irq`` enables the interrupt at the end."""
        if program_addr % 16:
            raise DeviceError(f"program address {program_addr:#x} is not 16-byte aligned "
                              "(PROG_ADDR bits 3:0 read as zero)")
        if self.state() == RunState.BUSY:
            raise DeviceError("the device is BUSY with another run")
        self.write("PROG_ADDR", program_addr)
        self.write("PROG_LEN", prog_len)
        self.write("DRAM_LIMIT", dram_limit)
        ctrl = by_name("CTRL")
        value = 1 << ctrl.field("start").lsb
        if irq:
            value |= 1 << ctrl.field("irq_enable").lsb
        self.write(ctrl, value)
        self._irq = irq

    def wait(self, timeout: float = 60.0, *, check: bool = True) -> Status:
        """Wait until the run is DONE (by ``wait_irq`` if :meth:`run` enabled the interrupt,
        else by polling ``STATUS``); return its status.

        Raises :class:`RunError` for a non-zero status code when ``check`` is True, and
        :class:`RunTimeout` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if getattr(self, "_irq", False):
            if not self._t.wait_irq(timeout):
                raise RunTimeout(f"no interrupt within {timeout:g} s; STATUS "
                                 f"{self.fields('STATUS')}")
        else:
            # A transport that can poll on its own (the Verilated one, inside its C++ loop).
            poll = getattr(self._t, "run_until_idle", None)
            while self.state() == RunState.BUSY:
                if time.monotonic() >= deadline:
                    raise RunTimeout(f"still BUSY after {timeout:g} s")
                if poll is not None:
                    poll(200_000)
                else:
                    time.sleep(_POLL_S)
        status = self.fields("STATUS")
        if status["state"] != RunState.DONE:
            raise DeviceError(f"run ended in state {RunState(status['state']).name}, not DONE")
        code, offset = status["code"], self.read("STATUS_OFFSET")
        if check and code != StatusCode.OK:
            raise RunError(code, offset, self.counters())
        try:
            return Status(StatusCode(code), offset)
        except ValueError:
            raise DeviceError(f"STATUS.code {code} is not a known status code") from None

    def soft_reset(self) -> None:
        """Reset the machine (not the RW registers) to IDLE, e.g. after a timeout."""
        ctrl = by_name("CTRL")
        self.write(ctrl, 1 << ctrl.field("soft_reset").lsb)

    def execute(self, words: list[int], dram: bytes | np.ndarray, *, timeout: float = 600.0,
                irq: bool = True, dram_limit: int | None = None) -> DeviceRun:
        """Run raw program ``words`` on DRAM contents ``dram`` (written at address 0, the
        program 4 KiB-aligned above it, ``DRAM_LIMIT`` = ``len(dram)`` unless given); return
        the status (no exception for an error code), counters and the final DRAM contents."""
        data = np.frombuffer(bytes(dram), dtype=np.uint8) if not isinstance(
            dram, np.ndarray) else dram.astype(np.uint8, copy=False)
        prog_addr = -(-data.size // PROGRAM_ALIGN) * PROGRAM_ALIGN
        program = _program_bytes(words)
        if prog_addr + len(program) > self._t.mem_size:
            raise DeviceError(f"{data.size}-byte DRAM image and {len(words)}-word program need "
                              f"{prog_addr + len(program)} bytes; the device has "
                              f"{self._t.mem_size}")
        self._t.write_mem(0, data.tobytes())
        self._t.write_mem(prog_addr, program)
        t0 = time.perf_counter()
        self.run(prog_addr, len(words), data.size if dram_limit is None else dram_limit, irq=irq)
        status = self.wait(timeout, check=False)
        wall = time.perf_counter() - t0
        final = np.frombuffer(self._t.read_mem(0, data.size), dtype=np.uint8).copy()
        return DeviceRun(status, self.counters(), DramImage(final), wall)

    # ------------------------------------------------------------------ bundles

    def load_bundle(self, bundle, inputs) -> BundleLayout:
        """Write ``bundle``'s DRAM image with ``inputs`` quantised into it at address 0 and its
        program above it; return where they are."""
        if bundle.config != self._config:
            raise DeviceError(f"the bundle is compiled for config {bundle.config.fingerprint}, "
                              f"the device is {self._config.fingerprint}")
        layout = bundle_layout(bundle)
        if layout.mem_needed > self._t.mem_size:
            raise DeviceError(f"the bundle needs {layout.mem_needed} bytes of device DRAM "
                              f"(image {layout.image_size}, program {layout.prog_len} words); "
                              f"the device has {self._t.mem_size}")
        image = bundle.image_for(bundle.quantize_inputs(inputs))
        self._t.write_mem(0, image.data.tobytes())
        self._t.write_mem(layout.prog_addr, _program_bytes(bundle.program.words()))
        return layout

    def read_image(self, layout: BundleLayout) -> DramImage:
        """The bundle's DRAM image region as it is now in device memory."""
        raw = np.frombuffer(self._t.read_mem(0, layout.image_size), dtype=np.uint8).copy()
        return DramImage(raw)

    def run_bundle(self, bundle, inputs, *, timeout: float = 3600.0, irq: bool = True,
                   check: bool = True) -> tuple[DeviceRun, list, list]:
        """Load, run and read back a bundle: ``(run, real outputs, integer outputs)``.

        A non-zero status raises :class:`RunError` when ``check`` (then no outputs are read).
        """
        layout = self.load_bundle(bundle, inputs)
        t0 = time.perf_counter()
        self.run(layout.prog_addr, layout.prog_len, layout.image_size, irq=irq)
        status = self.wait(timeout, check=check)
        wall = time.perf_counter() - t0
        dram = self.read_image(layout)
        run = DeviceRun(status, self.counters(), dram, wall)
        if not status.ok:
            return run, [], []
        outs, ints = bundle.read_outputs(dram)
        return run, outs, ints
