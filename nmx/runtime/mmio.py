"""Reach an accelerator on a board through memory-mapped I/O: the runtime's board transport.

:class:`MmioTransport` implements the runtime's ``Transport`` protocol
(``nmx.runtime.transport``) over two ``mmap`` windows and an optional UIO file descriptor:

- **registers**: the accelerator's AXI4-Lite slave (:mod:`hw.registers`), mapped from a UIO
  device (``/dev/uioN``, map ``k`` at offset ``k * page size``) or from ``/dev/mem`` at the
  physical base address the SoC assigns to the slave;
- **DRAM**: a physically contiguous buffer the accelerator's AXI master reads and writes, mapped
  from a u-dma-buf / udmabuf device (``/dev/udmabufN``) or from ``/dev/mem`` over reserved
  memory. The accelerator sees the buffer at ``phys_base``: *device address* ``a`` is byte
  ``a - phys_base`` of the mapping;
- **interrupt**: the UIO device's file descriptor (``uio_pdrv_genirq``): writing the 32-bit
  value 1 re-enables the interrupt, a read returns the interrupt count once it fired. Without
  UIO, :meth:`MmioTransport.wait_irq` polls ``STATUS`` and ``CTRL`` for the condition that
  drives the ``irq`` pin (``STATUS.state`` DONE with ``CTRL.irq_enable`` set).

Register words are read and written as single aligned 32-bit accesses (a ``memoryview`` of
format ``I`` over the mapping), never as byte copies: an AXI4-Lite slave sees one transaction
per word, which matters for the 64-bit counters whose low-word read latches the high word.

Any file can stand in for the device files, which is how the tests run: a temporary file as
the register window, another as DRAM, a socket pair as the UIO descriptor. See
``docs/fpga.md`` (section "Running on the board") for the board set-up.
"""

from __future__ import annotations

import mmap
import os
import select
import stat
import struct
import sys
import time
from pathlib import Path

from hw.errors import NmxError
from hw.registers import REGISTER_BYTES, REGISTERS, RunState, by_name

__all__ = ["REGISTER_WINDOW_BYTES", "MmioError", "MmioTransport"]

