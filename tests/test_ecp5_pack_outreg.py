"""scripts/ecp5_pack_outreg.py on small hand-built Yosys JSON netlists: which block-RAM read
ports take their output register, and that the rewiring keeps every output's timing (the
flip-flop after the RAM, or after its bypass LUT, becomes the RAM's register)."""

from __future__ import annotations

import copy

import pytest

from scripts.ecp5_pack_outreg import pack_output_registers

CLK, D0, D1, SEL, BYP, LUT_Z, Q0, Q1, EN = 2, 10, 11, 12, 13, 14, 20, 21, 30
PLAIN = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET",
         "SRMODE": "LSR_OVER_CE"}
FF_DIRS = {"CLK": "input", "DI": "input", "LSR": "input", "CE": "input", "Q": "output"}


def ff(di: int, q: int, **params) -> dict:
    return {"type": "TRELLIS_FF", "parameters": {**PLAIN, **params}, "port_directions": FF_DIRS,
            "connections": {"CLK": [CLK], "DI": [di], "Q": [q]}}


def ram(width_b: int = 18) -> dict:
    return {
        "type": "DP16KD",
        "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG",
                       "DATA_WIDTH_A": format(18, "032b"), "DATA_WIDTH_B": format(width_b, "032b")},
        "port_directions": {"CLKA": "input", "CLKB": "input", "OCEA": "input", "OCEB": "input",
                            "DOA0": "output", "DOB0": "output", "DOB1": "output"},
        "connections": {"CLKA": [CLK], "CLKB": [CLK], "OCEA": ["1"], "OCEB": ["1"],
                        "DOB0": [D0], "DOB1": [D1]},
    }


def netlist(cells: dict, outputs=(Q0, Q1)) -> dict:
    return {"modules": {"top": {
        "ports": {"q": {"direction": "output", "bits": list(outputs)},
                  "clk": {"direction": "input", "bits": [CLK]}},
        "cells": cells, "netnames": {}}}}


def test_flip_flops_after_the_ram_become_its_output_register():
    n = netlist({"ram": ram(), "ff0": ff(D0, Q0), "ff1": ff(D1, Q1)})
    counts = pack_output_registers(n)
    cells = n["modules"]["top"]["cells"]
    assert counts["ports"] == 1 and counts["flip_flops"] == 2
    assert set(cells) == {"ram"}
    assert cells["ram"]["parameters"]["REGMODE_B"] == "OUTREG"
    assert cells["ram"]["parameters"]["REGMODE_A"] == "NOREG"
    assert cells["ram"]["connections"]["DOB0"] == [Q0]
    assert cells["ram"]["connections"]["DOB1"] == [Q1]


def test_register_moves_back_across_the_bypass_lut():
    lut = {"type": "LUT4", "parameters": {"INIT": "1111001111000000"},
           "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                               "Z": "output"},
           "connections": {"A": ["0"], "B": [SEL], "C": [BYP], "D": [D0], "Z": [LUT_Z]}}
    n = netlist({"ram": ram(), "lut": lut, "ff0": ff(LUT_Z, Q0), "ff1": ff(D1, Q1)})
    counts = pack_output_registers(n)
    cells = n["modules"]["top"]["cells"]
    assert counts == {"ports": 1, "flip_flops": 2, "retimed_luts": 1, "added_flip_flops": 2,
                      "ports_left": 0, "split_flip_flops": 0, "replicated_flip_flops": 0}
    # the LUT now reads the RAM's registered output and delayed copies of its other inputs,
    # and drives the net the removed flip-flop drove
    assert cells["lut"]["connections"]["D"] == [D0]
    assert cells["lut"]["connections"]["Z"] == [Q0]
    delayed = {c["connections"]["DI"][0]: c["connections"]["Q"][0]
               for name, c in cells.items() if name.startswith("$outreg_retime$")}
    assert set(delayed) == {SEL, BYP}
    assert cells["lut"]["connections"]["B"] == [delayed[SEL]]
    assert cells["lut"]["connections"]["C"] == [delayed[BYP]]
    assert cells["lut"]["connections"]["A"] == ["0"]


def bypass_lut(data: int, z: int) -> dict:
    return {"type": "LUT4", "parameters": {"INIT": "1111001111000000"},
            "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                "Z": "output"},
            "connections": {"A": ["0"], "B": [SEL], "C": [BYP], "D": [data], "Z": [z]}}


def test_each_block_ram_gets_its_own_delayed_copy_of_a_shared_input():
    # two RAMs, both read ports through bypass LUTs on the same select and bypass nets: the
    # delayed copies are per RAM (each can sit by its RAM), shared by the LUTs of one RAM
    r2 = ram()
    r2["connections"]["DOB0"], r2["connections"]["DOB1"] = [40], [41]
    cells = {"ram": ram(), "ram2": r2,
             "lut0": bypass_lut(D0, 50), "lut1": bypass_lut(D1, 51),
             "lut2": bypass_lut(40, 52), "lut3": bypass_lut(41, 53),
             "ff0": ff(50, Q0), "ff1": ff(51, Q1), "ff2": ff(52, 60), "ff3": ff(53, 61)}
    n = netlist(cells, outputs=(Q0, Q1, 60, 61))
    counts = pack_output_registers(n)
    cells = n["modules"]["top"]["cells"]
    assert counts["ports"] == 2 and counts["retimed_luts"] == 4
    assert counts["added_flip_flops"] == 4  # SEL and BYP, once per RAM
    copies = {name: c for name, c in cells.items() if name.startswith("$outreg_retime$")}
    assert sorted(c["connections"]["DI"][0] for c in copies.values()) == [SEL, SEL, BYP, BYP]
    for a, b in (("lut0", "lut1"), ("lut2", "lut3")):
        assert cells[a]["connections"]["B"] == cells[b]["connections"]["B"]
    assert cells["lut0"]["connections"]["B"] != cells["lut2"]["connections"]["B"]
    assert cells["lut0"]["connections"]["C"] != cells["lut2"]["connections"]["C"]


