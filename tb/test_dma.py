"""Run the DMA blocks' cocotb testbenches on Verilated RTL (tb/dma_engines_tb.py, ...).

Verilog is generated into ``build/tb/`` (rewritten only when it changes) and built once by
:func:`sim.verilator.run_cocotb`, cached by content hash.
"""

from __future__ import annotations

import json

import pytest

from hw.config import preset
from hw.rtl import verilog_text, write_if_changed
from sim.verilator import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

VERILOG_DIR = REPO_ROOT / "build" / "tb"


def _engines(addr_bits: int, data_bits: int, count: int, seed: int):
    from tb.dma_harness import DmaEnginesHarness

    top = "dma_engines"
    name = f"{top}_a{addr_bits}_d{data_bits}_amaranth"
    path = VERILOG_DIR / f"{name}.v"
    write_if_changed(path, verilog_text(DmaEnginesHarness(addr_bits, data_bits), top).encode())
    params = {"addr_bits": addr_bits, "data_bits": data_bits, "count": count, "seed": seed}
    res = run_cocotb(
        sources=[path],
        toplevel=top,
        test_module="tb.dma_engines_tb",
        name=name,
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=600,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert {"reads", "reads_hostile", "read_errors_hostile", "writes", "writes_hostile",
            "write_errors_hostile"} <= names


def test_dma_engines_tiny():
    cfg = preset("tiny")
    _engines(cfg.addr_bits, cfg.dma_data_bits, count=40, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("data_bits", [32, 128, 512])
def test_dma_engines_widths(data_bits):
    _engines(32, data_bits, count=200, seed=data_bits)


def _load_unit(config_name: str, cases: int, seed: int, tests: set[str]):
    from tb.dma_harness import LoadUnitHarness

    config = preset(config_name)
    top = "load_unit"
    name = f"{config.artifact_stem(top)}_amaranth"
    path = VERILOG_DIR / f"{name}.v"
    write_if_changed(path, verilog_text(LoadUnitHarness(config), top).encode())
    params = {"config": config_name, "cases": cases, "seed": seed}
    res = run_cocotb(
        sources=[path],
        toplevel=top,
        test_module="tb.load_unit_tb",
        name=name,
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=1200,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert tests <= names, f"missing {tests - names}"


LOAD_UNIT_TESTS = {"random_loads", "random_loads_hostile", "load_errors", "load_errors_hostile",
                   "tables", "tables_hostile", "tokens_and_sync", "read_error_response"}


def test_load_unit_tiny():
    _load_unit("tiny", cases=30, seed=1, tests=LOAD_UNIT_TESTS)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "default", "ecp5"])
def test_load_unit_sweep(config_name):
    _load_unit(config_name, cases=300, seed=11, tests=LOAD_UNIT_TESTS)


def _store_unit(config_name: str, cases: int, seed: int):
    from tb.dma_harness import StoreUnitHarness

    config = preset(config_name)
    top = "store_unit"
    name = f"{config.artifact_stem(top)}_amaranth"
    path = VERILOG_DIR / f"{name}.v"
    write_if_changed(path, verilog_text(StoreUnitHarness(config), top).encode())
    params = {"config": config_name, "cases": cases, "seed": seed}
    res = run_cocotb(
        sources=[path],
        toplevel=top,
        test_module="tb.store_unit_tb",
        name=name,
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=1200,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert STORE_UNIT_TESTS <= names, f"missing {STORE_UNIT_TESTS - names}"


STORE_UNIT_TESTS = {"random_stores", "random_stores_hostile", "store_errors",
                    "store_errors_hostile", "write_error_response", "tokens_and_sync"}


def test_store_unit_tiny():
    _store_unit("tiny", cases=30, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "default", "ecp5"])
def test_store_unit_sweep(config_name):
    _store_unit(config_name, cases=300, seed=13)
