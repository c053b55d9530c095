"""The store unit (hw/store_unit.py) on Verilated RTL against the golden model's DRAM image
(testbench: tb/store_unit_tb.py). Prints the ``throughput`` test's cycle counts."""

from __future__ import annotations

import pytest

from hw.config import preset
from tb.dma_runs import run_harness

pytestmark = pytest.mark.rtl

TESTS = {
    "random_stores",
    "random_stores_hostile",
    "store_errors",
    "store_errors_hostile",
    "write_error_response",
    "tokens_and_sync",
    "throughput",
    "flush_above",
}


def _run(config_name: str, cases: int, seed: int) -> None:
    from tb.dma_harness import StoreUnitHarness

    config = preset(config_name)
    metrics = run_harness(
        StoreUnitHarness(config),
        top="store_unit",
        name=config.artifact_stem("store_unit"),
        test_module="tb.store_unit_tb",
        params={"config": config_name, "cases": cases, "seed": seed},
        expect=TESTS,
    )
    for label, m in metrics.items():
        print(f"{config_name} {label}: {m}")


def test_store_unit_tiny():
    _run("tiny", cases=30, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "default", "ecp5"])
def test_store_unit_sweep(config_name):
    _run(config_name, cases=300, seed=13)
