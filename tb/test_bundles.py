"""cocotb regressions on real workloads: zoo models' compiled bundles on the Verilated
accelerator under cocotb (cocotbext-axi DRAM with random backpressure on every AXI channel and on
the register bus), the final DRAM image byte for byte equal to the golden model's and the outputs
read from it equal to the integer executor's.

Fast (``make test``): the MLP on ``tiny``. Slow (``make test-slow``): every zoo model on
``default``, one test per (model, seed), so ``pytest -n`` spreads them over cores.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from hw.config import preset
from hw.rtl import TOPS, write_rtl
from sim.dram_image import DramImage
from sim.verilator import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

VERILOG_DIR = REPO_ROOT / "build" / "tb"
TOPLEVEL = TOPS["accelerator"]


@functools.cache
def _converted(name: str):
    from compiler.convert import convert
    from compiler.zoo import load

    zm = load(name)
    return zm, convert(zm.model, zm.example_inputs, zm.calibration)


def run_bundle_tb(name: str, config_name: str, seed: int, tmp_path, *, backpressure=0.3,
                  timeout_s=3000):
    """Compile zoo model ``name`` for ``config_name`` (batch 1), run it under cocotb, check."""
    from compiler.backend import compile as compile_bundle
    from nmx.commands.compile import sample_inputs

    zm, cm = _converted(name)
    config = preset(config_name)
    bundle = compile_bundle(cm, config, batch=1, name=name)
    samples = sample_inputs(zm, cm, 1)
    image = bundle.image_for(bundle.quantize_inputs(samples))
    program = tmp_path / f"{name}.nmxp"
    program.write_bytes(bundle.program.to_bytes(config))
    dram = tmp_path / f"{name}.nmxd"
    image.save(dram)
    params = {"config": config.to_dict(), "seed": seed, "backpressure": backpressure,
              "program": str(program), "dram": str(dram), "max_cycles": 200_000_000}
    res = run_cocotb(
        sources=[write_rtl(config, VERILOG_DIR)],
        toplevel=TOPLEVEL,
        test_module="tb.accelerator_tb",
        name=config.artifact_stem(TOPLEVEL),
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        testcase="directed_program",
        timeout_s=timeout_s,
    )
    run_dir = res.results_file.parent
    final = np.fromfile(run_dir / "final.dram.bin", dtype=np.uint8)
    assert final.size == image.size
    outs, _ints = bundle.read_outputs(DramImage(final))
    for got, want in zip(outs, cm.run_samples(samples, "int"), strict=True):
        assert torch.equal(got, want), f"{name}: {int((got != want).sum())} outputs differ"
    counters = json.loads((run_dir / "counters.json").read_text())
    assert counters["ARRAY_MACS"] > 0 and counters["CYCLES"] > 0
    timing = json.loads((run_dir / "timing.json").read_text())
    print(f"{name} on {config_name} under cocotb (seed {seed}, {backpressure} pauses): "
          f"{counters['CYCLES']} cycles in {timing['run_wall_s']:.1f} s wall, "
          f"{timing['run_cpu_s']:.1f} s CPU ({counters['CYCLES'] / timing['run_cpu_s']:,.0f} "
          f"cycles per CPU second)")
    return counters


def test_mlp_bundle_on_tiny_under_backpressure(tmp_path):
    run_bundle_tb("mlp", "tiny", 1, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["mlp", "gcn", "resnet", "mobilenet", "vit", "bert"])
def test_zoo_bundle_on_default(name, seed, tmp_path):
    run_bundle_tb(name, "default", seed, tmp_path, timeout_s=20000)
