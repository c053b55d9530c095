"""``scripts/ecp5_dsp_layout.py``: the array's multipliers on fixed, spread DSP sites."""

from __future__ import annotations

import re

import pytest

from scripts.ecp5_dsp_layout import DSP_BLOCKS, DSP_ROWS, array_dsp_sites, place_array_dsps

SITE = re.compile(r"X(\d+)/Y(\d+)/MULT18_([0-9])$")


def test_an_8x8_array_takes_half_block_sites_spread_over_the_three_rows():
    sites = array_dsp_sites(8, 8)
    assert len(sites) == 64 and len(set(sites.values())) == 64
    per_row = {y: 0 for y in DSP_ROWS}
    for (i, _j), site in sites.items():
        x, y, slot = map(int, SITE.match(site).groups())
        assert slot in (0, 4) and x - slot in DSP_BLOCKS
        assert y == DSP_ROWS[i * 3 // 8]
        per_row[y] += 1
    assert per_row == {10: 24, 34: 24, 58: 16}
    # the next array row of a column is the neighbouring half block (same DSP row) or the
    # same half block one DSP row down
    assert sites[(0, 0)] == "X4/Y10/MULT18_0" and sites[(1, 0)] == "X8/Y10/MULT18_4"
    assert sites[(3, 0)] == "X4/Y34/MULT18_0" and sites[(6, 5)] == sites[(3, 5)].replace(
        "Y34", "Y58")


def test_the_column_layout_keeps_each_partial_sum_chain_in_one_dsp_row():
    sites = array_dsp_sites(8, 8, "columns")
    assert len(sites) == 64 and len(set(sites.values())) == 64
    half = [(x + off, slot) for x in DSP_BLOCKS for off, slot in ((0, 0), (4, 4))]
    per_row = {y: 0 for y in DSP_ROWS}
    for (i, j), site in sites.items():
        x, y, slot = map(int, SITE.match(site).groups())
        assert slot in (0, 4) and x - slot in DSP_BLOCKS
        assert y == DSP_ROWS[j * 3 // 8]
        per_row[y] += 1
        if i:  # the partial sum's hop is to the next half block of the same DSP row
            px, py, pslot = map(int, SITE.match(sites[(i - 1, j)]).groups())
            assert py == y and half.index((x, slot)) == half.index((px, pslot)) + 1
    assert per_row == {10: 24, 34: 24, 58: 16}
    # the operand's hops between DSP rows go to the same site one DSP row down
    for i in range(8):
        assert sites[(i, 3)] == sites[(i, 2)].replace("Y10", "Y34")
        assert sites[(i, 6)] == sites[(i, 5)].replace("Y34", "Y58")
    assert sites[(0, 0)] == "X4/Y10/MULT18_0" and sites[(7, 0)] == "X35/Y10/MULT18_4"


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout"):
        array_dsp_sites(8, 8, "diagonal")


def test_too_wide_an_array_is_refused():
    with pytest.raises(ValueError, match="do not fit"):
        array_dsp_sites(8, 9)
    with pytest.raises(ValueError, match="do not fit"):
        array_dsp_sites(9, 8, "columns")


def test_only_the_arrays_multipliers_get_a_bel():
    def cell(kind):
        return {"type": kind, "attributes": {}, "connections": {}}

    cells = {f"core.compute_unit.array.pe_{i}_{j}.mult.mult18x18d": cell("MULT18X18D")
             for i in range(2) for j in range(2)}
    cells["core.epilogue.pwl0_mul_hi.mult18x18d"] = cell("MULT18X18D")
    cells["core.compute_unit.array.pe_0_0.acc_TRELLIS_FF_Q"] = cell("TRELLIS_FF")
    netlist = {"modules": {"top": {"cells": cells}}}
    assert place_array_dsps(netlist) == 4
    bels = {n: c["attributes"].get("BEL") for n, c in cells.items()}
    assert bels["core.compute_unit.array.pe_1_1.mult.mult18x18d"] == "X8/Y34/MULT18_4"
    assert bels["core.epilogue.pwl0_mul_hi.mult18x18d"] is None
    assert bels["core.compute_unit.array.pe_0_0.acc_TRELLIS_FF_Q"] is None
