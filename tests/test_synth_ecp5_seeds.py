"""``scripts/synth_ecp5.py``'s seed runner and summary, without the FPGA tools (nextpnr faked)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import pytest

from scripts import synth_ecp5


def fake_report(fmax: float) -> dict:
    return {"fmax": {"clk": {"achieved": fmax, "constraint": 150.0}}, "critical_paths": [],
            "utilization": {"MULT18X18D": {"used": 64, "available": 156}}}


@pytest.mark.parametrize("jobs", [1, 3])
def test_seeds_run_with_the_given_router_and_niceness_and_keep_their_order(monkeypatch, jobs):
    calls, running, peak = [], [0], [0]
    lock = threading.Lock()
    together = threading.Barrier(3)  # with 3 jobs, all three seeds must be running at once

    def place_and_route(work, freq, seed, router, niceness, route, pnr_flags, netlist, tag,
                        timeout_minutes):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if jobs == 3:
            together.wait(timeout=30)
            time.sleep(0.01 * (4 - seed))  # later seeds finish first
        with lock:
            running[0] -= 1
            calls.append((work, freq, seed, router, niceness, route, pnr_flags, timeout_minutes))
        return fake_report(100.0 + seed)

    monkeypatch.setattr(synth_ecp5, "place_and_route", place_and_route)
    args = argparse.Namespace(seeds=[1, 2, 3], jobs=jobs, freq=150.0, router="router2",
                              pnr_niceness=0, no_route=False,
                              pnr_flags="--placer-heap-beta 0.7", dsp_layout=False,
                              bram_layout=False, placed=None, tag="", pnr_setting=[],
                              pnr_timeout=90.0)
    reports = synth_ecp5.place_and_route_seeds(Path("w"), args)
    assert list(reports) == [1, 2, 3]
    assert [r["fmax"]["clk"]["achieved"] for r in reports.values()] == [101.0, 102.0, 103.0]
    assert sorted(c[2] for c in calls) == [1, 2, 3]
    assert {c[3:] for c in calls} == {("router2", 0, True, ("--placer-heap-beta", "0.7"), 90.0)}
    assert peak[0] == jobs
    summary = synth_ecp5.summarise({"LUT4": 5}, reports)
    assert summary["fmax_mhz"] == 102.0
    assert summary["seeds"][3]["fmax_mhz"] == 103.0


def test_a_placed_netlist_is_routed_without_packing_or_placing_again(monkeypatch, tmp_path):
    (tmp_path / "placed_seed1.json").write_text(json.dumps(
        {"modules": {"top": {"settings": {"router": "router2", "place": "1"}, "cells": {}}}}))
    calls = []

    def place_and_route(work, freq, seed, router, niceness, route, pnr_flags, netlist, tag,
                        timeout_minutes):
        calls.append((router, route, pnr_flags, netlist, tag))
        return fake_report(50.0)

    monkeypatch.setattr(synth_ecp5, "place_and_route", place_and_route)
    args = argparse.Namespace(seeds=[1], jobs=1, freq=150.0, router="router2", pnr_niceness=5,
                              no_route=False, pnr_flags="--router2-alt-weights",
                              dsp_layout="columns", bram_layout=(40, 2),
                              placed="placed_seed1.json", tag="alt",
                              pnr_setting=["router2/bbMargin/x=8"], pnr_timeout=None)
    synth_ecp5.place_and_route_seeds(tmp_path, args)
    assert calls == [("router2", True, ("--no-pack", "--no-place", "--router2-alt-weights"),
                      "placed_seed1_alt.json", "alt")]
    # nextpnr takes the settings stored in the netlist over its command line's
    settings = json.loads((tmp_path / "placed_seed1_alt.json").read_text())["modules"]["top"][
        "settings"]
    assert settings == {"router": "router2", "place": "1", "router2/bbMargin/x": "8"}
    args.placed = "missing.json"
    with pytest.raises(synth_ecp5.NmxError, match="no placed netlist"):
        synth_ecp5.place_and_route_seeds(tmp_path, args)


def test_command_line_defaults_and_choices(monkeypatch):
    parser_args = ["--top", "array", "--seeds", "1", "2", "3", "--jobs", "3",
                   "--pnr-niceness", "0", "--router", "router1"]
    seen = {}

    def capture(config, top, args):
        seen.update(top=top, seeds=args.seeds, jobs=args.jobs, niceness=args.pnr_niceness,
                    router=args.router, no_route=args.no_route)
        raise synth_ecp5.NmxError("stop here")

    monkeypatch.setattr(synth_ecp5, "run_top", capture)
    assert synth_ecp5.main(parser_args) == 2
    assert seen == {"top": "array", "seeds": [1, 2, 3], "jobs": 3, "niceness": 0,
                    "router": "router1", "no_route": False}
    assert synth_ecp5.ROUTER == "router2" and synth_ecp5.PNR_NICENESS == 10


def test_placed_estimate_is_the_logs_last_max_frequency(tmp_path):
    log = tmp_path / "nextpnr_seed1_placed.log"
    log.write_text("Info: Max frequency for clock 'clk': 12.50 MHz (FAIL at 150.00 MHz)\n"
                   "Info: Running simulated annealing placer for refinement.\n"
                   "Info: Max frequency for clock 'clk': 32.25 MHz (FAIL at 150.00 MHz)\n")
    assert synth_ecp5.placed_estimate(log) == {"clk": {"achieved": 32.25, "constraint": 150.0}}
    log.write_text("Info: Program finished normally.\n")
    with pytest.raises(synth_ecp5.NmxError, match="no placed timing estimate"):
        synth_ecp5.placed_estimate(log)


def test_synthesis_is_reused_only_for_the_same_verilog_and_options(monkeypatch, tmp_path):
    runs = []

    def synthesise(verilog, work, flags, top):
        runs.append(flags)
        (work / "synth.json").write_text("{}")
        return {"LUT4": 7}

    monkeypatch.setattr(synth_ecp5, "synthesise", synthesise)
    verilog = tmp_path / "top.v"
    verilog.write_text("module top; endmodule\n")
    first = synth_ecp5.synthesise_cached(verilog, tmp_path, "", "top", pack_outreg=False)
    again = synth_ecp5.synthesise_cached(verilog, tmp_path, "", "top", pack_outreg=False)
    assert first[2] is False and again[2] is True and again[0] == {"LUT4": 7}
    synth_ecp5.synthesise_cached(verilog, tmp_path, "-noabc9", "top", pack_outreg=False)
    verilog.write_text("module top; wire w; endmodule\n")
    synth_ecp5.synthesise_cached(verilog, tmp_path, "-noabc9", "top", pack_outreg=False)
    assert runs == ["", "-noabc9", "-noabc9"]


@pytest.mark.parametrize(("given", "parsed"), [([], None), (["--bram-layout"], (40, 2)),
                                               (["--bram-layout", "13,4"], (13, 4)),
                                               (["--bram-layout", "4,6,46,82"], (4, 6, 46, 82))])
def test_bram_layout_takes_a_first_column_and_a_step(monkeypatch, given, parsed):
    seen = {}

    def capture(config, top, args):
        seen["bram_layout"] = args.bram_layout
        raise synth_ecp5.NmxError("stop here")

    monkeypatch.setattr(synth_ecp5, "run_top", capture)
    assert synth_ecp5.main(["--top", "accelerator", *given]) == 2
    assert seen == {"bram_layout": parsed}


@pytest.mark.parametrize("bad", ["13", "13,4,2", "x,4", "13,0", "-1,4", "13,4,70,81",
                                 "13,4,70,82,22"])
def test_bram_layout_rejects_anything_but_a_column_a_step_and_two_rows(capsys, bad):
    with pytest.raises(SystemExit) as exc:
        synth_ecp5.main(["--top", "accelerator", f"--bram-layout={bad}"])
    assert exc.value.code == 2
    assert "expected X,STEP" in capsys.readouterr().err


def test_a_run_past_its_timeout_is_stopped_with_an_error_naming_it_and_its_log(tmp_path):
    log = tmp_path / "nextpnr_seed1.log"
    started = time.monotonic()
    with pytest.raises(synth_ecp5.NmxError, match=r"sleep did not finish in 0.005 minutes"):
        synth_ecp5._run(["sleep", "30"], log, timeout_minutes=0.005)
    assert time.monotonic() - started < 10
    synth_ecp5._run(["true"], log, timeout_minutes=0.5)  # a run inside its limit is untouched


@pytest.mark.parametrize("bad", ["0", "-5", "soon"])
def test_pnr_timeout_rejects_anything_but_positive_minutes(capsys, bad):
    with pytest.raises(SystemExit) as exc:
        synth_ecp5.main(["--top", "accelerator", f"--pnr-timeout={bad}"])
    assert exc.value.code == 2
    assert "expected a number of minutes above 0" in capsys.readouterr().err
