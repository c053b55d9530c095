"""The interface between the controller (dispatcher) and the load, compute and store units.

Every unit takes:

- ``cmd``: a stream of :func:`unit_command_layout` from its instruction queue: the decoded (legal)
  word, its word offset ``pc`` and, for LOAD / LOADT / STORE, the DRAM base register value
  resolved at dispatch;
- ``flush``: :data:`FlushSignature` from the controller: once ``valid``, the unit completes every
  instruction it holds with ``pc`` below ``flush.pc`` and discards those above;

and drives

- ``error``: :data:`ErrorSignature` (``valid`` stays high from the error until the next start;
  the unit stops taking instructions);
- token handshakes, :data:`TokenSignature`, one per token queue it pops or pushes
  (:class:`hw.tokens.TokenCounters`): a pop moves when ``valid & ready`` (``ready``: the counter
  is non-zero); a push moves when ``valid & ready`` (``ready``: the counter is below capacity);
- ``busy`` (holds an instruction or has AXI transactions outstanding) and ``retire`` (one cycle
  per completed instruction), for the counters and for HALT completion.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.isa import WORD_LAYOUT

__all__ = [
    "CODE_BITS",
    "ErrorSignature",
    "FlushSignature",
    "PC_BITS",
    "TokenSignature",
    "unit_command_layout",
]

#: Width of a word offset (``STATUS_OFFSET``, ``PROG_LEN``).
PC_BITS = 32
#: Width of a status code.
CODE_BITS = 4


def unit_command_layout(config: AcceleratorConfig) -> data.StructLayout:
    """``UnitCommand``: ``{word: WORD_LAYOUT, pc: u32, base: u(addr_bits)}``."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    return data.StructLayout(
        {"word": WORD_LAYOUT, "pc": unsigned(PC_BITS), "base": unsigned(config.addr_bits)}
    )


#: A unit's error report (unit's view).
ErrorSignature = wiring.Signature(
    {"valid": Out(1), "code": Out(CODE_BITS), "pc": Out(PC_BITS)}
)

#: The controller's flush order (controller's view): discard instructions above ``pc``.
FlushSignature = wiring.Signature({"valid": Out(1), "pc": Out(PC_BITS)})

#: One token pop or push request (the requesting unit's view).
TokenSignature = wiring.Signature({"valid": Out(1), "ready": In(1)})
