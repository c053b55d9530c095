"""Run the accelerator's cocotb tests (tb/accelerator_tb.py) on the Verilated top level.

The Verilog for ``tiny`` is generated into ``build/tb/`` (rewritten only when it changes) and
built once by :func:`sim.verilator.run_cocotb`, cached by content hash.
"""

from __future__ import annotations

import json
import os

import pytest

from hw.config import preset
from hw.rtl import TOPS, write_rtl
from sim.verilator import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

VERILOG_DIR = REPO_ROOT / "build" / "tb"
TOPLEVEL = TOPS["accelerator"]


def run_accelerator_tb(config, *, seed=1, programs=40, backpressure=0.3, testcase=None,
                       timeout_s=900, **extra):
    params = {"config": config.to_dict(), "seed": seed, "programs": programs,
              "backpressure": backpressure, **extra}
    return run_cocotb(
        sources=[write_rtl(config, VERILOG_DIR)],
        toplevel=TOPLEVEL,
        test_module="tb.accelerator_tb",
        name=config.artifact_stem(TOPLEVEL),
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        testcase=testcase,
        timeout_s=timeout_s,
    )


def test_accelerator_control_path_tiny():
    res = run_accelerator_tb(preset("tiny"))
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert {"registers", "random_control_programs", "run_off_the_end_and_top_of_memory",
            "irq_restart_and_soft_reset", "counters_read_consistently",
            "random_load_programs", "random_compute_programs"} <= names


def test_accelerator_control_path_without_backpressure():
    run_accelerator_tb(preset("tiny"), seed=2, programs=20, backpressure=0.0,
                       testcase="random_control_programs")


def run_random_programs(name: str, seed: int, first: int, programs: int, **kwargs):
    """Cases ``first .. first + programs - 1`` of tb/random_programs.py in one simulator
    launch; returns the launch's summary (status codes, coverage)."""
    res = run_accelerator_tb(preset(name), seed=seed, programs=programs, first=first,
                             config_name=name, testcase="random_programs", **kwargs)
    assert any(t.endswith("random_programs") for t in res.passed), res
    return json.loads((res.results_file.parent / "random_programs.json").read_text())


def test_random_programs_tiny():
    """200 random programs (valid ones, and invalid ones for every status the RTL reports),
    each under a hostile bus, against the golden model; the batch covers every feature of
    tb.random_programs.REQUIRED_FEATURES. ``NMX_SEED`` picks another seed (default 1)."""
    summary = run_random_programs("tiny", int(os.environ.get("NMX_SEED", "1")), 0, 200,
                                  require_coverage=True, timeout_s=1500)
    assert sum(summary["codes"].values()) == 200


@pytest.mark.skipif("NMX_REPLAY" not in os.environ,
                    reason="replays one random program: NMX_REPLAY=config:seed:index")
def test_replay_random_program():
    """Rerun the one case a failure message names (``NMX_REPLAY=config:seed:index``)."""
    name, seed, index = os.environ["NMX_REPLAY"].split(":")
    run_random_programs(name, int(seed), int(index), 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_random_programs_cocotb_sweep(name):
    """1,000 random programs per config under cocotb, seed 3 (the 10,000-program sweeps run on
    the C++ harness: tb/test_random_sweep.py; the cases with injected AXI errors run here)."""
    summary = run_random_programs(name, 3, 0, 1000, require_coverage=True, timeout_s=6 * 3600)
    assert sum(summary["codes"].values()) == 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_accelerator_many_control_programs(name):
    config = preset(name)
    if name == "default":
        config = config.replace(dma_data_bits=256)  # words narrower than a beat
    for seed in (11, 12):
        run_accelerator_tb(config, seed=seed, programs=300, testcase="random_control_programs",
                           timeout_s=3000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_accelerator_whole_machine_differential(name):
    """Random LOAD/GEMM/EPI/STORE programs against the golden model, more of them, two seeds."""
    for seed in (21, 22):
        run_accelerator_tb(preset(name), seed=seed, programs=200,
                           testcase="random_compute_programs,random_load_programs",
                           timeout_s=5000)


@pytest.mark.slow
def test_mlp_example_on_the_rtl(tmp_path):
    """examples/mlp.nmasm (MLP + GELU + softmax, default config) on the Verilated accelerator:
    status and the whole final DRAM image equal the golden model's; prints the RTL's counters."""
    import importlib.util
    import sys

    from hw.assembler import assemble_file

    spec = importlib.util.spec_from_file_location(
        "build_mlp_image", REPO_ROOT / "examples" / "build_mlp_image.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder  # dataclasses need the module registered
    spec.loader.exec_module(builder)

    config = preset("default")
    example = builder.build(seed=0, config=config)
    dram = tmp_path / "mlp.dram"
    example.image.save(dram)
    program = tmp_path / "mlp.bin"
    program.write_bytes(assemble_file(REPO_ROOT / "examples" / "mlp.nmasm").to_bytes(config))
    params = {"config": config.to_dict(), "seed": 1, "backpressure": 0.3,
              "program": str(program), "dram": str(dram)}
    res = run_cocotb(
        sources=[write_rtl(config, VERILOG_DIR)],
        toplevel=TOPLEVEL,
        test_module="tb.accelerator_tb",
        name=config.artifact_stem(TOPLEVEL),
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        testcase="directed_program",
        timeout_s=5000,
    )
    counters = json.loads((res.results_file.parent / "counters.json").read_text())
    print(f"mlp.nmasm on the RTL (default, 30 % AXI pauses): {counters['CYCLES']} cycles, "
          f"{counters['ARRAY_MACS']} MACs")
