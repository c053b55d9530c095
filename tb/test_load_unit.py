"""The load unit (hw/load_unit.py) on Verilated RTL against the golden model (testbench:
tb/load_unit_tb.py). Prints the ``throughput`` test's cycle counts (ideal DRAM model)."""

from __future__ import annotations

import pytest

from hw.config import preset
from tb.dma_runs import run_harness

pytestmark = pytest.mark.rtl

TESTS = {
    "random_loads",
    "random_loads_hostile",
    "load_errors",
    "load_errors_hostile",
    "tables",
    "tables_hostile",
    "tokens_and_sync",
    "read_error_response",
    "flush_above",
    "throughput",
    "long_runs",
    "long_runs_hostile",
}


def _run(config_name: str, cases: int, seed: int) -> None:
    from tb.dma_harness import LoadUnitHarness

    config = preset(config_name)
    metrics = run_harness(
        LoadUnitHarness(config),
        top="load_unit",
        name=config.artifact_stem("load_unit"),
        test_module="tb.load_unit_tb",
        params={"config": config_name, "cases": cases, "seed": seed},
        expect=TESTS,
    )
    for label, m in metrics.items():
        print(f"{config_name} {label}: {m}")


def test_load_unit_tiny():
    _run("tiny", cases=30, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "default", "ecp5"])
def test_load_unit_sweep(config_name):
    _run(config_name, cases=300, seed=11)
