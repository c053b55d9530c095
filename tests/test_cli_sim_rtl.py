"""``nmx sim`` end to end on the Verilated array: a bit-exact run, and a fault that fails it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import sim.verilator
from nmx.cli import main

pytestmark = pytest.mark.rtl


def _lines(text: str) -> dict[str, str]:
    return {line.split(maxsplit=1)[0]: line for line in text.splitlines() if line.strip()}


def _check_ok(capsys, argv: list[str], m: int, k: int, n: int) -> None:
    assert main(argv) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines["GEMM"].startswith(f"GEMM        ({m} x {k}) @ ({k} x {n})")
    assert f"mismatches  0 of {m * n} elements" in lines["mismatches"]
    assert "(max |error| 0)" in lines["mismatches"]
    cycles = int(re.search(r"cycles\s+(\d+)", lines["cycles"])[1])
    model = lines["cycle"]
    assert f"cycle model {cycles} cycles" in model and "(equal)" in model
    assert lines["OK:"] == "OK: bit-exact"


def test_nmx_sim_tiny_is_bit_exact(capsys):
    _check_ok(capsys, ["sim", "--demo", "array", "--config", "tiny", "--m", "9", "--k", "10",
                 "--n", "7"], 9, 10, 7)


def test_nmx_sim_fails_on_a_wrong_result(capsys, monkeypatch):
    """A fault injected into the RTL's output (one partial sum off by one) must make ``nmx sim``
    report the mismatch and exit 1."""
    real = sim.verilator.run_cocotb

    def faulty(**kwargs):
        result = real(**kwargs)
        out_file = json.loads(kwargs["env"]["NMX_TB_PARAMS"])["out_file"]
        partials = np.load(out_file)
        partials.flat[5] += 1
        np.save(out_file, partials)
        return result

    monkeypatch.setattr(sim.verilator, "run_cocotb", faulty)
    assert main(["sim", "--demo", "array", "--config", "tiny", "--m", "9", "--k", "10",
                 "--n", "7"]) == 1
    out = capsys.readouterr().out
    assert "mismatches  1 of 63 elements vs NumPy (max |error| 1)" in out
    assert "FAILED: the RTL's result differs from NumPy" in out and "OK" not in out


@pytest.mark.slow
def test_nmx_sim_default_16x16(capsys):
    """``make sim``: the default preset's 16x16 array, the demo's default GEMM sizes."""
    _check_ok(capsys, ["sim", "--demo", "array", "--config", "default"], 64, 96, 48)
