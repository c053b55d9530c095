"""nmx.runtime.mmio.MmioTransport against file-backed mappings.

Temporary files stand in for the register window and the DRAM buffer (mapped MAP_SHARED, so a
second mapping of the same file sees every access, as the hardware would), and one end of a
socket pair for the UIO descriptor; a thread plays the device: it flips STATUS and, like
``uio_pdrv_genirq``, delivers an interrupt count only after the host re-enabled the interrupt.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
import time

import pytest

from hw.registers import REGISTERS, RunState, by_name
from nmx.runtime.mmio import REGISTER_WINDOW_BYTES, MmioError, MmioTransport

PAGE = mmap.ALLOCATIONGRANULARITY
STATUS = by_name("STATUS").offset
CTRL = by_name("CTRL").offset
IRQ_ENABLE = by_name("CTRL").field("irq_enable").mask
DONE = int(RunState.DONE) << by_name("STATUS").field("state").lsb
BUSY = int(RunState.BUSY) << by_name("STATUS").field("state").lsb
PHYS = 0x3F00_0000
MEM_SIZE = 3 * PAGE


def _file(path, size):
    path.write_bytes(bytes(size))
    return path


@pytest.fixture
def board(tmp_path):
    """Files for the register window (second page of a 'UIO' file) and a DRAM buffer."""
    regs = _file(tmp_path / "uio0", 2 * PAGE)
    mem = _file(tmp_path / "udmabuf0", MEM_SIZE)
    return regs, mem


def _peer_map(path, size, offset=0):
    """A second mapping of ``path``: the device's view of what the host writes."""
    f = open(path, "r+b")  # noqa: SIM115 - closed by the caller through the returned pair
    return f, mmap.mmap(f.fileno(), size, offset=offset)


def test_register_words_land_at_their_offsets(board):
    regs, mem = board
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS) as t:
        for i, reg in enumerate(REGISTERS):
            t.write32(reg.offset, 0xA5000000 | i)
        t.write32(REGISTER_WINDOW_BYTES - 4, 0xFFFFFFFF)
        f, peer = _peer_map(regs, 2 * PAGE)
        with f, peer:
            for i, reg in enumerate(REGISTERS):
                word = struct.unpack_from("<I", peer, PAGE + reg.offset)[0]
                assert word == 0xA5000000 | i, reg.name
                assert t.read32(reg.offset) == word
            # the host's view starts at regs_offset: nothing lands in the first page
            assert peer[:PAGE] == bytes(PAGE)
            struct.pack_into("<I", peer, PAGE + STATUS, 0x52)
            assert t.read32(STATUS) == 0x52
        assert t.read32(REGISTER_WINDOW_BYTES - 4) == 0xFFFFFFFF


def test_unaligned_register_window_offset(tmp_path):
    """/dev/mem at an AXI-Lite base that is not page-aligned: the window starts mid-page."""
    regs = _file(tmp_path / "mem", 2 * PAGE)
    mem = _file(tmp_path / "buf", PAGE)
    with MmioTransport(regs, PAGE + 0x100, mem, 0, PAGE, 0) as t:
        t.write32(0x8, 0x12345678)
    assert struct.unpack_from("<I", regs.read_bytes(), PAGE + 0x108)[0] == 0x12345678


def test_dram_at_device_addresses(board):
    regs, mem = board
    data = bytes(range(256)) * 3
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS) as t:
        assert t.mem_size == MEM_SIZE and t.mem_end == PHYS + MEM_SIZE
        t.write_mem(PHYS + 100, data)
        assert t.read_mem(PHYS + 100, len(data)) == data
        t.write_mem(PHYS + MEM_SIZE - 4, b"\x01\x02\x03\x04")  # the last bytes are reachable
        assert t.read_mem(PHYS + MEM_SIZE - 2, 2) == b"\x03\x04"
        t.write_mem(PHYS, bytearray(b"x"))
        t.write_mem(PHYS + 1, memoryview(b"y"))
        assert t.read_mem(PHYS, 0) == b""
    raw = mem.read_bytes()
    assert raw[100 : 100 + len(data)] == data
    assert raw[MEM_SIZE - 4 :] == b"\x01\x02\x03\x04"
    assert raw[:2] == b"xy"


