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

__all__ = ["ECP5", "GenerationTarget", "TARGETS", "dsp_primitive"]


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
    """

    name: str
    dsp: str | None = None

    def __post_init__(self) -> None:
        if self.dsp not in (None, "MULT18X18D"):
            raise ValueError(f"dsp = {self.dsp!r}: supported are None and 'MULT18X18D'")


#: Portable RTL (the default: simulation, Verilator, any vendor's inference).
GENERIC = GenerationTarget("generic")
#: Lattice ECP5: registered MULT18X18D in the processing elements.
ECP5 = GenerationTarget("ecp5", dsp="MULT18X18D")
#: The targets by name.
TARGETS = {t.name: t for t in (GENERIC, ECP5)}


def dsp_primitive(platform) -> str | None:
    """The multiplier primitive an ``elaborate(platform)`` should instantiate, or ``None``."""
    return platform.dsp if isinstance(platform, GenerationTarget) else None