#: Bytes of the register map (its last register's end): the default register window.
REGISTER_WINDOW_BYTES = max(r.offset + r.width // 8 for r in REGISTERS)

_STATUS = by_name("STATUS")
_CTRL = by_name("CTRL")
_STATE_MASK = _STATUS.field("state").mask
_STATE_LSB = _STATUS.field("state").lsb
_IRQ_ENABLE = _CTRL.field("irq_enable").mask
_UIO_WORD = struct.Struct("=I")  # UIO reads and writes native-endian 32-bit integers


class MmioError(NmxError):
    """A board access that cannot be made: bad address or length, a device file that cannot be
    opened or mapped, a closed transport, a UIO descriptor that stopped answering."""


def _check_int(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise MmioError(f"{name} must be >= {minimum}, got {value:#x}")
    return value


class _Window:
    """One ``mmap`` of ``size`` bytes of the file ``path`` from byte ``offset``.

    ``mmap`` needs a page-aligned file offset: the mapping starts at the page holding
    ``offset`` and :attr:`view` starts ``offset % page`` bytes into it.
    """

    def __init__(self, path: str | os.PathLike, offset: int, size: int, what: str) -> None:
        self.path = str(path)
        self.what = what
        page = mmap.ALLOCATIONGRANULARITY
        start = offset - offset % page
        self.delta = offset - start
        flags = os.O_RDWR | getattr(os, "O_SYNC", 0)  # O_SYNC: uncached on /dev/mem, u-dma-buf
        try:
            self.fd = os.open(self.path, flags)
        except OSError as e:
            raise MmioError(f"{what}: cannot open {self.path!r}: {e.strerror}") from None
        try:
            info = os.fstat(self.fd)
            if stat.S_ISREG(info.st_mode) and info.st_size < offset + size:
                raise MmioError(
                    f"{what}: {self.path!r} holds {info.st_size:#x} bytes, the window needs "
                    f"{offset + size:#x} (offset {offset:#x} + size {size:#x})"
                )
            try:
                self.map = mmap.mmap(
                    self.fd, self.delta + size, mmap.MAP_SHARED,
                    mmap.PROT_READ | mmap.PROT_WRITE, offset=start,
                )
            except (OSError, ValueError, OverflowError) as e:
                raise MmioError(
                    f"{what}: cannot map {size:#x} bytes of {self.path!r} at offset "
                    f"{offset:#x}: {e}"
                ) from None
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map)[self.delta : self.delta + size]

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


class MmioTransport:
    """Registers, DRAM and interrupt of one accelerator on a board, through ``mmap``.

    Parameters
    ----------
    regs_path : path-like
        Device file of the register window: ``/dev/uioN`` or ``/dev/mem`` (or a regular file).
    regs_offset : int
        File offset of the registers: ``k * page size`` for UIO map ``k`` (0 for the first),
        the AXI4-Lite slave's physical base address for ``/dev/mem``. Need not be page-aligned.
    mem_path : path-like
        Device file of the DRAM buffer: ``/dev/udmabufN`` (u-dma-buf), or ``/dev/mem`` over
        reserved memory (or a regular file).
    mem_offset : int
        File offset of the buffer: 0 for u-dma-buf, its physical address for ``/dev/mem``.
    mem_size : int
        Bytes of the buffer (the host's view of device DRAM, :attr:`mem_size`).
    phys_base : int
        Address at which the accelerator's AXI master sees the buffer's first byte: the
        buffer's physical address (u-dma-buf's ``phys_addr`` in sysfs) when the master's path
        does not translate addresses, 0 behind an interconnect that maps the buffer to address
        0. Device addresses run from ``phys_base`` to ``phys_base + mem_size - 1``; an access
        outside raises :class:`MmioError` (so code that assumes device DRAM from address 0
        fails there, loudly, on a buffer seen at a non-zero address).
    uio : path-like or int, optional
        The UIO device whose descriptor delivers the accelerator's interrupt (a path, opened
        and closed by the transport, or an open descriptor, left open by :meth:`close`).
        ``None``: :meth:`wait_irq` polls ``STATUS``.
    regs_size : int, optional
        Bytes of the register window; default :data:`REGISTER_WINDOW_BYTES`, the whole map.
    poll_interval : float
        Seconds between two ``STATUS`` reads when :meth:`wait_irq` polls.

    Raises
    ------
    MmioError
        A file cannot be opened or mapped, or is too small for its window; a size is zero.
    TypeError
        A size, offset or address is not an int.
    """

    def __init__(
        self,
        regs_path: str | os.PathLike,
        regs_offset: int,
        mem_path: str | os.PathLike,
        mem_offset: int,
        mem_size: int,
        phys_base: int,
        uio: str | os.PathLike | int | None = None,
        *,
        regs_size: int = REGISTER_WINDOW_BYTES,
        poll_interval: float = 1e-3,
    ) -> None:
        if sys.byteorder != "little":
            raise MmioError("MmioTransport assumes a little-endian host (the AXI4-Lite words "
                            f"are little-endian); this host is {sys.byteorder}-endian")
        _check_int("regs_offset", regs_offset)
        _check_int("mem_offset", mem_offset)
        _check_int("mem_size", mem_size, 1)
        _check_int("phys_base", phys_base)
        _check_int("regs_size", regs_size, REGISTER_BYTES)
        if regs_size % REGISTER_BYTES:
            raise MmioError(f"regs_size {regs_size:#x} is not a multiple of {REGISTER_BYTES}")
        if not poll_interval > 0:
            raise MmioError(f"poll_interval must be > 0 s, got {poll_interval!r}")
        self._mem_size = mem_size
        self._phys_base = phys_base
        self._poll_interval = float(poll_interval)
        self._regs: _Window | None = None
        self._mem: _Window | None = None
        self._words: memoryview | None = None
        self._uio_fd: int | None = None
        self._owns_uio = False
        try:
            self._regs = _Window(regs_path, regs_offset, regs_size, "register window")
            self._words = self._regs.view.cast("I")
            self._mem = _Window(mem_path, mem_offset, mem_size, "DRAM buffer")
            if isinstance(uio, int) and not isinstance(uio, bool):
                self._uio_fd = uio
            elif uio is not None:
                try:
                    self._uio_fd = os.open(os.fspath(uio), os.O_RDWR)
                except OSError as e:
                    raise MmioError(f"UIO device: cannot open {str(uio)!r}: {e.strerror}") from None
                self._owns_uio = True
        except BaseException:
            self.close()
            raise
        self.regs_path = Path(regs_path)
        self.mem_path = Path(mem_path)

    # -- Transport protocol -------------------------------------------------------------------

    @property
    def mem_size(self) -> int:
        """Bytes of device DRAM the host can reach (the buffer's size)."""
        return self._mem_size

    @property
    def phys_base(self) -> int:
        """Device address of the buffer's first byte."""
        return self._phys_base

    @property
    def mem_end(self) -> int:
        """One past the last device address of the buffer: a ``DRAM_LIMIT`` that covers it."""
        return self._phys_base + self._mem_size

    @property
    def has_uio(self) -> bool:
        """True when interrupts come from a UIO descriptor, False when :meth:`wait_irq` polls."""
        return self._uio_fd is not None

    def read32(self, offset: int) -> int:
        """Read the register word at byte ``offset`` (one aligned 32-bit load)."""
        return self._register_words()[self._word_index(offset)]

    def write32(self, offset: int, value: int) -> None:
        """Write ``value`` (0 .. 2**32 - 1) to the register word at byte ``offset``."""
        index = self._word_index(offset)
        _check_int("register value", value)
        if value >> 32:
            raise MmioError(f"register value {value:#x} at offset {offset:#05x} does not fit in "
                            "32 bits")
        self._register_words()[index] = value

    def read_mem(self, address: int, length: int) -> bytes:
        """Read ``length`` bytes of device DRAM from device address ``address``."""
        start = self._mem_index(address, _check_int("length", length), "read")
        return bytes(self._mem_view()[start : start + length])

    def write_mem(self, address: int, data: bytes) -> None:
        """Write ``data`` (bytes-like) to device DRAM at device address ``address``."""
        try:
            src = memoryview(data).cast("B")
        except TypeError:
            raise TypeError(f"data must be bytes-like, got {type(data).__name__}") from None
        start = self._mem_index(address, len(src), "write")
        self._mem_view()[start : start + len(src)] = src

    def wait_irq(self, timeout: float) -> bool:
        """Block until the accelerator's ``irq`` is high or ``timeout`` seconds passed.

        With UIO: drops an interrupt counted before this call (a finished earlier run), writes 1
        to re-enable the interrupt and waits on the descriptor with ``select``. ``irq`` is a
        level (high while ``STATUS.state`` is DONE and ``CTRL.irq_enable`` is set), so a run that
        already ended raises it again as soon as it is re-enabled. Without UIO: polls ``STATUS``
        and ``CTRL`` every ``poll_interval`` seconds for that same condition.

        Returns
        -------
        bool
            True if ``irq`` was seen, False on timeout.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise MmioError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        self._register_words()  # raises when closed
        if self._uio_fd is None:
            return self._poll_irq(float(timeout))
        fd = self._uio_fd
        while select.select([fd], [], [], 0)[0]:
            self._read_uio_count(fd)
        try:
            os.write(fd, _UIO_WORD.pack(1))
        except OSError as e:
            raise MmioError(f"UIO: re-enabling the interrupt failed: {e.strerror}") from None
        if not select.select([fd], [], [], timeout)[0]:
            return False
        self._read_uio_count(fd)
        return True

    def close(self) -> None:
        """Unmap both windows and close the descriptors it opened; a second call does nothing."""
        if self._words is not None:
            self._words.release()
            self._words = None
        for window in (self._regs, self._mem):
            if window is not None:
                window.close()
        self._regs = self._mem = None
        if self._uio_fd is not None and self._owns_uio:
            os.close(self._uio_fd)
        self._uio_fd = None

    def __enter__(self) -> MmioTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._regs is None else "open"
        return (f"MmioTransport(regs={str(self.regs_path)!r}, mem={str(self.mem_path)!r}, "
                f"phys_base={self._phys_base:#x}, mem_size={self._mem_size:#x}, "
                f"irq={'uio' if self.has_uio else 'poll'}, {state})")

    # -- internals ------------------------------------------------------------------------------

    def _register_words(self) -> memoryview:
        if self._words is None:
            raise MmioError("MmioTransport is closed")
        return self._words

    def _mem_view(self) -> memoryview:
        if self._mem is None:
            raise MmioError("MmioTransport is closed")
        return self._mem.view

    def _word_index(self, offset: int) -> int:
        _check_int("register offset", offset)
        words = self._register_words()
        size = len(words) * REGISTER_BYTES
        if offset % REGISTER_BYTES or offset >= size:
            raise MmioError(
                f"register offset {offset:#x} is not a {REGISTER_BYTES}-byte aligned offset "
                f"inside the register window (0x0 .. {size - REGISTER_BYTES:#x})"
            )
        return offset // REGISTER_BYTES

    def _mem_index(self, address: int, length: int, what: str) -> int:
        _check_int("device address", address)
        end = self.mem_end
        if address < self._phys_base or address + length > end:
            raise MmioError(
                f"DRAM {what} of {length} byte(s) at device address {address:#x} leaves the "
                f"buffer {self._phys_base:#x} .. {end - 1:#x} ({self._mem_size} bytes)"
            )
        return address - self._phys_base

    def _read_uio_count(self, fd: int) -> int:
        try:
            data = os.read(fd, _UIO_WORD.size)
        except OSError as e:
            raise MmioError(f"UIO: reading the interrupt count failed: {e.strerror}") from None
        if len(data) != _UIO_WORD.size:
            raise MmioError(f"UIO: read returned {len(data)} bytes instead of the 4-byte "
                            "interrupt count (descriptor closed?)")
        return _UIO_WORD.unpack(data)[0]

    def _irq_level(self) -> bool:
        status = self.read32(_STATUS.offset)
        ctrl = self.read32(_CTRL.offset)
        done = (status & _STATE_MASK) >> _STATE_LSB == RunState.DONE
        return done and bool(ctrl & _IRQ_ENABLE)

    def _poll_irq(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._irq_level():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self._poll_interval, left))
