"""FPGA flow glue: the FuseSoC generator and the launcher that maps edalize's tools."""
