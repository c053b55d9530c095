"""Hardware: the accelerator config, the ISA and numeric contract, and the Amaranth generators."""
