"""Give the systolic array's MULT18X18D cells fixed sites spread over the ECP5-85F's DSP rows.

The ECP5-85F has its 156 MULT18X18D sites in three rows of tiles (Y10, Y34, Y58), 52 per row:
13 DSP blocks of four multipliers (``MULT18_0``, ``_1``, ``_4``, ``_5`` at block column
``x``, ``x+1``, ``x+4``, ``x+5``). Left to itself, nextpnr fills the middle row completely
(52 of 52 on the whole ``ecp5`` design, the rows above and below 39 and 22) and scatters the
array's processing elements over all three, so each PE's product (16 bits out of the DSP into
its ``product_near`` register) and its operand inputs crowd the same few switchboxes: the
router2 heatmaps put the worst congestion in rows 32-35 and the PEs' product nets first.

This pass sets a ``BEL`` attribute on each PE's multiplier (``...array.pe_<i>_<j>...``), one
multiplier per half block (``MULT18_0`` and ``MULT18_4`` only), so at most half of a row's
sites hold a PE and every PE has a free neighbour site. Two layouts:

``rows``
    Array row ``i`` goes to DSP row ``i * 3 // rows`` (rows 0-2 to Y10, 3-5 to Y34, 6-7 to Y58
    for 8x8). Along a DSP row the sites go column by column, the array rows of that DSP row
    interleaved (half-block ``3 * j + k`` for the ``k``-th array row there), so a partial sum's
    hop to the next array row is a neighbour site or the same column one DSP row down (24 tile
    rows: the 32-bit sum crosses it into the next PE's adder), and an operand's hop to the next
    column three half-blocks.
``columns``
    Array column ``j`` goes to DSP row ``j * 3 // cols`` (columns 0-2 to Y10, 3-5 to Y34, 6-7 to
    Y58 for 8x8), the column's PEs on consecutive half-blocks (half-block ``rows * k + i`` for
    the ``k``-th array column there, ``k`` counted from the right in the middle DSP row): a
    column's whole partial-sum chain (and its weight broadcast) stays in one DSP row, each hop
    to the neighbouring half-block, and the operand's hop to the next column (8 bits, DSP
    register to DSP register, no logic) is ``rows`` half-blocks along the row or, between DSP
    rows, the same site one DSP row down.

The other multipliers (epilogue, address arithmetic) stay free for the placer. Nothing of the
logic changes; only where nextpnr may put those cells.
"""

from __future__ import annotations

import re

__all__ = ["DSP_ROWS", "LAYOUTS", "array_dsp_sites", "place_array_dsps"]

#: Y of the ECP5-85F's DSP tile rows.
DSP_ROWS = (10, 34, 58)
#: Column of ``MULT18_0`` in each of the 13 DSP blocks of a row (the centre block is wider).
DSP_BLOCKS = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
#: The layouts :func:`array_dsp_sites` knows (see the module docs).
LAYOUTS = ("rows", "columns")

_PE = re.compile(r"array\.pe_(\d+)_(\d+)\.")


def array_dsp_sites(rows: int, cols: int, layout: str = "rows") -> dict[tuple[int, int], str]:
    """The site (``X<x>/Y<y>/MULT18_<n>``) of PE ``(i, j)`` of a ``rows`` x ``cols`` array.

    ``layout`` is ``"rows"`` (array rows spread over the DSP rows) or ``"columns"`` (array
    columns spread over them, each column's partial-sum chain inside one DSP row).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout = {layout!r}: one of {', '.join(LAYOUTS)}")
    half_sites = [(x + off, slot) for x in DSP_BLOCKS for off, slot in ((0, 0), (4, 4))]
    spread, along = (rows, cols) if layout == "rows" else (cols, rows)
    per_row: dict[int, list[int]] = {}
    for s in range(spread):
        per_row.setdefault(s * len(DSP_ROWS) // spread, []).append(s)
    depth = max(len(ss) for ss in per_row.values())
    if along * depth > len(half_sites):
        raise ValueError(f"{along} x {depth} PEs do not fit the {len(half_sites)} half-block "
                         f"sites of a DSP row")
    sites = {}
    for r, spread_here in per_row.items():
        for k, s in enumerate(spread_here):
            for t in range(along):
                if layout == "rows":
                    pe, half = (s, t), t * depth + k
                else:
                    # boustrophedon: odd DSP rows take their columns right to left, so the
                    # operand's hop between DSP rows is to the same site one row down
                    pos = k if r % 2 == 0 else len(spread_here) - 1 - k
                    pe, half = (t, s), pos * along + t
                x, slot = half_sites[half]
                sites[pe] = f"X{x}/Y{DSP_ROWS[r]}/MULT18_{slot}"
    return sites


def place_array_dsps(netlist: dict, layout: str = "rows") -> int:
    """Set ``BEL`` on the array's MULT18X18D cells of every module of ``netlist`` (Yosys
    JSON, modified in place) by ``layout`` (:func:`array_dsp_sites`); returns how many were
    given a site."""
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
        for pe, site in array_dsp_sites(rows, cols, layout).items():
            if pe in pes:
                pes[pe].setdefault("attributes", {})["BEL"] = site
                placed += 1
    return placed
