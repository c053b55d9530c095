"""The fast path's top level (sim.rtl_harness.sim_top_verilog): the accelerator's ports passed
through, ``rst`` sampled by a flip-flop; a module without clk/rst is an error naming it."""

from __future__ import annotations

import pytest

import sim.rtl_harness as rh
from hw.errors import NmxError
from sim.rtl_harness import SIM_TOP, enable_form_verilog, sim_top_verilog

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


def _held_registers_verilog() -> str:
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Held(wiring.Component):
        def __init__(self):
            super().__init__({"en": In(1), "d": In(8), "q": Out(8), "r": Out(8), "s": Out(8)})

        def elaborate(self, platform):
            m = Module()
            q = Signal(8, reset_less=True)
            r = Signal(8)  # reset: its process also assigns the init value, left as it is
            s = Signal(8, reset_less=True)  # two conditions: left as it is
            with m.If(self.en):
                m.d.sync += [q.eq(self.d), r.eq(self.d)]
            with m.If(self.d[0]):
                m.d.sync += s.eq(self.d)
            with m.Elif(self.en):
                m.d.sync += s.eq(0)
            m.d.comb += [self.q.eq(q), self.r.eq(r), self.s.eq(s)]
            return m

    return verilog.convert(Held(), name="held")


def test_enable_form_rewrites_only_plain_held_registers():
    text = _held_registers_verilog()
    assert "    q <= \\$" in text
    fast, count = enable_form_verilog(text)
    assert count == 1
    assert "  always @(posedge clk)\n    if (en) q <= d;\n" in fast
    assert "    q <= \\$" not in fast and "  = q;\n    if" not in fast
    # The other registers are left as they are.
    assert fast.count("always @(posedge clk)") == text.count("always @(posedge clk)")
    assert "    r <= \\$" in fast and "    s <= \\$" in fast
    assert enable_form_verilog(fast) == (fast, 0)


def test_enable_form_leaves_a_register_whose_next_value_is_read_elsewhere():
    text = _held_registers_verilog()
    name = text.split("    q <= ", 1)[1].split(" ;", 1)[0]
    shared = text.replace("endmodule", f"  assign extra = {name} ;\nendmodule", 1)
    assert enable_form_verilog(shared) == (shared, 0)


def test_enable_form_file_is_rewritten_only_when_its_input_or_the_rewriter_changes(
        tmp_path, monkeypatch):
    text = _held_registers_verilog()
    fast = tmp_path / "held_fast.v"
    calls = []
    real = rh.enable_form_verilog
    monkeypatch.setattr(rh, "enable_form_verilog", lambda v: calls.append(v) or real(v))
    rh._write_enable_form(text, fast)
    assert fast.read_text() == real(text)[0] and len(calls) == 1
    rh._write_enable_form(text, fast)
    assert len(calls) == 1  # cached
    fast.write_text("edited by hand")
    rh._write_enable_form(text, fast)
    assert fast.read_text() == real(text)[0] and len(calls) == 2
    other = text.replace("endmodule", "  // changed\nendmodule", 1)
    rh._write_enable_form(other, fast)
    assert fast.read_text() == real(other)[0] and len(calls) == 3
    monkeypatch.setattr(rh, "_enable_form_version", lambda: "another rewriter")
    rh._write_enable_form(other, fast)
    assert len(calls) == 4
