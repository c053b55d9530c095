"""Generation targets: which FPGA primitives the RTL may instantiate.

Amaranth hands the ``platform`` given to ``verilog.convert`` to every ``elaborate``. The
generators read it through :func:`dsp_primitive`: with no platform (simulation, ``nmx rtl``,
Verilator) every block is portable Amaranth; with :data:`ECP5` the processing element
instantiates the ECP5 ``MULT18X18D`` with its input and output registers, which Yosys's
``synth_ecp5`` cannot infer (it maps a multiplication to a combinational ``MULT18X18D`` and leaves
the registers in the fabric; ``docs/fpga.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, Value

__all__ = ["ECP5", "GenerationTarget", "TARGETS", "dsp_primitive", "kept_flip_flop",
           "kept_register"]


@dataclass(frozen=True)
class GenerationTarget:
    """An elaboration ``platform`` that names vendor primitives the generators may use.

    Parameters
    ----------
    name : str
        The target's name (a key of :data:`TARGETS`).
    dsp : str or None
        The multiplier primitive the processing element instantiates (``"MULT18X18D"``), or
        ``None`` for a portable ``*``.
    ff : str or None
        The flip-flop primitive :func:`kept_flip_flop` instantiates (``"TRELLIS_FF"``), or
        ``None`` for an Amaranth register.
    """

    name: str
    dsp: str | None = None
    ff: str | None = None

    def __post_init__(self) -> None:
        if self.dsp not in (None, "MULT18X18D"):
            raise ValueError(f"dsp = {self.dsp!r}: supported are None and 'MULT18X18D'")
        if self.ff not in (None, "TRELLIS_FF"):
            raise ValueError(f"ff = {self.ff!r}: supported are None and 'TRELLIS_FF'")


#: Portable RTL (the default: simulation, Verilator, any vendor's inference).
GENERIC = GenerationTarget("generic")
#: Lattice ECP5: registered MULT18X18D in the processing elements.
ECP5 = GenerationTarget("ecp5", dsp="MULT18X18D", ff="TRELLIS_FF")
#: The targets by name.
TARGETS = {t.name: t for t in (GENERIC, ECP5)}


def dsp_primitive(platform) -> str | None:
    """The multiplier primitive an ``elaborate(platform)`` should instantiate, or ``None``."""
    return platform.dsp if isinstance(platform, GenerationTarget) else None


def kept_flip_flop(m: Module, d: Value, platform, name: str, domain: str = "sync") -> Signal:
    """``q <= d`` every cycle of ``domain``, in a flip-flop synthesis keeps apart from its twins.

    Yosys merges flip-flops with the same inputs (``opt_merge``, whatever their ``keep``), so
    copies made to bound a select's fan-out (one per group of its loads) need a primitive it
    does not merge: on a target with ``ff`` (:data:`ECP5`: ``TRELLIS_FF``, no reset, no
    enable) each copy is an instance, elsewhere an Amaranth register (``reset_less``, as the
    instance; both start at 0).

    Parameters
    ----------
    m : Module
        The module to add the flip-flop to.
    d : Value
        The flip-flop's 1-bit input.
    platform
        The ``platform`` given to ``elaborate``.
    name : str
        The output signal's name (and the instance's).
    domain : str
        The clock domain.

    Returns
    -------
    Signal
        The flip-flop's output ``q``.
    """
    q = Signal(name=name, reset_less=True)
    if isinstance(platform, GenerationTarget) and platform.ff == "TRELLIS_FF":
        m.submodules[name] = Instance(
            "TRELLIS_FF",
            p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_REGSET="RESET", p_SRMODE="ASYNC",
            i_CLK=ClockSignal(domain), i_LSR=Const(0, 1), i_CE=Const(1, 1), i_DI=d, o_Q=q,
        )
    else:
        m.d[domain] += q.eq(d)
    return q


def kept_register(m: Module, d: Value, platform, name: str) -> Value:
    """``d`` (any width) a cycle later, one :func:`kept_flip_flop` per bit (``name_b<k>``).

    For a copy of a multi-bit register that Yosys must not merge with its twins (the same
    input): e.g. a pointer or a shift amount per slice or lane.

    Returns
    -------
    Value
        The flip-flops' outputs, bit 0 first (unsigned; ``.as_signed()`` where needed).
    """
    d = Value.cast(d)
    return Cat(*(kept_flip_flop(m, d[b], platform, f"{name}_b{b}") for b in range(len(d))))
