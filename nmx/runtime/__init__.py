"""The host runtime: drive an accelerator (Verilated or on a board) through a transport."""
