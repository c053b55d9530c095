// A stand-in for nmx_accelerator (tiny's ports: 64-bit AXI data, 5-bit IDs) that breaks the AXI
// protocol on purpose, to test the fast harness's checks (tests/test_rtl_harness_protocol.py).
// Writing N to any register starts scenario N; reading any register returns the last RRESP.
module nmx_accelerator (
  input clk, input rst, output irq,
  output reg [31:0] m_axi_araddr, output reg [1:0] m_axi_arburst, output [4:0] m_axi_arid,
  output reg [7:0] m_axi_arlen, output reg [2:0] m_axi_arsize, output reg m_axi_arvalid,
  input m_axi_arready,
  output reg [31:0] m_axi_awaddr, output reg [1:0] m_axi_awburst, output [4:0] m_axi_awid,
  output reg [7:0] m_axi_awlen, output reg [2:0] m_axi_awsize, output reg m_axi_awvalid,
  input m_axi_awready,
  output reg [63:0] m_axi_wdata, output reg [7:0] m_axi_wstrb, output reg m_axi_wlast,
  output reg m_axi_wvalid, input m_axi_wready,
  input [4:0] m_axi_bid, input [1:0] m_axi_bresp, input m_axi_bvalid, output m_axi_bready,
  input [63:0] m_axi_rdata, input [4:0] m_axi_rid, input m_axi_rlast, input [1:0] m_axi_rresp,
  input m_axi_rvalid, output m_axi_rready,
  input [11:0] s_axi_araddr, input [2:0] s_axi_arprot, input s_axi_arvalid,
  output s_axi_arready, input [11:0] s_axi_awaddr, input [2:0] s_axi_awprot,
  input s_axi_awvalid, output s_axi_awready, input s_axi_bready, output [1:0] s_axi_bresp,
  output reg s_axi_bvalid, output [31:0] s_axi_rdata, input s_axi_rready,
  output [1:0] s_axi_rresp, output reg s_axi_rvalid, input [31:0] s_axi_wdata,
  output s_axi_wready, input [3:0] s_axi_wstrb, input s_axi_wvalid
);
  reg [31:0] scenario;
  reg [1:0] last_rresp;
  assign irq = 1'b0;
  assign m_axi_arid = 5'd0;
  assign m_axi_awid = 5'd0;
  assign m_axi_bready = 1'b1;
  assign m_axi_rready = 1'b1;
  // Register slave: both write channels together, one response at a time.
  wire take_write = s_axi_awvalid & s_axi_wvalid & ~s_axi_bvalid;
  assign s_axi_awready = take_write;
  assign s_axi_wready = take_write;
  assign s_axi_bresp = 2'd0;
  assign s_axi_arready = ~s_axi_rvalid;
  assign s_axi_rdata = {30'd0, last_rresp};
  assign s_axi_rresp = 2'd0;
  always @(posedge clk) begin
    if (rst) begin
      scenario <= 0; last_rresp <= 0; s_axi_bvalid <= 0; s_axi_rvalid <= 0;
      m_axi_arvalid <= 0; m_axi_awvalid <= 0; m_axi_wvalid <= 0;
      m_axi_araddr <= 0; m_axi_arlen <= 0; m_axi_arsize <= 3; m_axi_arburst <= 1;
      m_axi_awaddr <= 0; m_axi_awlen <= 0; m_axi_awsize <= 3; m_axi_awburst <= 1;
      m_axi_wdata <= 0; m_axi_wstrb <= 8'hFF; m_axi_wlast <= 1;
    end else begin
      if (take_write) begin
        s_axi_bvalid <= 1;
        scenario <= s_axi_wdata;
        case (s_axi_wdata)
          1: begin m_axi_arvalid <= 1; m_axi_araddr <= 32'hFF8; m_axi_arlen <= 1; end
          2, 7: m_axi_arvalid <= 1;
          3: begin m_axi_awvalid <= 1; m_axi_awlen <= 1; m_axi_wvalid <= 1; m_axi_wlast <= 1; end
          4: begin m_axi_awvalid <= 1; m_axi_awsize <= 4; end
          5: begin m_axi_awvalid <= 1; m_axi_awsize <= 0; m_axi_wvalid <= 1; end
          6: begin m_axi_arvalid <= 1; m_axi_arburst <= 2; end
          8: begin m_axi_arvalid <= 1; m_axi_araddr <= 32'h10000; end
          9: begin m_axi_awvalid <= 1; m_axi_wvalid <= 1; end
          default: ;
        endcase
      end else if (s_axi_bvalid & s_axi_bready) s_axi_bvalid <= 0;
      if (s_axi_arvalid & ~s_axi_rvalid) s_axi_rvalid <= 1;
      else if (s_axi_rvalid & s_axi_rready) s_axi_rvalid <= 0;
      if (m_axi_rvalid) last_rresp <= m_axi_rresp;
      // Scenario 2: ARVALID toggles whatever ARREADY says; 7: ARADDR moves while waiting.
      if (scenario == 2) m_axi_arvalid <= ~m_axi_arvalid;
      else if (scenario == 7) begin  // bursts back to back
        m_axi_arvalid <= 1;
        if (m_axi_arvalid && !m_axi_arready) m_axi_araddr <= m_axi_araddr + 8;
      end
      else if (m_axi_arvalid & m_axi_arready) m_axi_arvalid <= 0;
      if (m_axi_awvalid & m_axi_awready) m_axi_awvalid <= 0;
      if (m_axi_wvalid & m_axi_wready) m_axi_wvalid <= 0;
    end
  end
endmodule
