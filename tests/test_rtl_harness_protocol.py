"""The fast harness's AXI checks fail loudly: a stand-in top level
(tests/data/axi_misbehaving_master.v, tiny's ports) breaks one rule per scenario and the
harness must stop with AxiProtocolError naming it; legal traffic outside the DRAM gets SLVERR."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim.rtl_harness as rh
from hw.config import preset
from sim.verilator import build_library

pytestmark = pytest.mark.rtl

FAKE = Path(__file__).with_name("data") / "axi_misbehaving_master.v"


@pytest.fixture(scope="module")
def fake_transport_factory():
    lib = build_library(sources=[FAKE], toplevel="nmx_accelerator", name="axi_misbehaving_master",
                        cpp_sources=rh.HARNESS_SOURCES)

    def make(**kw):
        real = rh.build_harness
        rh.build_harness = lambda config: lib
        try:
            return rh.VerilatorTransport(preset("tiny"), mem_size=0x10000, **kw)
        finally:
            rh.build_harness = real

    return make


@pytest.mark.parametrize("scenario,backpressure,message", [
    (1, 0.0, "crosses a 4 KiB boundary"),
    (2, 0.7, "ARVALID dropped before ARREADY"),
    (3, 0.0, "WLAST=1 on beat 0 of a 2-beat write burst"),
    (4, 0.0, "AWSIZE=4 .* exceeds the 8-byte data bus"),
    (5, 0.0, "WSTRB sets byte lane 1"),
    (6, 0.0, "ARBURST=2"),
    (7, 0.7, "AR payload changed while ARVALID waited"),
])
def test_violation_stops_the_run(fake_transport_factory, scenario, backpressure, message):
    with fake_transport_factory(backpressure=backpressure, seed=scenario) as t:
        with pytest.raises(rh.AxiProtocolError, match=message):
            t.write32(0, scenario)
            t.step(500)
        with pytest.raises(rh.AxiProtocolError):  # the harness stays failed
            t.step(1)


def test_reads_past_the_dram_answer_slverr_and_legal_traffic_passes(fake_transport_factory):
    with fake_transport_factory(latency=(4, 2)) as t:
        t.write32(0, 9)  # a legal 1-beat write at 0
        t.step(50)
        t.write32(0, 8)  # a read at 0x10000 = mem_size
        t.step(50)
        assert t.read32(0) == 2  # SLVERR
        stats = t.axi_stats()
        assert stats["aw_bursts"] == stats["b_responses"] == 1
        assert stats["ar_bursts"] == stats["r_beats"] == stats["error_responses"] == 1
