"""Run the systolic array's cocotb tests (tb/systolic_array_tb.py) and the ``nmx sim`` demo
(sim/array_demo.py, tb/array_demo_tb.py) on Verilated RTL.

Each shape's Verilog is generated into ``build/tb/`` (rewritten only when it changes) and built
once by :func:`sim.verilator.run_cocotb`, cached by content hash; a first build takes 20-60 s.
"""

from __future__ import annotations

import json

import pytest

from hw.config import preset
from hw.target import ECP5
from sim.array_demo import ARRAY_TOPLEVEL as TOPLEVEL
from sim.array_demo import run_array_demo, write_array_verilog
from sim.cycle_model import gemm_cycles
from sim.verilator import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

VERILOG_DIR = REPO_ROOT / "build" / "tb"
#: Behavioural model of the ECP5 multiplier primitive that the ECP5-targeted PEs instantiate.
MULT18X18D_MODEL = REPO_ROOT / "sim" / "vendor" / "ecp5_mult18x18d.v"


@pytest.mark.parametrize(
    ("rows", "cols", "tiles"),
    [(2, 2, 12), (4, 4, 10), (8, 8, 8), (3, 5, 10)],
    ids=["2x2", "4x4", "8x8", "3x5"],
)
def test_systolic_array_rtl(rows, cols, tiles):
    config = preset("tiny").replace(rows=rows, cols=cols)
    params = {"rows": rows, "cols": cols, "seed": 7, "tiles": tiles}
    res = run_cocotb(
        sources=[write_array_verilog(config, VERILOG_DIR)],
        toplevel=TOPLEVEL,
        test_module="tb.systolic_array_tb",
        name=config.artifact_stem(TOPLEVEL),
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=300,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert {"random_tiles", "extremes", "back_to_back", "back_to_back_with_stalls",
            "first_waits_for_weights"} <= names
    metrics = json.loads((res.results_file.parent / "metrics.json").read_text())
    b2b = metrics["back_to_back"]
    print(
        f"{rows}x{cols}: back-to-back {b2b['tiles']} tiles of {rows} rows: "
        f"{b2b['steady_state_macs_per_cycle']:.2f} MACs/cycle steady state "
        f"({100 * b2b['steady_state_utilisation']:.1f} % of {b2b['peak_macs_per_cycle']}), "
        f"{b2b['total_macs_per_cycle']:.2f} including fill and drain"
    )
    # Tiles of `rows` rows hide their weight loads: one operand row enters per cycle.
    assert b2b["steady_state_utilisation"] == 1.0


@pytest.mark.parametrize(("rows", "cols"), [(4, 4), (3, 5)], ids=["4x4", "3x5"])
def test_systolic_array_rtl_ecp5_dsp(rows, cols):
    """The array generated for ECP5 (registered MULT18X18D in every PE) passes the same tests,
    with the primitive's behavioural model (sim/vendor/ecp5_mult18x18d.v): same results, same
    latency and throughput as the portable RTL."""
    config = preset("tiny").replace(rows=rows, cols=cols)
    params = {"rows": rows, "cols": cols, "seed": 11, "tiles": 8}
    res = run_cocotb(
        sources=[write_array_verilog(config, VERILOG_DIR, ECP5), MULT18X18D_MODEL],
        toplevel=TOPLEVEL,
        test_module="tb.systolic_array_tb",
        name=config.artifact_stem(TOPLEVEL) + "_ecp5",
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=300,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert {"random_tiles", "extremes", "back_to_back", "back_to_back_with_stalls",
            "first_waits_for_weights"} <= names
    metrics = json.loads((res.results_file.parent / "metrics.json").read_text())
    assert metrics["back_to_back"]["steady_state_utilisation"] == 1.0


@pytest.mark.parametrize(("m", "k", "n"), [(9, 10, 7), (2, 10, 7)], ids=["tall", "short"])
def test_array_demo_with_padded_tiles(m, k, n):
    """``nmx sim``'s path on the 4x4 array, with K and N that leave padding in the last tiles.

    The RTL's measured cycles are the truth the golden cycle model is calibrated against
    (docs/architecture.md, "Verification"): the model's duration of the same GEMM must equal
    them exactly, for tiles taller than the array (preloads hidden) and shorter (preloads
    exposed).
    """
    config = preset("tiny")
    result = run_array_demo(config, m=m, k=k, n=n, seed=3)
    tiling = result.tiling
    assert (tiling.k_tiles, tiling.n_tiles) == (3, 2)
    assert result.mismatches == 0
    metrics = result.metrics
    assert metrics["operand_rows"] == 6 * m
    if m >= config.rows:
        # After the first row, one row enters per cycle.
        assert metrics["streaming_rows"] == metrics["streaming_cycles"]
    modelled = gemm_cycles(config, m, tiling.k_tiles, tiling.n_tiles)
    assert metrics["total_cycles"] == modelled
