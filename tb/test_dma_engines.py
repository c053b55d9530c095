"""The AXI burst engines of hw/dma.py on Verilated RTL (testbench: tb/dma_engines_tb.py)."""

from __future__ import annotations

import pytest

from hw.config import preset
from tb.dma_runs import run_harness

pytestmark = pytest.mark.rtl

TESTS = {
    "reads",
    "reads_hostile",
    "read_errors_hostile",
    "writes",
    "writes_hostile",
    "write_errors_hostile",
}


def _run(addr_bits: int, data_bits: int, count: int, seed: int) -> None:
    from tb.dma_harness import DmaEnginesHarness

    run_harness(
        DmaEnginesHarness(addr_bits, data_bits),
        top="dma_engines",
        name=f"dma_engines_a{addr_bits}_d{data_bits}",
        test_module="tb.dma_engines_tb",
        params={"addr_bits": addr_bits, "data_bits": data_bits, "count": count, "seed": seed},
        expect=TESTS,
    )


def test_dma_engines_tiny():
    cfg = preset("tiny")
    _run(cfg.addr_bits, cfg.dma_data_bits, count=40, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("data_bits", [32, 128, 512])
def test_dma_engines_widths(data_bits):
    _run(48 if data_bits == 512 else 32, data_bits, count=300, seed=data_bits)
