"""cocotb tests of a small multiply-accumulator, used to test the simulation glue (sim.verilator).

The design is ``tests.test_verilator_glue.MacCounter``. The tests read their parameters from the
environment, as every testbench run by :func:`sim.verilator.run_cocotb` does:

``GLUE_PARAMS``
    JSON object: ``steps`` (number of random multiply-accumulates, default 20), ``seed`` and
    ``expect_offset`` (added to every expected value; non-zero makes ``accumulates`` fail on
    purpose, which is how the glue's failure reporting is tested).
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


def _params() -> dict:
    defaults = {"steps": 20, "seed": 1, "expect_offset": 0}
    return {**defaults, **json.loads(os.environ.get("GLUE_PARAMS", "{}"))}


async def _reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.en.value = 0
    dut.clr.value = 0
    dut.a.value = 0
    dut.b.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def accumulates(dut):
    """acc follows the running sum of a*b for random signed int8 operands."""
    p = _params()
    rng = random.Random(p["seed"])
    await _reset(dut)
    expected = 0
    for _ in range(p["steps"]):
        a, b = rng.randint(-128, 127), rng.randint(-128, 127)
        dut.a.value = a
        dut.b.value = b
        dut.en.value = 1
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        expected += a * b
        got = dut.acc.value.to_signed()
        assert got == expected + p["expect_offset"], f"acc = {got}, expected {expected}"


@cocotb.test()
async def counts(dut):
    """count increments once per enabled cycle and wraps at 16."""
    await _reset(dut)
    dut.en.value = 1
    for _ in range(20):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 20 % 16
