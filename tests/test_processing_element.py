# amaranth: UnusedElaboratable=no
"""Amaranth-simulator unit tests of the processing element, against a cycle-level Python model."""

# (The linter line above: the validation tests construct components that raise in __init__.)

from __future__ import annotations

from dataclasses import dataclass

import pytest
from amaranth.hdl import Fragment
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.processing_element import ProcessingElement
from tests.banked_memory_bench import run_to_end

INPUTS = ("a_in", "swap_in", "w_in", "load_in", "psum_in")
OUTPUTS = ("a_out", "psum_out")


def wrap(value: int, bits: int) -> int:
    """``value`` as a two's-complement ``bits``-bit integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class PeModel:
    """Cycle-level reference of :class:`ProcessingElement` (the register equations of its docs)."""

    acc_width: int = 32
    a_reg: int = 0
    shadow: int = 0
    active: int = 0
    product: int = 0
    product_near: int = 0
    acc: int = 0

    def outputs(self) -> dict[str, int]:
        return {"a_out": self.a_reg, "psum_out": self.acc}

    def clock(self, a_in, swap_in, w_in, load_in, psum_in) -> None:
        """Advance one clock edge: every register takes its next value from the current state."""
        self.acc = wrap(psum_in + self.product_near, self.acc_width)
        self.product_near = self.product
        self.product = self.a_reg * self.active
        if swap_in:
            self.active = self.shadow
        if load_in:
            self.shadow = w_in
        self.a_reg = a_in


def run_pe(cycles: list[dict[str, int]], operand_width: int = 8, acc_width: int = 32):
    """Drive ``cycles`` (one dict of inputs per cycle) into a PE; return outputs seen per cycle."""
    dut = ProcessingElement(operand_width=operand_width, acc_width=acc_width)
    seen: list[dict[str, int]] = []

    async def bench(ctx):
        for inputs in cycles:
            for name in INPUTS:
                ctx.set(getattr(dut, name), inputs.get(name, 0))
            seen.append({name: ctx.get(getattr(dut, name)) for name in OUTPUTS})
            await ctx.tick()
        seen.append({name: ctx.get(getattr(dut, name)) for name in OUTPUTS})

    run_to_end(dut, bench)
    return seen


def model_outputs(cycles: list[dict[str, int]], acc_width: int = 32):
    model = PeModel(acc_width=acc_width)
    out = []
    for inputs in cycles:
        out.append(model.outputs())
        full = {name: inputs.get(name, 0) for name in INPUTS}
        model.clock(**full)
    out.append(model.outputs())
    return out


def test_rejects_bad_parameters():
    with pytest.raises(TypeError, match="operand_width must be an int, got '8'"):
        ProcessingElement(operand_width="8")
    with pytest.raises(TypeError, match="acc_width must be an int, got True"):
        ProcessingElement(acc_width=True)
    with pytest.raises(ValueError, match="operand_width = 1: allowed range is 2..18"):
        ProcessingElement(operand_width=1)
    with pytest.raises(ValueError, match=r"acc_width = 15: allowed range is 2 \* operand_width"):
        ProcessingElement(operand_width=8, acc_width=15)


def test_parameters_are_read_only():
    pe = ProcessingElement(operand_width=6, acc_width=20)
    assert (pe.operand_width, pe.acc_width) == (6, 20)
    with pytest.raises(AttributeError):
        pe.acc_width = 32
    Fragment.get(pe, None)  # elaborates (and so uses) the component


def test_mac_latency_and_forwarding():
    # Weight 3 loaded and swapped in, then operand 5 with psum_in 100 arriving three cycles
    # later.
    cycles = [
        {"w_in": 3, "load_in": 1},
        {"swap_in": 1},
        {"a_in": 5},
        {},
        {},
        {"psum_in": 100},
        {},
    ]
    seen = run_pe(cycles)
    t = 2  # cycle in which a_in = 5
    assert seen[t + 1]["a_out"] == 5
    assert seen[t + ProcessingElement.MAC_LATENCY]["psum_out"] == 100 + 15
    assert ProcessingElement.PSUM_IN_OFFSET == 3


def test_swap_applies_from_the_flagged_operand_on():
    # Active weight 2; shadow loaded with -7; operands 10, 11 (flagged), 12 back to back.
    cycles = [
        {"w_in": 2, "load_in": 1},
        {"swap_in": 1},
        {"w_in": -7, "load_in": 1},
        {"a_in": 10},
        {"a_in": 11, "swap_in": 1},
        {"a_in": 12},
        {}, {}, {}, {},
    ]
    seen = run_pe(cycles)
    lat = ProcessingElement.MAC_LATENCY
    assert [seen[t + lat]["psum_out"] for t in (3, 4, 5)] == [20, -77, -84]
    assert seen == model_outputs(cycles)


def test_load_and_swap_on_the_same_edge_swaps_in_the_old_shadow():
    cycles = [
        {"w_in": 4, "load_in": 1},
        {"w_in": 9, "load_in": 1, "swap_in": 1, "a_in": 1},
        {"a_in": 1},
        {"a_in": 1, "swap_in": 1},
        {}, {}, {}, {}, {},
    ]
    seen = run_pe(cycles)
    lat = ProcessingElement.MAC_LATENCY
    assert [seen[t + lat]["psum_out"] for t in (1, 2, 3)] == [4, 4, 9]


@pytest.mark.parametrize(("a", "w"), [(-128, -128), (127, 127), (-128, 127), (0, -128), (1, -1)])
def test_int8_extremes(a, w):
    cycles = [{"w_in": w, "load_in": 1}, {"swap_in": 1, "a_in": a}, {}, {},
              {"psum_in": -(2**31)}, {}]
    seen = run_pe(cycles)
    assert seen[1 + ProcessingElement.MAC_LATENCY]["psum_out"] == wrap(a * w - 2**31, 32)


def test_accumulator_wraps_like_twos_complement():
    cycles = [{"w_in": -128, "load_in": 1}, {"swap_in": 1, "a_in": -128}, {}, {},
              {"psum_in": 2**15 - 1}, {}]
    seen = run_pe(cycles, operand_width=8, acc_width=16)
    assert seen[1 + ProcessingElement.MAC_LATENCY]["psum_out"] == wrap(16384 + 2**15 - 1, 16)


def _cycle(ow: int, aw: int):
    lo, hi = -(1 << (ow - 1)), (1 << (ow - 1)) - 1
    return st.fixed_dictionaries({
        "a_in": st.integers(lo, hi),
        "swap_in": st.booleans().map(int),
        "w_in": st.integers(lo, hi),
        "load_in": st.booleans().map(int),
        "psum_in": st.integers(-(1 << (aw - 1)), (1 << (aw - 1)) - 1),
    })


@settings(max_examples=25, deadline=None)
@given(data=st.data(), widths=st.sampled_from([(8, 32), (8, 16), (4, 9)]))
def test_random_inputs_match_the_reference_model(data, widths):
    ow, aw = widths
    cycles = data.draw(st.lists(_cycle(ow, aw), min_size=1, max_size=40))
    assert run_pe(cycles, operand_width=ow, acc_width=aw) == model_outputs(cycles, acc_width=aw)
