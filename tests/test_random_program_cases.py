"""Regression cases of tb/random_programs.py's generator (cases it once failed to build)."""

from hw.config import preset
from hw.isa import Epi
from tb.random_programs import make_case


def test_epi_partial_overlap_near_row_zero_overlaps_above():
    """tiny:4:3619 moves an EPI at accumulator row 0 by 6 rows: below row 0 the ``dst`` field
    cannot be encoded (the sweep stopped with IsaError there), so the overlap goes above."""
    case = make_case(preset("tiny"), "tiny", 4, 3619)
    assert case.kind == "epi partial overlap"
    moved = [e for e in case.prog if isinstance(e, Epi) and e.src == 0]
    assert moved and all(0 < e.dst < e.m * e.n_tiles for e in moved)
