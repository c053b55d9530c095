"""AXI4 and AXI4-Lite signatures and protocol helpers (amaranth-soc is not on the package index).

Signatures are *flat*: their members carry the AXI signal names without the channel prefix
separator (``awvalid``, ``awaddr``, ..., ``rlast``), so a port ``m_axi`` of a component becomes
Verilog ports ``m_axi__awvalid`` ... (cocotbext-axi: ``AxiBus.from_prefix(dut, "m_axi")`` with
``bus_separator="__"``). A top level that must expose vendor names (``m_axi_awvalid``) builds its
signature with :func:`flat_members` and wires it with :func:`connect_flat`.

All signatures are from the **manager** (master) side: ``Out`` members are driven by the manager.
The subordinate side is ``signature.flip()``.

Fixed choices of this project: data widths are powers of two from 32 to 512 bits, every burst is
INCR (``axburst = 1``) of full-width beats (``axsize = log2(data_bits / 8)``), ``axcache = 0b0011``
(normal non-cacheable bufferable), ``axprot = 0``, ``axlock = 0``. Helpers:
:func:`beats_to_4k` (how many beats fit before a 4 KiB boundary) and :func:`split_bursts` (the
Python reference of the burst splitting the DMA engines do).
"""

from __future__ import annotations

from amaranth.hdl import Const
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "AXI_BURST_INCR",
    "AXI_CACHE",
    "AXI_MAX_BURST_BEATS",
    "AXI_PAGE_BYTES",
    "AxiResp",
    "axi4_lite_signature",
    "axi4_read_signature",
    "axi4_signature",
    "axi4_write_signature",
    "beats_to_4k",
    "connect_flat",
    "const_fields",
    "flat_members",
    "split_bursts",
]

#: AXI4 INCR bursts are at most 256 beats.
AXI_MAX_BURST_BEATS = 256
#: No burst may cross a 4 KiB address boundary.
AXI_PAGE_BYTES = 4096
#: ``axburst`` encoding of INCR.
AXI_BURST_INCR = 1
#: ``axcache`` used by the engines: normal non-cacheable, bufferable.
AXI_CACHE = 0b0011


