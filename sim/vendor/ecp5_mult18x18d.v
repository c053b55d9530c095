// Behavioural model of the Lattice ECP5 MULT18X18D (sysDSP 18x18 multiplier), for simulating the
// RTL that `hw.target.ECP5` generates (hw/processing_element.py instantiates this primitive). Yosys
// ships only a black box of it (cells_bb.v), so Verilator needs a model.
//
// Modelled: P = A * B (each operand signed when SIGNEDA / SIGNEDB is high), with the input A and B
// registers, the pipeline register and the output register each either bypassed ("NONE") or
// clocked by CLK0, with its clock enable CE0..CE3 and synchronous reset RST0..RST3 chosen by the
// REG_*_CE / REG_*_RST parameters (RESETMODE "SYNC"). Not modelled (elaboration stops with an
// error if asked for): other clocks, asynchronous reset, the C input and SOURCEA/B shift paths,
// MULT_BYPASS. Ports: those `hw/dsp.py` connects (A, B, C, SIGNEDA/B, SOURCEA/B, CLK0, CE0,
// CE1, RST0, P); the other clocks, enables and resets (CE2/3 and RST1..3 read as 0), the cascade
// ports and the register outputs are left out.
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
module MULT18X18D (
    A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, CE1, RST0,
    P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, CE1, RST0;
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35;

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [3:0] ce = {2'b00, CE1, CE0};
    wire [3:0] rst = {3'b000, RST0};

    function automatic integer index(input [8*4-1:0] name);  // "CE2" -> 2, "RST1" -> 1
        index = name[7:0] - "0";
    endfunction

    localparam integer CE_A = index(REG_INPUTA_CE), RST_A = index(REG_INPUTA_RST);
    localparam integer CE_B = index(REG_INPUTB_CE), RST_B = index(REG_INPUTB_RST);
    localparam integer CE_P = index(REG_PIPELINE_CE), RST_P = index(REG_PIPELINE_RST);
    localparam integer CE_O = index(REG_OUTPUT_CE), RST_O = index(REG_OUTPUT_RST);

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
                || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
                || (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0")
                || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0"))
            $error("MULT18X18D model: only CLK0 (or NONE) is modelled for the registers");
        if (RESETMODE != "SYNC") $error("MULT18X18D model: only RESETMODE SYNC is modelled");
        if (MULT_BYPASS != "DISABLED") $error("MULT18X18D model: MULT_BYPASS is not modelled");
    end

    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg sa_reg = 1'b0, sb_reg = 1'b0;
    reg [35:0] pipe_reg = 36'd0, out_reg = 36'd0;
    wire [17:0] a_use = REG_INPUTA_CLK == "NONE" ? a : a_reg;
    wire [17:0] b_use = REG_INPUTB_CLK == "NONE" ? b : b_reg;
    wire sa_use = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_reg;
    wire sb_use = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_reg;
    wire [35:0] a_ext = {{18{sa_use & a_use[17]}}, a_use};
    wire [35:0] b_ext = {{18{sb_use & b_use[17]}}, b_use};
    wire [35:0] product = a_ext * b_ext;
    wire [35:0] p_use = REG_PIPELINE_CLK == "NONE" ? product : pipe_reg;
    wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? p_use : out_reg;

    always @(posedge CLK0) begin
        if (rst[RST_A]) begin a_reg <= 18'd0; sa_reg <= 1'b0; end
        else if (ce[CE_A]) begin a_reg <= a; sa_reg <= SIGNEDA; end
        if (rst[RST_B]) begin b_reg <= 18'd0; sb_reg <= 1'b0; end
        else if (ce[CE_B]) begin b_reg <= b; sb_reg <= SIGNEDB; end
        if (rst[RST_P]) pipe_reg <= 36'd0;
        else if (ce[CE_P]) pipe_reg <= product;
        if (rst[RST_O]) out_reg <= 36'd0;
        else if (ce[CE_O]) out_reg <= p_use;
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule
/* verilator lint_on UNUSEDPARAM */
/* verilator lint_on UNUSEDSIGNAL */

