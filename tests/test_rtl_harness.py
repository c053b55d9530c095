"""The fast RTL path (sim/rtl_harness.py, sim/harness/) and the host driver (nmx/runtime/).

Everything runs on the ``tiny`` config's Verilated accelerator (one library build, cached by
content hash): a zoo model through ``Bundle.run(backend="rtl")`` bit-exact with the golden model,
random whole-machine programs (valid and broken) with status, offset and the final DRAM image
equal to the golden model's under latency and backpressure, AXI error responses as DRAM_RANGE,
and the driver's registers, counters, errors and both ways of waiting.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hw.config import preset
from hw.isa import Dmacfg, Halt, Load, MemSpace, Setbase, Sync, SyncTarget, encode
from hw.registers import COUNTERS, RunState
from nmx.runtime import Device, DeviceError, RunError, Transport
from sim.golden import GoldenModel, StatusCode
from sim.rtl_harness import VerilatorTransport

pytestmark = pytest.mark.rtl

TINY = preset("tiny")


@pytest.fixture(scope="module")
def transport():
    t = VerilatorTransport(TINY, mem_size=1 << 20, latency=3, backpressure=0.3, seed=5)
    yield t
    t.close()


@pytest.fixture(scope="module")
def device(transport):
    return Device(transport, TINY)


def test_transport_is_a_transport(transport):
    assert isinstance(transport, Transport)
    transport.write_mem(0x100, b"\x01\x02\x03")
    assert transport.read_mem(0xFF, 5) == b"\x00\x01\x02\x03\x00"
    with pytest.raises(ValueError, match="outside"):
        transport.read_mem(transport.mem_size - 2, 4)


def test_registers_by_name(device):
    device.write("PROG_LEN", 0x11223344)
    assert device.read("PROG_LEN") == 0x11223344
    device.write("DRAM_LIMIT", 0x1_2345_6789)
    assert device.read("DRAM_LIMIT") == 0x1_2345_6789
    with pytest.raises(DeviceError, match="read-only"):
        device.write("STATUS", 0)
    with pytest.raises(KeyError, match="no register"):
        device.read("NOPE")


def test_wrong_config_is_refused(transport):
    with pytest.raises(DeviceError, match="fingerprint"):
        Device(transport, TINY.replace(pwl_functions=16))


def _sync_program(n: int) -> list[int]:
    return [encode(Sync(target=SyncTarget.COMPUTE))] * n + [encode(Halt())]


@pytest.mark.parametrize("irq", [True, False], ids=["irq", "poll"])
def test_run_wait_and_counters(device, irq):
    words = _sync_program(7)
    run = device.execute(words, bytes(256), irq=irq)
    assert run.status.code == StatusCode.OK and run.status.pc == 7
    assert set(run.counters) == {name for name, _ in COUNTERS}
    assert run.counters["RETIRED_DISPATCH"] == 1
    assert run.counters["RETIRED_COMPUTE"] == 7
    assert run.cycles > 0
    assert device.state() == RunState.DONE
    assert device.transport.irq == irq


def test_error_status_is_an_exception_with_name_and_offset(device):
    words = _sync_program(3)
    words.insert(2, (1 << 128) - 1)  # an illegal word
    device.execute(words, bytes(64))  # leaves the program in device memory
    prog_addr = 4096
    device.run(prog_addr, len(words), 64)
    with pytest.raises(RunError, match="ILLEGAL_INSTRUCTION .* at word 2") as err:
        device.wait(10)
    assert err.value.code == StatusCode.ILLEGAL_INSTRUCTION
    assert err.value.code_name == "ILLEGAL_INSTRUCTION" and err.value.offset == 2
    assert err.value.counters["CYCLES"] > 0


def test_deadlock_times_out_and_soft_reset_recovers(device):
    words = [encode(Sync(target=SyncTarget.COMPUTE, pop_prev=True)), encode(Halt())]
    device.transport.write_mem(4096, b"".join(w.to_bytes(16, "little") for w in words))
    device.run(4096, 2, 64, irq=True)
    from nmx.runtime import RunTimeout

    with pytest.raises(RunTimeout):
        device.wait(0.05)
    assert device.state() == RunState.BUSY
    device.soft_reset()
    assert device.state() == RunState.IDLE
    assert device.execute(_sync_program(1), bytes(64)).status.ok


@pytest.mark.parametrize("latency,backpressure", [(0, 0.0), (7, 0.4)])
def test_random_programs_equal_the_golden_model(latency, backpressure):
    """Random LOAD/LOADT/GEMM/EPI/STORE programs, a third broken (range errors, illegal words):
    status code, offset and the whole final DRAM image equal the golden model's."""
    from tb.accelerator_tb import break_program, compute_program
    from tb.random_programs import illegal_word

    rng = random.Random(100 + latency)
    codes = {}
    with VerilatorTransport(TINY, mem_size=1 << 17, latency=latency,
                            backpressure=backpressure, seed=latency) as t:
        dev = Device(t, TINY)
        for i in range(6):
            prog, image = compute_program(rng, TINY)
            label = "valid"
            if i % 3 == 2:
                prog, label = break_program(rng, TINY, prog)
            words = [illegal_word(rng) if x is None else encode(x) for x in prog]
            want = GoldenModel(TINY).run(list(words), image)
            got = dev.execute(words, image)
            where = f"program {i} ({label})"
            assert (got.status.code, got.status.pc) == (want.status.code, want.status.pc), where
            assert np.array_equal(got.dram.data, want.dram.data), where
            codes[want.status.code.name] = codes.get(want.status.code.name, 0) + 1
    assert codes.get("OK", 0) >= 3 and len(codes) >= 2, codes


