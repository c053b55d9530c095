"""One processing element (PE) of the weight-stationary systolic array.

A PE holds two weights: the *active* one, which multiplies the operands flowing through, and a
*shadow* one, which is loaded while the active one computes. A one-bit swap flag travels with the
first operand of every tile; on the clock edge where that operand enters the PE, the shadow weight
becomes the active one, so the operand (and every later one) is multiplied by the new weight while
the operands still in flight ahead of it finish with the old one. Tiles stream back to back.

The multiply-accumulate is pipelined for FPGA timing: the operand register feeds the multiplier,
whose product is registered twice (in the DSP block, then in the fabric next to the adder), and
the adder's sum is registered. Per PE and cycle::

    a_reg   <= a_in                     (forwarded to the right neighbour as a_out)
    active  <= shadow        if swap_in
    shadow  <= w_in          if load_in
    product <= a_reg * active
    product_near <= product
    sum     <= psum_in + product_near   (sum is psum_out, wraps modulo 2**acc_width)

So the partial sum that includes the operand seen at ``a_in`` in cycle ``t`` leaves on
``psum_out`` in cycle ``t + 4``, and ``psum_in`` must carry the partial sum of the same operand row
in cycle ``t + 3``. ``product_near`` is for the FPGA: the DSP blocks sit in a few fixed rows of
the die, and the route from a DSP's output register straight into the 32-bit adder's carry chain
(5.5 ns of routing at worst on ECP5) limited the array to 123 MHz; with a fabric register in
between, the route and the add are in different cycles. The registers have no clock enable:
the array never stalls (backpressure is by credit, ``hw/systolic_array.py``), which keeps an
enable's fan-out off the timing path.

The multiplier with its operand registers (``a_reg``, forwarded from its ``a_q`` output, and
``active``) and its ``product`` register is a :class:`hw.dsp.PipelinedMultiplier`: on ECP5 one
``MULT18X18D`` with its own input and output registers (``a_q`` then a fabric register beside
it), so the multiply starts and ends inside the DSP block (a reset leaves its registers holding a
bubble's value; no result row uses them before the next weight swap).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.dsp import PipelinedMultiplier

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """A pipelined multiply-accumulate cell with a double-buffered (shadow/active) weight.

    Parameters
    ----------
    operand_width : int
        Width of the signed operands and weights (2..18; 8 for the accelerator).
    acc_width : int
        Width of the signed partial sums, at least ``2 * operand_width``. Sums wrap modulo
        ``2**acc_width`` (two's complement).

    Attributes
    ----------
    a_in, a_out : In(signed(operand_width)), Out(signed(operand_width))
        Operand from the left neighbour; the same operand, one cycle later, to the right one.
    swap_in : In(1)
        Swap flag travelling with the first operand of a tile (``a_in``'s cycle). The PE does not
        forward it: every PE on an anti-diagonal of the array sees the same flag, so the array
        delays it once per anti-diagonal (``hw/systolic_array.py``).
    w_in : In(signed(operand_width))
        Weight to latch into the shadow register when ``load_in`` is high.
    load_in : In(1)
        Shadow-load strobe. Not forwarded either: the array delays each row's strobe on one
        shared line.
    psum_in, psum_out : In(signed(acc_width)), Out(signed(acc_width))
        Partial sum from the PE above; partial sum including this PE's product, to the PE below.
    """

    #: Cycles from ``a_in`` to the sum including it on ``psum_out``.
    MAC_LATENCY = 4
    #: Cycles from ``a_in`` to the partial sum this PE adds to on ``psum_in``.
    PSUM_IN_OFFSET = 3

    def __init__(self, operand_width: int = 8, acc_width: int = 32) -> None:
        for name, value in (("operand_width", operand_width), ("acc_width", acc_width)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if not 2 <= operand_width <= 18:
            raise ValueError(f"operand_width = {operand_width}: allowed range is 2..18")
        if not 2 * operand_width <= acc_width <= 64:
            raise ValueError(
                f"acc_width = {acc_width}: allowed range is 2 * operand_width "
                f"({2 * operand_width})..64"
            )
        self._operand_width = operand_width
        self._acc_width = acc_width
        super().__init__({
            "a_in": In(signed(operand_width)),
            "swap_in": In(1),
            "w_in": In(signed(operand_width)),
            "load_in": In(1),
            "psum_in": In(signed(acc_width)),
            "a_out": Out(signed(operand_width)),
            "psum_out": Out(signed(acc_width)),
        })

    @property
    def operand_width(self) -> int:
        """Width of the signed operands and weights."""
        return self._operand_width

    @property
    def acc_width(self) -> int:
        """Width of the signed partial sums."""
        return self._acc_width

    def elaborate(self, platform) -> Module:
        m = Module()
        ow, aw = self._operand_width, self._acc_width
        # Datapath registers have no reset: no result row reads a value they
        # held before a reset (a tile's weights are all loaded before its first row swaps them
        # in, and a row's partial sums meet only its own products), as in the ECP5 DSP form.
        shadow = Signal(signed(ow), reset_less=True)
        product = Signal(signed(2 * ow))
        product_near = Signal(signed(2 * ow), reset_less=True)
        acc = Signal(signed(aw), reset_less=True)

        m.d.sync += [
            product_near.eq(product),
            acc.eq(self.psum_in + product_near),
        ]
        # a_reg and active, inside the multiplier (a DSP block's input registers on ECP5); the
        # multiplier's a_q is a_reg for the right neighbour (one register, not a copy).
        m.submodules.mult = mult = PipelinedMultiplier(ow, ow)
        m.d.comb += [
            mult.a.eq(self.a_in),
            mult.b.eq(shadow),
            mult.b_en.eq(self.swap_in),
            product.eq(mult.p),
        ]
        with m.If(self.load_in):
            m.d.sync += shadow.eq(self.w_in)

        m.d.comb += [
            self.a_out.eq(mult.a_q),
            self.psum_out.eq(acc),
        ]
        return m
