"""AXI4 and AXI4-Lite signatures (AMBA AXI and ACE specification, ARM IHI 0022).

Signals are flat members named as in the specification (``awaddr``, ``rvalid``, ...), seen from
the master; a slave uses ``In(signature)``. A top level names its ports ``<prefix>_<member>``
(``m_axi_araddr``), which is what cocotbext-axi and vendor tools expect.

This is a minimal local module written by the control engineer for the register file and
instruction fetch; the DMA engineer owns its full form (burst helpers).
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "BURST_INCR",
    "RESP_DECERR",
    "RESP_OKAY",
    "RESP_SLVERR",
    "AxiLiteSignature",
    "AxiReadSignature",
    "AxiSignature",
    "AxiWriteSignature",
]

RESP_OKAY = 0b00
RESP_SLVERR = 0b10
RESP_DECERR = 0b11
BURST_INCR = 0b01


def _check(name: str, value, lo: int, hi: int, pow2: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if pow2 and value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value}")


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite, master's view.

    Parameters
    ----------
    addr_bits : int
        Address width, 1..64.
    data_bits : int
        Data width, 32 or 64.
    """

    def __init__(self, addr_bits: int, data_bits: int = 32):
        _check("addr_bits", addr_bits, 1, 64)
        if data_bits not in (32, 64):
            raise ValueError(f"data_bits must be 32 or 64, got {data_bits!r}")
        self._addr_bits, self._data_bits = addr_bits, data_bits
        super().__init__(
            {
                "awaddr": Out(addr_bits),
                "awprot": Out(3),
                "awvalid": Out(1),
                "awready": In(1),
                "wdata": Out(data_bits),
                "wstrb": Out(data_bits // 8),
                "wvalid": Out(1),
                "wready": In(1),
                "bresp": In(2),
                "bvalid": In(1),
                "bready": Out(1),
                "araddr": Out(addr_bits),
                "arprot": Out(3),
                "arvalid": Out(1),
                "arready": In(1),
                "rdata": In(data_bits),
                "rresp": In(2),
                "rvalid": In(1),
                "rready": Out(1),
            }
        )

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    @property
    def data_bits(self) -> int:
        return self._data_bits


def _read_members(addr_bits: int, data_bits: int, id_bits: int) -> dict:
    return {
        "arid": Out(id_bits),
        "araddr": Out(addr_bits),
        "arlen": Out(8),
        "arsize": Out(3),
        "arburst": Out(2),
        "arlock": Out(1),
        "arcache": Out(4),
        "arprot": Out(3),
        "arvalid": Out(1),
        "arready": In(1),
        "rid": In(id_bits),
        "rdata": In(data_bits),
        "rresp": In(2),
        "rlast": In(1),
        "rvalid": In(1),
        "rready": Out(1),
    }


def _write_members(addr_bits: int, data_bits: int, id_bits: int) -> dict:
    return {
        "awid": Out(id_bits),
        "awaddr": Out(addr_bits),
        "awlen": Out(8),
        "awsize": Out(3),
        "awburst": Out(2),
        "awlock": Out(1),
        "awcache": Out(4),
        "awprot": Out(3),
        "awvalid": Out(1),
        "awready": In(1),
        "wdata": Out(data_bits),
        "wstrb": Out(data_bits // 8),
        "wlast": Out(1),
        "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_bits),
        "bresp": In(2),
        "bvalid": In(1),
        "bready": Out(1),
    }


class _AxiBase(wiring.Signature):
    def __init__(self, members: dict, addr_bits: int, data_bits: int, id_bits: int):
        _check("addr_bits", addr_bits, 1, 64)
        _check("data_bits", data_bits, 8, 1024, pow2=True)
        _check("id_bits", id_bits, 1, 16)
        self._addr_bits, self._data_bits, self._id_bits = addr_bits, data_bits, id_bits
        super().__init__(members)

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    @property
    def data_bits(self) -> int:
        return self._data_bits

    @property
    def id_bits(self) -> int:
        return self._id_bits


class AxiReadSignature(_AxiBase):
    """The read half of AXI4 (AR and R channels), master's view."""

    def __init__(self, addr_bits: int, data_bits: int, id_bits: int):
        super().__init__(_read_members(addr_bits, data_bits, id_bits), addr_bits, data_bits,
                         id_bits)


class AxiWriteSignature(_AxiBase):
    """The write half of AXI4 (AW, W and B channels), master's view."""

    def __init__(self, addr_bits: int, data_bits: int, id_bits: int):
        super().__init__(_write_members(addr_bits, data_bits, id_bits), addr_bits, data_bits,
                         id_bits)


class AxiSignature(_AxiBase):
    """Full AXI4 (all five channels), master's view."""

    def __init__(self, addr_bits: int, data_bits: int, id_bits: int):
        members = {**_write_members(addr_bits, data_bits, id_bits),
                   **_read_members(addr_bits, data_bits, id_bits)}
        super().__init__(members, addr_bits, data_bits, id_bits)
