"""nmx.runtime.device.Device over MmioTransport on file-backed mappings: a board without a board.

Temporary files stand in for the register window and the DRAM buffer; :class:`FakeAccelerator`
plays the hardware behind them. Writing CTRL.start (the only register write with a side effect)
makes it read PROG_ADDR, PROG_LEN and DRAM_LIMIT from the register file, run the program from
the DRAM file on the golden model (sim.golden), write the final DRAM back and set STATUS and
STATUS_OFFSET; its interrupt is a level (DONE and CTRL.irq_enable) delivered through a socket
pair standing in for the UIO descriptor, as uio_pdrv_genirq would: only when re-enabled.
"""

from __future__ import annotations

import mmap
import socket
import struct
import threading

import numpy as np
import pytest
import torch

from compiler.backend.compile import compile_ir
from compiler.graph import GraphInput, MatrixGraph, TensorRef
from compiler.ir import GemmPass, IntGraph, IntNode, Operand
from hw.config import preset
from hw.isa import WORD_BYTES
from hw.numeric import PwlTable
from hw.registers import ID_VALUE, RunState, by_name
from nmx.runtime.device import Device, DeviceError, RunError, bundle_layout
from nmx.runtime.mmio import MmioError, MmioTransport
from sim.golden import GoldenModel, StatusCode

PAGE = mmap.ALLOCATIONGRANULARITY
MEM_SIZE = 16 * PAGE
CONFIG = preset("tiny")
CTRL = by_name("CTRL")
STATUS = by_name("STATUS")
START = CTRL.field("start").mask
IRQ_ENABLE = CTRL.field("irq_enable").mask
FAKE_CYCLES = 0x1_2345_6789


def _word(view, offset):
    return struct.unpack_from("<I", view, offset)[0]


def _reg(view, name):
    reg = by_name(name)
    return sum(_word(view, reg.offset + 4 * w) << (32 * w) for w in range(reg.words))


def _set_reg(view, name, value):
    reg = by_name(name)
    for w in range(reg.words):
        struct.pack_into("<I", view, reg.offset + 4 * w, (value >> (32 * w)) & 0xFFFFFFFF)


class FakeAccelerator:
    """The hardware behind the files (see the module docstring)."""

    def __init__(self, regs_path, mem_path, uio_sock=None):
        self._files = [open(regs_path, "r+b"), open(mem_path, "r+b")]  # noqa: SIM115
        self.regs = mmap.mmap(self._files[0].fileno(), PAGE)
        self.mem = mmap.mmap(self._files[1].fileno(), MEM_SIZE)
        _set_reg(self.regs, "ID", ID_VALUE)
        _set_reg(self.regs, "FINGERPRINT", int(CONFIG.fingerprint, 16))
        self.runs = []
        self._uio = uio_sock
        self._thread = None
        if uio_sock is not None:
            self._thread = threading.Thread(target=self._uio_loop, daemon=True)
            self._thread.start()

    def on_register_write(self, offset, value):
        if offset == CTRL.offset and value & START:
            struct.pack_into("<I", self.regs, CTRL.offset, value & ~START)  # a pulse
            self._run()

    def _run(self):
        prog_addr = _reg(self.regs, "PROG_ADDR") & ~0xF
        prog_len = _reg(self.regs, "PROG_LEN")
        limit = _reg(self.regs, "DRAM_LIMIT")
        words = [int.from_bytes(self.mem[a : a + WORD_BYTES], "little")
                 for a in range(prog_addr, prog_addr + WORD_BYTES * prog_len, WORD_BYTES)]
        result = GoldenModel(CONFIG).run(words, np.frombuffer(self.mem[:limit], np.uint8))
        self.mem[:limit] = result.dram.data.tobytes()
        self.runs.append((prog_addr, prog_len, limit, result.status))
        _set_reg(self.regs, "CYCLES", FAKE_CYCLES)  # a 64-bit count: two words, low first
        _set_reg(self.regs, "STATUS_OFFSET", result.status.pc)
        _set_reg(self.regs, "STATUS", int(RunState.DONE) | int(result.status.code) << 4)

    def _irq(self):
        done = (_word(self.regs, STATUS.offset) & 3) == RunState.DONE
        return done and bool(_word(self.regs, CTRL.offset) & IRQ_ENABLE)

    def _uio_loop(self):
        count = 0
        while True:
            data = self._uio.recv(4)  # the host re-enables the interrupt: write of 1
            if not data:
                return
            if self._irq():
                count += 1
                self._uio.send(struct.pack("=I", count))

    def close(self):
        if self._thread is not None:
            self._thread.join(5.0)  # ends when the host's end of the socket pair shuts down
        self.regs.close()
        self.mem.close()
        for f in self._files:
            f.close()


class BoardTransport(MmioTransport):
    """MmioTransport whose register writes also reach the fake hardware (as a bus write would)."""

    def __init__(self, *args, hardware, **kwargs):
        super().__init__(*args, **kwargs)
        self.hardware = hardware

    def write32(self, offset, value):
        super().write32(offset, value)
        self.hardware.on_register_write(offset, value)


@pytest.fixture
def files(tmp_path):
    regs, mem = tmp_path / "uio0", tmp_path / "udmabuf0"
    regs.write_bytes(bytes(PAGE))
    mem.write_bytes(bytes(MEM_SIZE))
    return regs, mem


