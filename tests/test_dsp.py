# amaranth: UnusedElaboratable=no
"""hw.dsp.PipelinedMultiplier: the portable form in the Amaranth simulator, the ECP5 form's
instance, and parameter validation. (The ECP5 form runs under Verilator with the primitive's
model in tb/test_systolic_array.py.)"""

from __future__ import annotations

import random

import pytest
from amaranth.back import rtlil

from hw.dsp import PipelinedMultiplier
from hw.rtl import verilog_text
from hw.target import ECP5, GenerationTarget
from tests.banked_memory_bench import run_to_end


def test_portable_latency_b_enable_and_a_q():
    dut = PipelinedMultiplier(17, 16)
    rng = random.Random(3)
    stimulus = [(rng.randrange(-(1 << 16), 1 << 16), rng.randrange(-(1 << 15), 1 << 15),
                 rng.random() < 0.5) for _ in range(200)]
    seen = []

    async def bench(ctx):
        for a, b, en in stimulus:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.b_en, en)
            await ctx.tick()
            seen.append((ctx.get(dut.p), ctx.get(dut.a_q)))

    run_to_end(dut, bench)
    # Reference: a_reg <= a; b_reg <= b if en; p <= a_reg * b_reg (values after each edge);
    # a_q is a_reg.
    a_reg = b_reg = p = 0
    expected = []
    for a, b, en in stimulus:
        a_reg, b_reg, p = a, (b if en else b_reg), a_reg * b_reg
        expected.append((p, a_reg))
    assert seen == expected


def test_ecp5_form_is_one_registered_mult18x18d():
    text = verilog_text(PipelinedMultiplier(8, 8), "mul", ECP5)
    assert text.count("MULT18X18D") == 1
    assert "a_q <= a;" in text  # the fabric register beside the DSP block
    for param in ("REG_INPUTA_CLK(\"CLK0\")", "REG_INPUTB_CLK(\"CLK0\")",
                  "REG_OUTPUT_CLK(\"CLK0\")", "REG_PIPELINE_CLK(\"NONE\")"):
        assert param in text
    portable = rtlil.convert(PipelinedMultiplier(8, 8))
    assert "MULT18X18D" not in portable


@pytest.mark.parametrize(("a", "b", "error"), [(1, 8, ValueError), (8, 19, ValueError),
                                               ("8", 8, TypeError), (8, True, TypeError)])
def test_invalid_widths(a, b, error):
    with pytest.raises(error, match="width"):
        PipelinedMultiplier(a, b)


def test_invalid_target():
    with pytest.raises(ValueError, match="dsp = 'DSP48E1'"):
        GenerationTarget("xc7", dsp="DSP48E1")
