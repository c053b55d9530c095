"""Run the epilogue unit's cocotb tests (tb/epilogue_tb.py) on Verilated RTL.

A larger random sweep than the Amaranth-simulator tests: the ``ecp5`` preset (8 lanes, all 8
functions loaded with random 1..64-segment tables) and ``tiny`` with 256 segments, thousands of
rows each, bit-exact against ``hw.numeric.epilogue``. The first build takes a few minutes.
"""

from __future__ import annotations

import json

import pytest

from hw.config import preset
from hw.epilogue_unit import EpilogueUnit
from hw.rtl import verilog_text, write_if_changed
from sim.verilator import REPO_ROOT, run_cocotb

pytestmark = [pytest.mark.rtl, pytest.mark.slow]

TOPLEVEL = "epilogue_unit"
TAG_BITS = 12


@pytest.mark.parametrize(("config", "rows"), [
    (preset("ecp5"), 5000),
    (preset("tiny").replace(pwl_segments=256), 3000),
], ids=["ecp5", "tiny-256seg"])
def test_epilogue_rtl_random_sweep(config, rows):
    # `*_amaranth.v`: a design the tests convert directly (sim/verilator_waivers.vlt scopes).
    path = REPO_ROOT / "build" / "tb" / f"{config.artifact_stem(TOPLEVEL)}_amaranth.v"
    write_if_changed(path, verilog_text(EpilogueUnit(config, tag_bits=TAG_BITS), TOPLEVEL).encode())
    params = {"config": config.to_dict(), "tag_bits": TAG_BITS, "seed": 3, "rows": rows}
    res = run_cocotb(
        sources=[path],
        toplevel=TOPLEVEL,
        test_module="tb.epilogue_tb",
        name=config.artifact_stem(TOPLEVEL),
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=1800,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert names == {"random_sweep_back_to_back", "random_sweep_with_backpressure"}
