"""Accumulator placement: a tile slot never straddles the accumulator's two halves (the RTL's
``ACC_BANKS`` banks), and consecutive tiles use different halves, so a tile's EPI reads one half
while the next tile's GEMMs accumulate into the other. The short-lived staging area (row scales,
transposed operands) lies between the two slots."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from compiler.backend import compile
from compiler.backend.allocation import OnChip
from compiler.convert import convert
from compiler.graph import Permute, TensorRef
from compiler.ir import GemmPass, IntGraph, Operand
from compiler.zoo import load
from hw.accumulator import ACC_BANKS
from hw.config import preset, preset_names
from hw.isa import Epi, EpiDest, Gemm, Load, MemSpace, Program, Store
from tests.test_backend_gemm import _check, _node


def _half(config, row: int) -> int:
    return row // (config.accumulator_rows // ACC_BANKS)


def acc_ranges(program: Program) -> list[tuple[int, int, str]]:
    """Every accumulator row range ``[first, end)`` an instruction reads or writes."""
    out = []
    for pc, ins in enumerate(program.instructions):
        if isinstance(ins, Gemm):
            out.append((ins.acc, ins.acc + ins.n_tiles * ins.m, f"{pc}: {ins}"))
        elif isinstance(ins, Epi):
            out.append((ins.src, ins.src + ins.n_tiles * ins.m, f"{pc}: {ins}"))
            if ins.dest == EpiDest.ACC:
                out.append((ins.dst, ins.dst + ins.n_tiles * ins.m, f"{pc}: {ins}"))
        elif isinstance(ins, Load) and ins.mem == MemSpace.ACC:
            out.append((ins.dst, ins.dst + ins.outer * ins.inner, f"{pc}: {ins}"))
        elif isinstance(ins, Store) and ins.mem == MemSpace.ACC:
            out.append((ins.src, ins.src + ins.tiles * ins.rows, f"{pc}: {ins}"))
    return out


def slot_halves(config, program: Program) -> set[int]:
    """Check that every accumulator access lies inside one tile slot or inside the staging area
    and that no tile-slot access straddles the halves; return the halves of the slots used."""
    chip = OnChip(config)
    slots = [(b, b + chip.acc_slot) for b in chip.acc_bases]
    stage = (chip.rs_acc_base, chip.rs_acc_base + chip.rs_acc)
    halves = set()
    for first, end, what in acc_ranges(program):
        inside = [r for r in [*slots, stage] if r[0] <= first and end <= r[1]]
        assert inside, f"accumulator rows {first}..{end - 1} are not inside one slot or the " \
                       f"staging area: {what}"
        if inside[0] != stage:
            h = _half(config, first)
            assert _half(config, end - 1) == h, f"accumulator rows {first}..{end - 1} straddle " \
                                                f"the halves of {config.accumulator_rows}: {what}"
            halves.add(h)
    return halves


@pytest.mark.parametrize("cfgname", preset_names())
def test_slots_lie_in_their_own_half(cfgname):
    cfg = preset(cfgname)
    chip = OnChip(cfg)
    assert ACC_BANKS == 2 and len(chip.acc_bases) == 2
    for h, base in enumerate(chip.acc_bases):
        assert chip.acc_slot >= 1
        assert _half(cfg, base) == _half(cfg, base + chip.acc_slot - 1) == h, (cfgname, base)
    regions = sorted([(b, b + chip.acc_slot) for b in chip.acc_bases]
                     + [(chip.rs_acc_base, chip.rs_acc_base + chip.rs_acc)])
    assert chip.rs_acc >= 1
    assert all(a[1] <= b[0] for a, b in zip(regions, regions[1:], strict=False)), regions
    assert regions[-1][1] <= cfg.accumulator_rows


@functools.cache
def _mlp():
    zm = load("mlp")
    return convert(zm.model, zm.example_inputs, zm.calibration)


@pytest.mark.parametrize("cfgname", ["tiny", "default"])
def test_compiled_mlp_alternates_halves(cfgname):
    cfg = preset(cfgname)
    bundle = compile(_mlp(), cfg, batch=8, name="mlp")
    assert slot_halves(cfg, bundle.program) == {0, 1}


@pytest.mark.parametrize("cfgname", ["tiny", "default"])
def test_row_scaled_tiles_and_transposes_stay_in_their_slots(cfgname):
    """Row scales and transposed operands go through the staging rows; several row tiles."""
    cfg = preset(cfgname)
    rng = np.random.default_rng(5)
    m, k, n = 3 * OnChip(cfg).rs_acc + 5, cfg.rows + 3, 2 * cfg.cols + 1
    x = rng.integers(-128, 128, (1, m, k))
    yt = rng.integers(-128, 128, (1, n, k))
    ones = np.ones((k, 1), dtype=np.int64)
    rs = _node("r", (m, 1), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                      Operand(const=ones, const_name="ones"))],
               n=1, rng=rng, out_bits=16, bias=False)
    y = _node("y", (m, n), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                     Operand(ref=TensorRef("yt", (n, k), (Permute((1, 0)),))))],
              n=n, rng=rng, row_scale=TensorRef("r", (m, 1)), shift_max=30)
    ir = IntGraph([rs, y], {"x": 1.0, "yt": 1.0}, {"x": 1.0, "r": 1.0, "y": 1.0, "yt": 1.0},
                  {"x": 8, "r": 16, "y": 8, "yt": 8}, [TensorRef("y", (m, n))])
    bundle = _check(ir, {"x": x, "yt": yt}, cfg, 1)
    assert any(isinstance(i, Epi) and i.dest == EpiDest.SCALE for i in bundle.program.instructions)
    assert any(isinstance(i, Gemm) and i.transpose for i in bundle.program.instructions)
    assert slot_halves(cfg, bundle.program) == {0, 1}
