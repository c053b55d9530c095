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
    rh._write_fast_verilog(text, fast)
    assert fast.read_text() == real(text)[0] and len(calls) == 1
    rh._write_fast_verilog(text, fast)
    assert len(calls) == 1  # cached
    fast.write_text("edited by hand")
    rh._write_fast_verilog(text, fast)
    assert fast.read_text() == real(text)[0] and len(calls) == 2
    other = text.replace("endmodule", "  // changed\nendmodule", 1)
    rh._write_fast_verilog(other, fast)
    assert fast.read_text() == real(other)[0] and len(calls) == 3
    monkeypatch.setattr(rh, "_rewriters_version", lambda: "another rewriter")
    rh._write_fast_verilog(other, fast)
    assert len(calls) == 4


def _lane_memory_verilog(write_ports: int = 1) -> str:
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class Lanes(wiring.Component):
        def __init__(self):
            super().__init__({"wa": In(4), "wd": In(32), "we": In(4), "ra": In(4), "re": In(1),
                              "q": Out(32)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=32, depth=16, init=[])
            wps = [mem.write_port(granularity=8) for _ in range(write_ports)]
            rp = mem.read_port(transparent_for=wps)
            for i, wp in enumerate(wps):
                m.d.comb += [wp.addr.eq(self.wa + i if i else self.wa), wp.data.eq(self.wd),
                             wp.en.eq(self.we)]
            m.d.comb += [rp.addr.eq(self.ra), rp.en.eq(self.re), self.q.eq(rp.data)]
            return m

    return verilog.convert(Lanes(), name="lanes")


def test_row_write_merges_the_byte_lanes_of_a_single_write_port():
    text = _lane_memory_verilog()
    assert text.count("] <= ") > 4  # one assignment per lane
    fast, count = rh.row_write_verilog(text)
    assert count == 1
    assert "$lanes " in fast and "[7:0] <=" not in fast and "[31:24] <=" not in fast
    assert " == " in fast and "? (" in fast  # the transparent read port merges the same lanes
    assert rh.row_write_verilog(fast) == (fast, 0)


def test_row_write_leaves_a_memory_with_two_write_ports():
    text = _lane_memory_verilog(write_ports=2)
    assert rh.row_write_verilog(text) == (text, 0)


def _memory_verilog(async_read: bool = False) -> str:
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class Mem(wiring.Component):
        def __init__(self):
            super().__init__({"wa": In(4), "wd": In(8), "we": In(1), "ra": In(4), "q": Out(8),
                              "p": Out(8)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=8, depth=16, init=[])
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(self.wa), wp.data.eq(self.wd), wp.en.eq(self.we),
                         rp.addr.eq(self.ra), self.q.eq(rp.data)]
            if async_read:
                ap = mem.read_port(domain="comb")
                m.d.comb += [ap.addr.eq(self.wa), self.p.eq(ap.data)]
            return m

    return verilog.convert(Mem(), name="mem")


def test_memory_process_merges_one_write_and_one_synchronous_read():
    text = _memory_verilog()
    fast, count = rh.memory_process_verilog(text)
    assert count == 1
    assert fast.count("always @(posedge clk)") == text.count("always @(posedge clk)") - 1
    read = fast.index("<= mem[ra]")
    write = fast.index("] = wd;")
    assert read < write  # the read statement runs before the blocking write
    assert "] <= wd" not in fast
    assert rh.memory_process_verilog(fast) == (fast, 0)


def test_memory_process_leaves_a_memory_with_an_asynchronous_read():
    text = _memory_verilog(async_read=True)
    assert rh.memory_process_verilog(text) == (text, 0)


def test_signed_product_is_widened_and_its_bits_selected():
    text = """module m(clk, a, b, p, q);
  input clk;
  input [7:0] a;
  input [7:0] b;
  output [15:0] p;
  reg [15:0] p = 16'h0000;
  output [7:0] q;
  wire [15:0] \\$1 ;
  wire [31:0] w;
  assign \\$1  = $signed(a) * $signed(b);
  assign w = $signed(a) * $signed(b);
  assign q = \\$1 [15:8];
  always @(posedge clk)
    p <= \\$1 ;
endmodule
"""
    fast, count = rh.signed_product_verilog(text)
    assert count == 1  # w is 32 bits wide already
    assert "  wire [31:0] \\$1 ;\n" in fast
    assert "    p <= \\$1 [15:0];\n" in fast and "assign q = \\$1 [15:8];" in fast
    assert "  assign \\$1  = $signed(a) * $signed(b);\n" in fast
    assert rh.signed_product_verilog(fast) == (fast, 0)