@pytest.mark.parametrize("change", ["enable", "reset", "second_load", "other_clock"])
def test_ports_that_are_not_plain_registers_are_left(change):
    cells = {"ram": ram(), "ff0": ff(D0, Q0), "ff1": ff(D1, Q1)}
    if change == "enable":
        cells["ff0"]["parameters"]["CEMUX"] = "CE"
        cells["ff0"]["connections"]["CE"] = [EN]
    elif change == "reset":
        cells["ff0"]["connections"]["LSR"] = [EN]
    elif change == "second_load":
        cells["ff2"] = ff(D0, 40)
    else:
        cells["ff1"]["connections"]["CLK"] = [3]
    n = netlist(cells)
    before = copy.deepcopy(n)
    counts = pack_output_registers(n)
    assert counts["ports"] == 0 and counts["ports_left"] == 1
    assert n == before


def test_pseudo_dual_port_36_bit_sets_both_register_modes():
    r = ram(width_b=36)
    r["connections"]["DOA0"] = [D1]
    del r["connections"]["DOB1"]
    n = netlist({"ram": r, "ff0": ff(D0, Q0), "ff1": ff(D1, Q1)})
    counts = pack_output_registers(n)
    params = n["modules"]["top"]["cells"]["ram"]["parameters"]
    assert counts["ports"] == 1
    assert params["REGMODE_A"] == params["REGMODE_B"] == "OUTREG"


def write_ram(name_bits: dict[str, int]) -> dict:
    """A DP16KD with only write-side pins: ``{pin: net}``."""
    return {
        "type": "DP16KD",
        "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
        "port_directions": {"CLKA": "input", **{pin: "input" for pin in name_bits}},
        "connections": {"CLKA": [CLK], **{pin: [net] for pin, net in name_bits.items()}},
    }


@pytest.mark.parametrize("other_load", [False, True])
def test_flip_flop_feeding_several_rams_is_split_per_ram(other_load):
    # ff0 drives the write data of three RAMs (twice on one of them) and the write enable of
    # one; ff1 drives a single RAM and stays as it is
    cells = {
        "wd": ff(D0, Q0, CEMUX="CE"),
        "we": ff(D1, Q1),
        "ram_a": write_ram({"DIA0": Q0, "DIA1": Q0, "WEA": Q1}),
        "ram_b": write_ram({"DIA0": Q0}),
        "ram_c": write_ram({"DIA3": Q0}),
    }
    cells["wd"]["connections"]["CE"] = [EN]
    if other_load:
        cells["lut"] = {"type": "LUT4", "parameters": {}, "port_directions": {"A": "input",
                        "Z": "output"}, "connections": {"A": [Q0], "Z": [40]}}
    n = netlist(cells, outputs=())
    counts = pack_output_registers(n)
    cells = n["modules"]["top"]["cells"]
    copies = {name: c for name, c in cells.items() if name.startswith("$ram_input_copy$")}
    assert counts["split_flip_flops"] == 1
    assert len(copies) == 3
    assert counts["replicated_flip_flops"] == (3 if other_load else 2)
    assert ("wd" in cells) == other_load
    if other_load:
        assert cells["lut"]["connections"]["A"] == [Q0]
    # every copy is the original flip-flop (clock, data, enable, parameters) with its own output,
    # and each RAM's pins read exactly one copy
    q_of = {}
    for name, c in copies.items():
        assert c["type"] == "TRELLIS_FF" and c["parameters"]["CEMUX"] == "CE"
        assert {k: v for k, v in c["connections"].items() if k != "Q"} == {
            "CLK": [CLK], "DI": [D0], "CE": [EN]}
        q_of[name.rsplit("$", 1)[1]] = c["connections"]["Q"]
    assert cells["ram_a"]["connections"]["DIA0"] == cells["ram_a"]["connections"]["DIA1"] \
        == q_of["ram_a"]
    assert cells["ram_b"]["connections"]["DIA0"] == q_of["ram_b"]
    assert cells["ram_c"]["connections"]["DIA3"] == q_of["ram_c"]
    assert len({tuple(q) for q in q_of.values()} | {(Q0,)}) == 4
    assert cells["ram_a"]["connections"]["WEA"] == [Q1] and "we" in cells


def test_flip_flop_feeding_one_ram_is_left():
    n = netlist({"wd": ff(D0, Q0), "ram_a": write_ram({"DIA0": Q0, "DIA1": Q0})}, outputs=())
    before = copy.deepcopy(n)
    counts = pack_output_registers(n)
    assert counts["split_flip_flops"] == 0
    assert n == before