def test_dram_buffer_at_file_offset(tmp_path):
    """/dev/mem over reserved memory: the buffer is at a file offset (its physical address)."""
    regs = _file(tmp_path / "regs", PAGE)
    mem = _file(tmp_path / "devmem", 4 * PAGE)
    with MmioTransport(regs, 0, mem, 2 * PAGE, PAGE, 2 * PAGE) as t:
        t.write_mem(2 * PAGE + 8, b"abc")
    assert mem.read_bytes()[2 * PAGE + 8 : 2 * PAGE + 11] == b"abc"


@pytest.mark.parametrize(
    ("address", "length"),
    [(PHYS - 1, 1), (PHYS + MEM_SIZE, 1), (PHYS + MEM_SIZE - 3, 4), (0, 4), (PHYS, MEM_SIZE + 1)],
)
def test_dram_out_of_range_is_refused_and_changes_nothing(board, address, length):
    regs, mem = board
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS) as t:
        with pytest.raises(MmioError, match=rf"device address {address:#x} leaves the buffer "
                                            rf"{PHYS:#x} \.\. {PHYS + MEM_SIZE - 1:#x}"):
            t.write_mem(address, b"\xff" * length)
        with pytest.raises(MmioError, match="leaves the buffer"):
            t.read_mem(address, length)
    assert mem.read_bytes() == bytes(MEM_SIZE)


@pytest.mark.parametrize("offset", [2, REGISTER_WINDOW_BYTES, REGISTER_WINDOW_BYTES + 4, 1 << 40])
def test_register_offset_out_of_range(board, offset):
    regs, mem = board
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS) as t:
        with pytest.raises(MmioError, match=rf"register offset {offset:#x} is not a 4-byte"):
            t.read32(offset)
        with pytest.raises(MmioError, match="register offset"):
            t.write32(offset, 1)


def test_bad_values_and_types(board):
    regs, mem = board
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS) as t:
        with pytest.raises(MmioError, match="does not fit in 32 bits"):
            t.write32(CTRL, 1 << 32)
        with pytest.raises(MmioError, match="register value must be >= 0"):
            t.write32(CTRL, -1)
        with pytest.raises(TypeError, match="register offset must be an int"):
            t.read32(4.0)
        with pytest.raises(TypeError, match="data must be bytes-like"):
            t.write_mem(PHYS, "text")
        with pytest.raises(MmioError, match="length must be >= 0"):
            t.read_mem(PHYS, -1)
        with pytest.raises(MmioError, match="timeout must be"):
            t.wait_irq(-1)
    assert regs.read_bytes() == bytes(2 * PAGE)


def test_files_too_small_or_missing(tmp_path, board):
    regs, mem = board
    with pytest.raises(MmioError, match=r"DRAM buffer: .* holds 0x3000 bytes, the window needs "
                                        r"0x4000"):
        MmioTransport(regs, PAGE, mem, 0, MEM_SIZE + PAGE, PHYS)
    with pytest.raises(MmioError, match="register window: cannot open .*nothing"):
        MmioTransport(tmp_path / "nothing", 0, mem, 0, MEM_SIZE, PHYS)
    with pytest.raises(MmioError, match="UIO device: cannot open .*nouio"):
        MmioTransport(regs, 0, mem, 0, MEM_SIZE, PHYS, uio=tmp_path / "nouio")
    with pytest.raises(MmioError, match="mem_size must be >= 1"):
        MmioTransport(regs, 0, mem, 0, 0, PHYS)


