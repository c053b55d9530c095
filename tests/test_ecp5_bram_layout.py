"""``scripts/ecp5_bram_layout.py``: the accumulator banks' block RAMs on fixed sites."""

from __future__ import annotations

import pytest

from scripts.ecp5_bram_layout import (
    ACC_ROWS,
    accumulator_bram_sites,
    ebr_sites,
    place_accumulator_brams,
)


def test_a_block_ram_row_has_52_sites_in_13_groups_of_four():
    row = ebr_sites(70)
    assert len(row) == len(set(row)) == 52
    assert row[:5] == ["X4/Y70/EBR0", "X6/Y70/EBR1", "X8/Y70/EBR2", "X10/Y70/EBR3",
                       "X13/Y70/EBR0"]
    assert row[-1] == "X120/Y70/EBR3"
    with pytest.raises(ValueError, match="block-RAM row"):
        ebr_sites(58)


def test_each_bank_takes_every_other_site_of_its_row_and_the_banks_share_columns():
    sites = accumulator_bram_sites(2, 8)
    assert len(set(sites.values())) == 16
    assert sites[(0, 0)] == "X40/Y70/EBR0" and sites[(0, 1)] == "X44/Y70/EBR2"
    assert sites[(0, 7)] == "X73/Y70/EBR2"
    for k in range(8):
        assert sites[(1, k)] == sites[(0, k)].replace("/Y70/", "/Y82/")
    with pytest.raises(ValueError, match="do not fit"):
        accumulator_bram_sites(2, 27)
    # one block per group of four sites: every fourth site
    wide = accumulator_bram_sites(2, 8, first_x=13, step=4)
    assert [wide[(0, k)] for k in (0, 1, 7)] == ["X13/Y70/EBR0", "X22/Y70/EBR0", "X78/Y70/EBR0"]
    with pytest.raises(ValueError, match="banks"):
        accumulator_bram_sites(3, 8)


def test_only_the_accumulator_banks_block_rams_get_a_bel():
    def cell(kind):
        return {"type": kind, "attributes": {}, "connections": {}}

    cells = {f"core.accumulator.banks.bank{b}.0.{k}": cell("DP16KD")
             for b in range(2) for k in (0, 1, 10, 2)}
    cells["core.scratchpad.banks.bank0.0.0"] = cell("DP16KD")
    cells["core.epilogue.table.level3_mem_0.0.0"] = cell("DP16KD")
    cells["core.accumulator.banks.bank0_TRELLIS_FF_Q"] = cell("TRELLIS_FF")
    netlist = {"modules": {"top": {"cells": cells}}}
    assert place_accumulator_brams(netlist) == 8
    bels = {n: c["attributes"].get("BEL") for n, c in cells.items()}
    # natural order of the block names: 0, 1, 2, 10
    assert bels["core.accumulator.banks.bank0.0.10"] == "X53/Y70/EBR2"
    assert bels["core.accumulator.banks.bank1.0.2"] == f"X49/Y{ACC_ROWS[1]}/EBR0"
    assert bels["core.scratchpad.banks.bank0.0.0"] is None
    assert bels["core.epilogue.table.level3_mem_0.0.0"] is None
    assert bels["core.accumulator.banks.bank0_TRELLIS_FF_Q"] is None
