"""Quantisation of the matrix graph: int8/16-bit calibration, precision policies, fine-tuning."""