def test_closed_transport_refuses_access(board):
    regs, mem = board
    t = MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS)
    t.close()
    t.close()
    with pytest.raises(MmioError, match="closed"):
        t.read32(0)
    with pytest.raises(MmioError, match="closed"):
        t.read_mem(PHYS, 1)
    with pytest.raises(MmioError, match="closed"):
        t.wait_irq(0)
    assert "closed" in repr(t)


class FakeDevice:
    """Plays the accelerator: after ``delay`` s it sets STATUS to DONE; with a UIO socket it
    then sends an interrupt count, but only once the host has re-enabled the interrupt."""

    def __init__(self, regs_path, offset, uio_sock=None):
        self._file, self._map = _peer_map(regs_path, offset + PAGE)
        self._offset = offset
        self._uio = uio_sock
        self.armed = threading.Event()
        self.rearm_writes = 0
        self.count = 0
        if uio_sock is not None:
            threading.Thread(target=self._watch_rearm, daemon=True).start()

    def _watch_rearm(self):
        while True:
            data = self._uio.recv(4)
            if not data:
                return
            assert struct.unpack("=I", data)[0] == 1
            self.rearm_writes += 1
            self.armed.set()

    def set_status(self, value):
        struct.pack_into("<I", self._map, self._offset + STATUS, value)

    def finish_after(self, delay, interrupt=True):
        def run():
            time.sleep(delay)
            self.set_status(DONE)
            if interrupt and self._uio is not None:
                self.armed.wait()
                self.count += 1
                self._uio.send(struct.pack("=I", self.count))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self):
        self._map.close()
        self._file.close()


def test_wait_irq_by_polling_status(board):
    regs, mem = board
    with MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS, poll_interval=1e-3) as t:
        dev = FakeDevice(regs, PAGE)
        try:
            assert not t.has_uio
            dev.set_status(BUSY)
            t.write32(CTRL, IRQ_ENABLE)
            assert t.wait_irq(0.02) is False  # still BUSY
            dev.finish_after(0.05).join()
            assert t.wait_irq(5.0) is True
            t.write32(CTRL, 0)  # irq_enable clear: the pin stays low although DONE
            assert t.wait_irq(0.02) is False
            assert t.wait_irq(0) is False
        finally:
            dev.close()


def test_wait_irq_through_uio(board):
    regs, mem = board
    host_end, dev_end = socket.socketpair()
    with host_end, dev_end, MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS,
                                          uio=host_end.fileno()) as t:
        dev = FakeDevice(regs, PAGE, dev_end)
        try:
            assert t.has_uio
            dev.set_status(BUSY)
            assert t.wait_irq(0.05) is False  # armed, but no interrupt
            assert dev.armed.wait(5.0)
            assert dev.rearm_writes == 1
            dev.armed.clear()
            dev.finish_after(0.05)
            assert t.wait_irq(5.0) is True
            assert dev.count == 1
            # A count delivered while nobody waited (an earlier run's) is dropped, not taken
            # for the next run's interrupt.
            dev_end.send(struct.pack("=I", 7))
            time.sleep(0.02)
            dev.set_status(BUSY)
            assert t.wait_irq(0.05) is False
        finally:
            dev.close()
    assert host_end.fileno() == -1  # closed by the with block, not by the transport


def test_uio_descriptor_that_closes_is_an_error(board):
    regs, mem = board
    host_end, dev_end = socket.socketpair()
    with host_end, MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS, uio=host_end.fileno()) as t:
        dev_end.close()
        with pytest.raises(MmioError, match="UIO"):
            t.wait_irq(1.0)


def test_uio_path_is_opened_and_closed(tmp_path, board):
    """A UIO path: the transport opens it and closes it again."""
    regs, mem = board
    fifo = tmp_path / "uio_fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR)  # keeps the FIFO open so the transport's open succeeds
    try:
        t = MmioTransport(regs, PAGE, mem, 0, MEM_SIZE, PHYS, uio=fifo)
        fd = t._uio_fd
        assert t.has_uio and fd is not None
        t.close()
        with pytest.raises(OSError):
            os.fstat(fd)
    finally:
        os.close(keep)
