"""Give the accumulator banks' DP16KD cells fixed block-RAM sites on the ECP5-85F.

The ECP5-85F has its 208 DP16KD sites in four rows of tiles (Y22, Y46, Y70, Y82), 52 per row:
13 groups of four (``EBR0`` to ``EBR3`` at columns ``x``, ``x+2``, ``x+4``, ``x+6``, the groups
starting at the DSP blocks' columns). Left to the placer, the accumulator's two banks (8
DP16KD each: 256-bit rows of 256 entries, 36 bits a block) land next to the segment table's
40 block RAMs around row Y46, and router2's congestion at its least iteration is there: the
banks' 256-bit data buses, the epilogue's search and the level RAMs' input copies in the same
switchboxes ("Whole accelerator, session 11" in docs/fpga.md).

This pass sets a ``BEL`` attribute on each accumulator DP16KD (``...accumulator.banks.bank<b>...``
in the cell's name): bank ``b`` in block-RAM row :data:`ACC_ROWS` ``[b]`` (Y70 and Y82), its blocks
on every other site from :data:`ACC_FIRST_X` on, so each block has a free neighbour site and
the two banks' block ``k`` share a column (their common write data runs straight down 12
tile rows). Nothing of the logic changes; only where nextpnr may put those cells.
"""

from __future__ import annotations

import re

__all__ = ["ACC_FIRST_X", "ACC_ROWS", "EBR_ROWS", "accumulator_bram_sites", "ebr_sites",
           "place_accumulator_brams"]

#: Y of the ECP5-85F's block-RAM tile rows.
EBR_ROWS = (22, 46, 70, 82)
#: Column of ``EBR0`` in each of the 13 groups of four sites of a row (``EBR<n>`` at ``+2n``).
EBR_GROUPS = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
#: Block-RAM rows of the accumulator's banks 0 and 1.
ACC_ROWS = (70, 82)
#: Column of the first site of each bank (the centre-left of the die: the array's last DSP
#: row, Y58, holds columns 6-7 at x 4-73).
ACC_FIRST_X = 40

#: An accumulator bank's block: ``...accumulator.banks.bank<b>.<i>.<j>`` in Yosys's names.
_ACC = re.compile(r"accumulator\.banks\.bank(\d+)\.")


def ebr_sites(y: int) -> list[str]:
    """The 52 DP16KD sites (``X<x>/Y<y>/EBR<n>``) of block-RAM row ``y``, left to right."""
    if y not in EBR_ROWS:
        raise ValueError(f"Y{y} is not a block-RAM row ({', '.join(map(str, EBR_ROWS))})")
    return [f"X{x + 2 * n}/Y{y}/EBR{n}" for x in EBR_GROUPS for n in range(4)]


def accumulator_bram_sites(banks: int, blocks: int, first_x: int = ACC_FIRST_X,
                           rows: tuple[int, ...] = ACC_ROWS,
                           step: int = 2) -> dict[tuple[int, int], str]:
    """The site of block ``k`` of bank ``b`` for ``banks`` banks of ``blocks`` DP16KD each:
    every ``step``-th site of the bank's row from the first at or right of ``first_x``."""
    if banks > len(rows):
        raise ValueError(f"{banks} banks but only {len(rows)} block-RAM rows given")
    sites = {}
    for b in range(banks):
        row = ebr_sites(rows[b])
        start = next((i for i, s in enumerate(row) if int(s[1:s.index("/")]) >= first_x), None)
        chosen = row[start::step][:blocks] if start is not None else []
        if len(chosen) < blocks:
            raise ValueError(f"{blocks} blocks do not fit every {step}th site of Y{rows[b]} "
                             f"from X{first_x}")
        for k, site in enumerate(chosen):
            sites[(b, k)] = site
    return sites


def _bank_of(name: str) -> int | None:
    mo = _ACC.search(name)
    return int(mo.group(1)) if mo else None


def place_accumulator_brams(netlist: dict, first_x: int = ACC_FIRST_X,
                            rows: tuple[int, ...] = ACC_ROWS, step: int = 2) -> int:
    """Set ``BEL`` on the accumulator banks' DP16KD cells of every module of ``netlist`` (Yosys
    JSON, modified in place); returns how many were given a site. A bank's blocks are taken
    in the order of their cell names (Yosys names them by bit slice)."""
    placed = 0
    for module in netlist["modules"].values():
        banks: dict[int, list[str]] = {}
        for name, cell in module.get("cells", {}).items():
            if cell["type"] == "DP16KD" and (b := _bank_of(name)) is not None:
                banks.setdefault(b, []).append(name)
        if not banks:
            continue
        order = sorted(banks)
        blocks = max(len(v) for v in banks.values())
        sites = accumulator_bram_sites(len(order), blocks, first_x, rows, step)
        for b_index, b in enumerate(order):
            for k, name in enumerate(sorted(banks[b], key=_natural)):
                module["cells"][name].setdefault("attributes", {})["BEL"] = sites[(b_index, k)]
                placed += 1
    return placed


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
