"""Give the systolic array's MULT18X18D cells fixed sites spread over the ECP5-85F's DSP rows.

The ECP5-85F has its 156 MULT18X18D sites in three rows of tiles (Y10, Y34, Y58), 52 per row:
13 DSP blocks of four multipliers (``MULT18_0``, ``_1``, ``_4``, ``_5`` at block column
``x``, ``x+1``, ``x+4``, ``x+5``). Left to itself, nextpnr fills the middle row completely
(52 of 52 on the whole ``ecp5`` design, the rows above and below 39 and 22) and scatters the
array's processing elements over all three, so each PE's product (16 bits out of the DSP into
its ``product_near`` register) and its operand inputs crowd the same few switchboxes: the
router2 heatmaps put the worst congestion in rows 32-35 and the PEs' product nets first.

This pass sets a ``BEL`` attribute on each PE's multiplier (``...array.pe_<i>_<j>...``): array
row ``i`` goes to DSP row ``i * 3 // rows`` (rows 0-2 to Y10, 3-5 to Y34, 6-7 to Y58 for
8x8), one multiplier per half block (``MULT18_0`` and ``MULT18_4`` only), so at most half of a
row's sites hold a PE and every PE has a free neighbour site. Along a DSP row the sites go
column by column, the array rows of that DSP row interleaved (half-block ``3 * j + k`` for the
``k``-th array row there), so a partial sum's hop to the next array row is a neighbour site or
the same column one DSP row down, and an operand's hop to the next column three half-blocks.
The other multipliers (epilogue, address arithmetic) stay free for the placer. Nothing of the
logic changes; only where nextpnr may put those cells.
"""

from __future__ import annotations

import re

__all__ = ["DSP_ROWS", "array_dsp_sites", "place_array_dsps"]

#: Y of the ECP5-85F's DSP tile rows.
DSP_ROWS = (10, 34, 58)
#: Column of ``MULT18_0`` in each of the 13 DSP blocks of a row (the centre block is wider).
DSP_BLOCKS = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)

_PE = re.compile(r"array\.pe_(\d+)_(\d+)\.")


def array_dsp_sites(rows: int, cols: int) -> dict[tuple[int, int], str]:
    """The site (``X<x>/Y<y>/MULT18_<n>``) of PE ``(i, j)`` of a ``rows`` x ``cols`` array."""
    half_sites = [(x + off, slot) for x in DSP_BLOCKS for off, slot in ((0, 0), (4, 4))]
    per_row: dict[int, list[int]] = {}
    for i in range(rows):
        per_row.setdefault(i * len(DSP_ROWS) // rows, []).append(i)
    depth = max(len(rs) for rs in per_row.values())
    if cols * depth > len(half_sites):
        raise ValueError(f"{cols} x {depth} PEs do not fit the {len(half_sites)} half-block "
                         f"sites of a DSP row")
    sites = {}
    for r, array_rows in per_row.items():
        for k, i in enumerate(array_rows):
            for j in range(cols):
                x, slot = half_sites[j * depth + k]
                sites[(i, j)] = f"X{x}/Y{DSP_ROWS[r]}/MULT18_{slot}"
    return sites


def place_array_dsps(netlist: dict) -> int:
    """Set ``BEL`` on the array's MULT18X18D cells of every module of ``netlist`` (Yosys
    JSON, modified in place); returns how many were given a site."""
    placed = 0
    for module in netlist["modules"].values():
        pes = {}
        for name, cell in module.get("cells", {}).items():
            mo = _PE.search(name)
            if cell["type"] == "MULT18X18D" and mo:
                pes[(int(mo.group(1)), int(mo.group(2)))] = cell
        if not pes:
            continue
        rows = 1 + max(i for i, _ in pes)
        cols = 1 + max(j for _, j in pes)
        for pe, site in array_dsp_sites(rows, cols).items():
            if pe in pes:
                pes[pe].setdefault("attributes", {})["BEL"] = site
                placed += 1
    return placed
