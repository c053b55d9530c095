"""10,000 random programs per config on the C++ harness (tb/random_sweep.py), ``make test-slow``."""

from __future__ import annotations

import pytest

from tb.random_sweep import sweep

pytestmark = [pytest.mark.rtl, pytest.mark.slow]


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_ten_thousand_random_programs(name):
    """Cases 0..9999 of seed 2: status, offset and DRAM image equal the golden model's (cases
    with injected AXI errors are left to the cocotb sweep); every status the RTL reports seen."""
    s = sweep(name, 2, 0, 10_000)
    assert sum(s["codes"].values()) + s["skipped_faults"] == 10_000
    assert len(s["codes"]) == 10, s["codes"]  # OK and the nine codes the RTL reports
