"""A multiplier with registered inputs and a registered product: the shape of an FPGA DSP block.

``p`` holds ``a * b`` two clock edges after ``a`` and ``b`` are presented (input registers,
then the product register); the ``b`` input register loads only while ``b_en`` is high (a
weight held for many operands). Portable RTL writes the three registers and ``*``; elaborated
for :data:`hw.target.ECP5` (``verilog.convert(..., platform=ECP5)``) it is one ``MULT18X18D``
with ``REG_INPUTA``, ``REG_INPUTB`` and ``REG_OUTPUT`` on, so the multiplier's path starts and
ends inside the DSP block: Yosys's ``synth_ecp5`` maps a ``*`` to a combinational
``MULT18X18D`` and leaves such registers in the fabric (``docs/fpga.md``), hence the instance.
``sim/vendor/ecp5_mult18x18d.v`` models the primitive for Verilator.

The registers have no reset in either form (the DSP's reset inputs are tied off on ECP5; the
portable form declares them ``reset_less``, which also keeps a reset multiplexer per register out
of the simulated model). Users must not depend on their value after a reset before new operands
have passed through (the array and the epilogue do not: a reset leaves no valid row in flight).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.target import dsp_primitive

__all__ = ["PipelinedMultiplier"]

#: Operand width of the MULT18X18D.
MULT18_BITS = 18


class PipelinedMultiplier(wiring.Component):
    """``p <= a_reg * b_reg``, ``a_reg <= a``, ``b_reg <= b if b_en``: latency 2, signed.

    Parameters
    ----------
    a_width, b_width : int
        Widths of the signed operands, 2..18 each (one MULT18X18D).

    Attributes
    ----------
    a : In(signed(a_width))
    b : In(signed(b_width))
    b_en : In(1)
        Load enable of ``b``'s input register (``a``'s loads every cycle).
    p : Out(signed(a_width + b_width))
        The product of the operands registered two edges earlier.
    a_q : Out(signed(a_width))
        ``a`` one edge later: the input register itself in the portable form (so a user that
        forwards the operand, like the systolic array's PE, needs no copy of it), a fabric
        register beside the DSP block on ECP5 (whose input register cannot be read).
    """

    #: Clock edges from ``a``/``b`` to their product on ``p``.
    LATENCY = 2

    def __init__(self, a_width: int, b_width: int) -> None:
        for name, value in (("a_width", a_width), ("b_width", b_width)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if not 2 <= value <= MULT18_BITS:
                raise ValueError(f"{name} = {value}: allowed range is 2..{MULT18_BITS}")
        self._a_width = a_width
        self._b_width = b_width
        super().__init__({
            "a": In(signed(a_width)),
            "b": In(signed(b_width)),
            "b_en": In(1, init=1),
            "p": Out(signed(a_width + b_width)),
            "a_q": Out(signed(a_width)),
        })

    @property
    def a_width(self) -> int:
        """Width of operand ``a``."""
        return self._a_width

    @property
    def b_width(self) -> int:
        """Width of operand ``b``."""
        return self._b_width

    def elaborate(self, platform) -> Module:
        m = Module()
        if dsp_primitive(platform) == "MULT18X18D":
            self._mult18x18d(m)
            return m
        a_reg = Signal(signed(self._a_width), reset_less=True)
        b_reg = Signal(signed(self._b_width), reset_less=True)
        p = Signal(signed(self._a_width + self._b_width), reset_less=True)
        m.d.sync += [a_reg.eq(self.a), p.eq(a_reg * b_reg)]
        m.d.comb += [self.p.eq(p), self.a_q.eq(a_reg)]
        with m.If(self.b_en):
            m.d.sync += b_reg.eq(self.b)
        return m

    def _mult18x18d(self, m: Module) -> None:
        a = Signal(signed(MULT18_BITS))
        b = Signal(signed(MULT18_BITS))
        p = Signal(2 * MULT18_BITS)
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p[: len(self.p)])]
        a_q = Signal(signed(self._a_width), reset_less=True)
        m.d.sync += a_q.eq(self.a)
        m.d.comb += self.a_q.eq(a_q)
        zero, one = Const(0, 1), Const(1, 1)
        ports = {
            "p_REG_INPUTA_CLK": "CLK0", "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
            "p_REG_INPUTB_CLK": "CLK0", "p_REG_INPUTB_CE": "CE1", "p_REG_INPUTB_RST": "RST0",
            "p_REG_INPUTC_CLK": "NONE", "p_REG_PIPELINE_CLK": "NONE",
            "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE0", "p_REG_OUTPUT_RST": "RST0",
            "p_GSR": "DISABLED", "p_RESETMODE": "SYNC", "p_SOURCEB_MODE": "B_SHIFT",
            "p_MULT_BYPASS": "DISABLED", "p_CAS_MATCH_REG": "FALSE",
            "i_SIGNEDA": one, "i_SIGNEDB": one, "i_SOURCEA": zero, "i_SOURCEB": zero,
            "i_CLK0": ClockSignal("sync"), "i_CE0": one, "i_CE1": self.b_en,
        }
        # The cascade inputs (SRIA/SRIB) and the unused clocks, enables and resets stay
        # unconnected, as in Yosys's own mapping: nextpnr cannot route a constant to all of them.
        ports["i_RST0"] = zero
        for i in range(MULT18_BITS):
            ports[f"i_A{i}"] = a[i]
            ports[f"i_B{i}"] = b[i]
            ports[f"i_C{i}"] = zero
        for i in range(2 * MULT18_BITS):
            ports[f"o_P{i}"] = p[i]
        m.submodules.mult18x18d = Instance("MULT18X18D", **ports)
