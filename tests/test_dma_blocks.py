# amaranth: UnusedElaboratable=no
"""Python-level checks of the DMA blocks: parameter validation, the AXI helpers, port shapes.
(Behaviour is tested on Verilated RTL in tb/test_dma_engines.py, tb/test_load_unit.py and
tb/test_store_unit.py.)"""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Shape
from amaranth.lib import wiring
from hypothesis import given
from hypothesis import strategies as st

from hw.axi import (
    AXI_MAX_BURST_BEATS,
    AXI_PAGE_BYTES,
    axi4_lite_signature,
    axi4_read_signature,
    axi4_signature,
    connect_flat,
    flat_members,
    split_bursts,
)
from hw.config import preset
from hw.dma import AxiReadEngine, AxiWriteEngine, ByteRealigner
from hw.load_unit import LoadUnit
from hw.store_unit import StoreUnit


@given(
    addr=st.integers(0, 1 << 20),
    nbytes=st.integers(1, 20_000),
    beat=st.sampled_from([4, 8, 16, 32, 64]),
)
def test_split_bursts_follows_the_axi_rules(addr, nbytes, beat):
    bursts = split_bursts(addr, nbytes, beat)
    assert bursts[0][0] == addr - addr % beat
    for (a, n), (b, _) in zip(bursts, bursts[1:], strict=False):
        assert b == a + n * beat  # contiguous
    for a, n in bursts:
        assert a % beat == 0 and 1 <= n <= AXI_MAX_BURST_BEATS
        assert a % AXI_PAGE_BYTES + n * beat <= AXI_PAGE_BYTES
    end = bursts[-1][0] + bursts[-1][1] * beat
    assert end >= addr + nbytes > end - beat  # covers the run, no extra beat


def test_signatures_have_ids_and_widths():
    sig = axi4_signature(40, 128, 6)
    members = sig.members

    def width(name):
        return Shape.cast(members[name].shape).width

    assert width("arid") == 6 and width("bid") == 6
    assert width("wdata") == 128 and width("wstrb") == 16
    assert width("awaddr") == 40
    assert "awid" not in axi4_lite_signature(12).members
    read = {n for n in members if n.startswith(("ar", "r"))}
    assert set(axi4_read_signature(32, 64, 4).members) == read


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: axi4_signature(32, 48, 4), "data_bits must be a power of two"),
        (lambda: axi4_signature(0, 64, 4), "addr_bits"),
        (lambda: axi4_signature(32, 64, 0), "id_bits"),
        (lambda: axi4_lite_signature(12, 128), "AXI4-Lite data_bits"),
        (lambda: AxiReadEngine(addr_bits=32, data_bits=64, max_outstanding=0), "max_outstanding"),
        (lambda: AxiWriteEngine(addr_bits=32, data_bits=24), "data_bits"),
        (lambda: AxiReadEngine(addr_bits=32, data_bits=64, arid=16), "arid"),
        (lambda: ByteRealigner(3, 8), "beat_bytes"),
        (lambda: LoadUnit(preset("tiny"), max_outstanding=True), "max_outstanding"),
        (lambda: StoreUnit(preset("tiny"), read_ahead=1), "read_ahead"),
    ],
)
def test_bad_parameters_are_rejected_with_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_units_want_a_config():
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        LoadUnit({"rows": 4})
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        StoreUnit(None)


def test_flat_ports_wire_to_a_nested_port():
    sig = axi4_read_signature(32, 64, 4)

    class Top(wiring.Component):
        def __init__(self):
            super().__init__(flat_members("m_axi", sig))

        def elaborate(self, platform):
            m = Module()
            m.submodules.eng = eng = AxiReadEngine(addr_bits=32, data_bits=64)
            connect_flat(m, self, "m_axi", eng.axi)
            return m

    top = Top()
    assert "m_axi_arvalid" in top.signature.members
    assert top.signature.members["m_axi_rvalid"].flow == wiring.In
    from amaranth.back import rtlil

    text = rtlil.convert(top, name="top")
    assert "m_axi_araddr" in text