class AxiResp:
    """``xRESP`` encodings."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check_widths(addr_bits: int, data_bits: int, id_bits: int | None) -> None:
    if isinstance(addr_bits, bool) or not isinstance(addr_bits, int) or not 1 <= addr_bits <= 64:
        raise ValueError(f"addr_bits must be an integer in 1..64, got {addr_bits!r}")
    if (
        isinstance(data_bits, bool)
        or not isinstance(data_bits, int)
        or data_bits < 8
        or data_bits > 1024
        or data_bits & (data_bits - 1)
    ):
        raise ValueError(f"data_bits must be a power of two in 8..1024, got {data_bits!r}")
    if id_bits is not None and (
        isinstance(id_bits, bool) or not isinstance(id_bits, int) or not 1 <= id_bits <= 32
    ):
        raise ValueError(f"id_bits must be an integer in 1..32, got {id_bits!r}")


def _read_members(addr_bits: int, data_bits: int, id_bits: int) -> dict:
    return {
        "arvalid": Out(1),
        "arready": In(1),
        "arid": Out(id_bits),
        "araddr": Out(addr_bits),
        "arlen": Out(8),
        "arsize": Out(3),
        "arburst": Out(2),
        "arlock": Out(1),
        "arcache": Out(4),
        "arprot": Out(3),
        "rvalid": In(1),
        "rready": Out(1),
        "rid": In(id_bits),
        "rdata": In(data_bits),
        "rresp": In(2),
        "rlast": In(1),
    }


def _write_members(addr_bits: int, data_bits: int, id_bits: int) -> dict:
    return {
        "awvalid": Out(1),
        "awready": In(1),
        "awid": Out(id_bits),
        "awaddr": Out(addr_bits),
        "awlen": Out(8),
        "awsize": Out(3),
        "awburst": Out(2),
        "awlock": Out(1),
        "awcache": Out(4),
        "awprot": Out(3),
        "wvalid": Out(1),
        "wready": In(1),
        "wdata": Out(data_bits),
        "wstrb": Out(data_bits // 8),
        "wlast": Out(1),
        "bvalid": In(1),
        "bready": Out(1),
        "bid": In(id_bits),
        "bresp": In(2),
    }


def axi4_read_signature(addr_bits: int, data_bits: int, id_bits: int) -> wiring.Signature:
    """AXI4 read half (AR and R channels), manager side.

    Parameters
    ----------
    addr_bits : int
        Width of ``araddr``.
    data_bits : int
        Width of ``rdata`` (power of two).
    id_bits : int
        Width of ``arid`` / ``rid`` (cocotbext-axi requires ID signals).
    """
    _check_widths(addr_bits, data_bits, id_bits)
    return wiring.Signature(_read_members(addr_bits, data_bits, id_bits))


def axi4_write_signature(addr_bits: int, data_bits: int, id_bits: int) -> wiring.Signature:
    """AXI4 write half (AW, W and B channels), manager side; parameters as
    :func:`axi4_read_signature`."""
    _check_widths(addr_bits, data_bits, id_bits)
    return wiring.Signature(_write_members(addr_bits, data_bits, id_bits))


def axi4_signature(addr_bits: int, data_bits: int, id_bits: int) -> wiring.Signature:
    """Full AXI4 (all five channels), manager side; parameters as :func:`axi4_read_signature`."""
    _check_widths(addr_bits, data_bits, id_bits)
    return wiring.Signature(
        {
            **_write_members(addr_bits, data_bits, id_bits),
            **_read_members(addr_bits, data_bits, id_bits),
        }
    )


def axi4_lite_signature(addr_bits: int, data_bits: int = 32) -> wiring.Signature:
    """AXI4-Lite (five channels, no bursts, no IDs), manager side.

    Parameters
    ----------
    addr_bits : int
        Width of ``awaddr`` / ``araddr``.
    data_bits : int
        32 or 64.
    """
    _check_widths(addr_bits, data_bits, None)
    if data_bits not in (32, 64):
        raise ValueError(f"AXI4-Lite data_bits must be 32 or 64, got {data_bits!r}")
    return wiring.Signature(
        {
            "awvalid": Out(1),
            "awready": In(1),
            "awaddr": Out(addr_bits),
            "awprot": Out(3),
            "wvalid": Out(1),
            "wready": In(1),
            "wdata": Out(data_bits),
            "wstrb": Out(data_bits // 8),
            "bvalid": In(1),
            "bready": Out(1),
            "bresp": In(2),
            "arvalid": Out(1),
            "arready": In(1),
            "araddr": Out(addr_bits),
            "arprot": Out(3),
            "rvalid": In(1),
            "rready": Out(1),
            "rdata": In(data_bits),
            "rresp": In(2),
        }
    )


def flat_members(prefix: str, signature: wiring.Signature) -> dict:
    """Members ``{f"{prefix}_{name}": member}`` of a flat AXI signature, for a top level's
    signature (e.g. ``flat_members("m_axi", axi4_signature(...))`` gives ``m_axi_awvalid`` ...;
    for a subordinate port pass ``signature.flip()``)."""
    out = {}
    for name, member in signature.members.items():
        if not member.is_port:
            raise TypeError(f"member {name!r} of {signature!r} is not a port: not a flat signature")
        out[f"{prefix}_{name}"] = member
    return out


def connect_flat(m, top, prefix: str, interface) -> None:
    """Wire the flat ports ``{prefix}_*`` of component ``top`` (made by :func:`flat_members`)
    to ``interface`` (an object of the same, unflattened signature, e.g. a sub-block's port).

    Members driven by ``interface`` (its signature's ``Out``, as seen from ``interface``) drive
    the flat port; the others are driven from it. Every member must exist on both sides.
    """
    for name, member in interface.signature.members.items():
        flat = getattr(top, f"{prefix}_{name}")
        inner = getattr(interface, name)
        if member.flow == wiring.Out:
            m.d.comb += flat.eq(inner)
        else:
            m.d.comb += inner.eq(flat)


def beats_to_4k(addr: int, beat_bytes: int) -> int:
    """Beats of ``beat_bytes`` from the beat-aligned address ``addr`` to the next 4 KiB boundary."""
    return (AXI_PAGE_BYTES - addr % AXI_PAGE_BYTES) // beat_bytes


def split_bursts(addr: int, nbytes: int, beat_bytes: int) -> list[tuple[int, int]]:
    """The INCR bursts that move ``nbytes`` bytes from ``addr``: ``[(aligned address, beats)]``.

    Bursts start at beat-aligned addresses (the first one at ``addr`` rounded down), have at most
    256 beats and never cross a 4 KiB boundary; each is as long as those rules allow. This is the
    reference the engines of ``hw/dma.py`` implement.
    """
    if nbytes <= 0:
        return []
    a = addr - addr % beat_bytes
    beats = -(-(addr % beat_bytes + nbytes) // beat_bytes)
    out = []
    while beats:
        n = min(beats, AXI_MAX_BURST_BEATS, beats_to_4k(a, beat_bytes))
        out.append((a, n))
        a += n * beat_bytes
        beats -= n
    return out


def const_fields(interface, prefix: str, data_bits: int) -> list:
    """Statements tying the fixed burst fields of ``interface``'s ``ar`` or ``aw`` channel
    (``prefix`` ``"ar"`` or ``"aw"``): INCR, full-width beats, :data:`AXI_CACHE`, no lock, no prot.
    """
    size = (data_bits // 8).bit_length() - 1
    return [
        getattr(interface, f"{prefix}size").eq(Const(size, 3)),
        getattr(interface, f"{prefix}burst").eq(AXI_BURST_INCR),
        getattr(interface, f"{prefix}lock").eq(0),
        getattr(interface, f"{prefix}cache").eq(AXI_CACHE),
        getattr(interface, f"{prefix}prot").eq(0),
    ]