def test_axi_error_response_is_dram_range():
    """DRAM_LIMIT above the memory: a LOAD past the DRAM model's last byte gets SLVERR, which is
    DRAM_RANGE at the LOAD, as the golden model says for an image of that size."""
    image = bytes(range(256)) * 16  # 4 KiB
    prog = [Setbase(reg=0, value=0),
            Dmacfg(slot=0, height=4, width=1, pitch=TINY.lanes, pix=TINY.lanes, sy=1, sx=0),
            Load(mem=MemSpace.SPAD, geom=0, base=0, offset=0, dst=0, outer=4, inner=1,
                 length=TINY.lanes),
            Load(mem=MemSpace.SPAD, geom=0, base=0, offset=8192 + 64, dst=0, outer=4, inner=1,
                 length=TINY.lanes),
            Halt()]
    words = [encode(x) for x in prog]
    # Memory: the image, the program at 4 KiB, nothing above 8 KiB.
    want = GoldenModel(TINY).run(list(words), image + bytes(4096))
    assert want.status.code == StatusCode.DRAM_RANGE and want.status.pc == 3
    with VerilatorTransport(TINY, mem_size=8192, backpressure=0.2) as t:
        got = Device(t, TINY).execute(words, image, dram_limit=1 << 31)
        assert (got.status.code, got.status.pc) == (StatusCode.DRAM_RANGE, 3)
        assert t.axi_stats()["error_responses"] > 0


@pytest.fixture(scope="module")
def mlp_bundle():
    from compiler.backend import compile
    from compiler.convert import convert
    from compiler.zoo import load

    zm = load("mlp")
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    bundle = compile(cm, TINY, batch=2, name="mlp")
    b0 = cm.example_shapes[0][0]
    samples = cm.to_samples(tuple(t[: 2 * b0] for t in zm.eval_inputs))[0]
    return bundle, samples


@pytest.mark.parametrize("options", [{}, {"latency": (9, 4), "backpressure": 0.35, "seed": 3}],
                         ids=["plain", "backpressure"])
def test_bundle_on_rtl_equals_golden(mlp_bundle, options):
    bundle, samples = mlp_bundle
    golden = bundle.run(samples)
    rtl = bundle.run(samples, backend="rtl", **options)
    assert rtl.run.status == golden.run.status
    for a, b in zip(rtl.int_outputs, golden.int_outputs, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(rtl.outputs, golden.outputs, strict=True):
        assert torch.equal(a, b)
    assert np.array_equal(rtl.run.dram.data, golden.run.dram.data)
    assert rtl.run.counters["ARRAY_MACS"] == golden.run.macs * 1  # MACs as issued (padding incl.)
    assert rtl.run.counters["CYCLES"] > 0


def test_unknown_backend_names_the_supported_ones(mlp_bundle):
    from compiler.backend.errors import CompileError

    bundle, samples = mlp_bundle
    with pytest.raises(CompileError, match="golden, rtl"):
        bundle.run(samples, backend="fpga")


def test_nmx_run_backend_rtl_prints_what_golden_prints(mlp_bundle, tmp_path, capsys):
    from nmx.cli import main

    _, samples = mlp_bundle
    torch.save(list(samples), tmp_path / "x.pt")
    out = tmp_path / "mlp"
    assert main(["compile", "--model", "mlp", "--config", "tiny", "--batch", "2", "-o",
                 str(out)]) == 0
    capsys.readouterr()
    outputs = {}
    for backend in ("golden", "rtl"):
        assert main(["run", str(out), "--input", str(tmp_path / "x.pt"), "--int",
                     "--backend", backend, *(["--backpressure", "0.2"] if backend == "rtl"
                                            else [])]) == 0
        text = capsys.readouterr().out
        assert "status: OK" in text
        outputs[backend] = text[text.index("output "):]
    assert "RTL counters" in text and "k cycles/s" in text
    assert outputs["rtl"] == outputs["golden"]
