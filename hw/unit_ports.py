"""Ports every execution unit shares (internal RTL contract of issue 8): the instruction stream
payload, dependency-token handshakes, the error report and the flush request.

``unit_command_layout(config)``
    Payload of a unit's instruction stream: ``word`` (``hw.isa.WORD_LAYOUT``, already legal),
    ``pc`` (word offset) and ``base`` (the DRAM base register named by the word, resolved at
    dispatch; ignored by instructions without a ``base`` field).
:data:`TOKEN_SIGNATURE`
    A token transfer, from the side that gives the token: ``valid`` / ``ready``, a token moves
    when both are high (one token per cycle). A unit *pops* through ``In(TOKEN_SIGNATURE)``
    (``valid`` = the counter is non-zero, ``ready`` = the unit takes one) and *pushes* through
    ``Out(TOKEN_SIGNATURE)`` (``valid`` = the unit gives one, ``ready`` = the counter is not full).
:data:`ERROR_SIGNATURE`
    ``valid`` (held once set, until reset), ``code`` (``sim.golden.StatusCode``), ``pc``.
:data:`FLUSH_SIGNATURE`
    Driven by the controller: ``valid`` with ``pc`` = the lowest failing word offset ``e`` so
    far; a unit discards every instruction with ``pc > e`` (held or arriving) and completes those
    below it.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.isa import WORD_LAYOUT

__all__ = [
    "AXI_ID_BITS",
    "ERROR_SIGNATURE",
    "FLUSH_SIGNATURE",
    "TOKEN_SIGNATURE",
    "unit_command_layout",
]

#: Width of the AXI ID signals of the accelerator's manager port.
AXI_ID_BITS = 4

TOKEN_SIGNATURE = wiring.Signature({"valid": Out(1), "ready": In(1)})
ERROR_SIGNATURE = wiring.Signature({"valid": Out(1), "code": Out(4), "pc": Out(32)})
FLUSH_SIGNATURE = wiring.Signature({"valid": Out(1), "pc": Out(32)})


def unit_command_layout(config: AcceleratorConfig) -> data.StructLayout:
    """``{"word": WORD_LAYOUT, "pc": unsigned(32), "base": unsigned(config.addr_bits)}``."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, got {config!r}")
    return data.StructLayout(
        {"word": WORD_LAYOUT, "pc": unsigned(32), "base": unsigned(config.addr_bits)}
    )
