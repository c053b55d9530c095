"""Build a DMA test harness (tb/dma_harness.py) and run one cocotb testbench on it; shared by
tb/test_dma_engines.py, tb/test_load_unit.py and tb/test_store_unit.py.

Verilog goes to ``build/tb/<name>_amaranth.v`` (rewritten only when it changes; the ``_amaranth``
suffix selects the generator waivers of sim/verilator_waivers.vlt) and is built once by
:func:`sim.verilator.run_cocotb`, cached by content hash.
"""

from __future__ import annotations

import json

from hw.rtl import verilog_text, write_if_changed
from sim.verilator import REPO_ROOT, run_cocotb

VERILOG_DIR = REPO_ROOT / "build" / "tb"


def run_harness(
    harness,
    *,
    top: str,
    name: str,
    test_module: str,
    params: dict,
    expect: set[str],
    timeout_s: float = 1200,
) -> dict:
    """Run ``test_module`` on ``harness``; assert every test in ``expect`` passed; return the
    run's ``metrics.json`` (empty when the testbench wrote none)."""
    path = VERILOG_DIR / f"{name}_amaranth.v"
    write_if_changed(path, verilog_text(harness, top).encode())
    res = run_cocotb(
        sources=[path],
        toplevel=top,
        test_module=test_module,
        name=f"{name}_amaranth",
        env={"NMX_TB_PARAMS": json.dumps(params, sort_keys=True)},
        timeout_s=timeout_s,
    )
    names = {t.rsplit(".", 1)[-1] for t in res.passed}
    assert expect <= names, f"tests that did not pass: {sorted(expect - names)}"
    metrics = res.results_file.parent / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.is_file() else {}
