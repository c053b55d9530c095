"""The fast path's top level (sim.rtl_harness.sim_top_verilog): the accelerator's ports passed
through, ``rst`` sampled by a flip-flop; a module without clk/rst is an error naming it."""

from __future__ import annotations

import pytest

from hw.errors import NmxError
from sim.rtl_harness import SIM_TOP, sim_top_verilog

VERILOG = """
module other(a);
  input a;
endmodule
module nmx_accelerator(clk, rst, m_axi_rdata, irq);
  input clk;
  wire clk;
  input rst;
  input [127:0] m_axi_rdata;
  output irq;
  reg irq = 1'h0;
endmodule
"""


def test_every_port_passes_through_and_rst_is_registered():
    text = sim_top_verilog(VERILOG, "nmx_accelerator")
    assert f"module {SIM_TOP}(clk, rst, m_axi_rdata, irq);" in text
    assert "  input [127:0] m_axi_rdata;" in text and "  output irq;" in text
    assert "always @(posedge clk) rst_q <= rst;" in text
    assert ".rst(rst_q)" in text and ".m_axi_rdata(m_axi_rdata)" in text
    assert text.count("    .") == 4


def test_missing_module_or_reset_is_an_error():
    with pytest.raises(NmxError, match="module nope not found"):
        sim_top_verilog(VERILOG, "nope")
    with pytest.raises(NmxError, match="no clk/rst ports"):
        sim_top_verilog(VERILOG, "other")