@pytest.fixture(params=["uio", "poll"])
def board(request, files):
    """(Device, transport, hardware) with the interrupt through UIO or by STATUS polling."""
    regs, mem = files
    host_end = dev_end = None
    if request.param == "uio":
        host_end, dev_end = socket.socketpair()
    hw = FakeAccelerator(regs, mem, dev_end)
    t = BoardTransport(regs, 0, mem, 0, MEM_SIZE, 0,
                       uio=host_end.fileno() if host_end else None, hardware=hw)
    yield Device(t, CONFIG), t, hw
    t.close()
    if host_end is not None:
        host_end.shutdown(socket.SHUT_RDWR)
    hw.close()
    for s in (host_end, dev_end):
        if s is not None:
            s.close()


def _bundle(seed=0, m=6, k=5, n=7):
    """A one-GEMM bundle for ``tiny`` (ReLU epilogue) and an input for it."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, m, k))
    w = rng.integers(-128, 128, (k, n))
    gemm = GemmPass(Operand(ref=TensorRef("x", (m, k))), Operand(const=w, const_name="w"))
    node = IntNode("y", "m.y", "aten.test", (m, n), [gemm],
                   rng.integers(-5000, 5000, (1, n)), rng.integers(1, 1 << 15, (1, n)),
                   rng.integers(0, 14, (1, n)), None, PwlTable.relu(), 8, False)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "y": 1.0}, {"x": 8, "y": 8},
                  [TensorRef("y", (m, n))])
    graph = MatrixGraph(inputs=[GraphInput("x", 0, (m, k), torch.int64)])
    return compile_ir(ir, CONFIG, 1, {"x": (m, k)}, graph), [torch.from_numpy(x)]


def test_register_writes_land_at_the_register_map_offsets(board):
    dev, _, hw = board
    dev.write("PROG_LEN", 0)  # a plain register write: no side effect
    assert _reg(hw.regs, "PROG_LEN") == 0
    bundle, inputs = _bundle()
    layout = dev.load_bundle(bundle, inputs)
    dev.run(layout.prog_addr, layout.prog_len, layout.image_size, irq=True)
    assert _reg(hw.regs, "PROG_ADDR") == layout.prog_addr
    assert _reg(hw.regs, "PROG_LEN") == layout.prog_len
    assert _reg(hw.regs, "DRAM_LIMIT") == layout.image_size
    assert _word(hw.regs, CTRL.offset) == IRQ_ENABLE  # start was a pulse, irq_enable stays
    assert [r[:3] for r in hw.runs] == [(layout.prog_addr, layout.prog_len, layout.image_size)]
    assert dev.wait(5.0).ok
    counters = dev.counters()
    assert counters["CYCLES"] == FAKE_CYCLES
    assert all(v == 0 for name, v in counters.items() if name != "CYCLES")


def test_load_bundle_writes_the_image_and_the_program(board):
    dev, _, hw = board
    bundle, inputs = _bundle(seed=1)
    layout = dev.load_bundle(bundle, inputs)
    assert layout == bundle_layout(bundle)
    image = bundle.image_for(bundle.quantize_inputs(inputs)).data.tobytes()
    assert hw.mem[: len(image)] == image
    program = b"".join(w.to_bytes(WORD_BYTES, "little") for w in bundle.program.words())
    assert hw.mem[layout.prog_addr : layout.prog_addr + len(program)] == program
    assert not any(hw.mem[layout.prog_addr + len(program) :])


def test_run_bundle_matches_the_golden_model(board):
    dev, _, _ = board
    bundle, inputs = _bundle(seed=2)
    want = bundle.run(inputs)  # the golden model directly
    run, outs, ints = dev.run_bundle(bundle, inputs, timeout=10.0)
    assert run.status.ok
    assert all(torch.equal(a, b) for a, b in zip(ints, want.int_outputs, strict=True))
    assert np.array_equal(run.dram.data[: want.run.dram.data.size], want.run.dram.data)


def test_error_status_becomes_run_error_with_code_and_offset(board):
    dev, _, hw = board
    bundle, inputs = _bundle(seed=3)
    layout = dev.load_bundle(bundle, inputs)
    limit = 16  # far below the image: the first LOAD leaves the allowed DRAM
    image = bundle.image_for(bundle.quantize_inputs(inputs))
    expected = GoldenModel(CONFIG).run(bundle.program, image.data[:limit]).status
    assert expected.code == StatusCode.DRAM_RANGE
    dev.run(layout.prog_addr, layout.prog_len, limit, irq=True)
    with pytest.raises(RunError, match=rf"DRAM_RANGE \(code {int(expected.code)}\) at word "
                                       rf"{expected.pc}") as err:
        dev.wait(5.0)
    assert err.value.code_name == "DRAM_RANGE" and err.value.offset == expected.pc
    assert hw.runs[-1][3] == expected


def test_device_checks_the_fingerprint(files):
    regs, mem = files
    hw = FakeAccelerator(regs, mem)
    try:
        with MmioTransport(regs, 0, mem, 0, MEM_SIZE, 0) as t:
            with pytest.raises(DeviceError, match=f"not {preset('ecp5').fingerprint}"):
                Device(t, preset("ecp5"))
    finally:
        hw.close()


def test_buffer_seen_at_a_nonzero_address_refuses_a_bundle_at_zero(files):
    """Device writes bundles from device address 0; a buffer the accelerator sees at its
    physical address (no remapping interconnect) gets a clear error, not a misplaced image."""
    regs, mem = files
    hw = FakeAccelerator(regs, mem)
    try:
        with MmioTransport(regs, 0, mem, 0, MEM_SIZE, 0x3F00_0000) as t:
            dev = Device(t, CONFIG)
            bundle, inputs = _bundle()
            with pytest.raises(MmioError, match="device address 0x0 leaves the buffer "
                                                "0x3f000000"):
                dev.load_bundle(bundle, inputs)
        assert not any(hw.mem[:])
    finally:
        hw.close()
