"""Simulation: the golden ISA model, the cycle model, and the Verilator/cocotb glue."""
