"""Profile-guided builds of sim.verilator.build_library, on the small stand-in top level of
tests/data/axi_misbehaving_master.v (tiny's ports) with the real harness: a training run that
works gives a profiled library, one that fails gives a plain library and a note naming why, and
every flag, the compiler and the training's identity are in the build's key."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

import sim.rtl_harness as rh
from hw.config import preset
from sim import verilator as glue
from sim.verilator import ProfileTraining, build_library

pytestmark = pytest.mark.rtl

FAKE = rh.Path(__file__).with_name("data") / "axi_misbehaving_master.v"
#: Drives the stand-in through legal traffic (a write, a read past the DRAM: SLVERR).
TRAINER = textwrap.dedent("""
    import sys
    from hw.config import preset
    from sim.rtl_harness import VerilatorTransport
    with VerilatorTransport(preset("tiny"), mem_size=0x10000, latency=(4, 2),
                            library=sys.argv[1]) as t:
        t.write32(0, 9)
        t.step(50)
        t.write32(0, 8)
        t.step(50)
        assert t.read32(0) == 2, "expected SLVERR"
    print("trained")
""")


def _build(training):
    return build_library(sources=[FAKE], toplevel="nmx_accelerator", name="pgo_stand_in",
                         cpp_sources=rh.HARNESS_SOURCES, training=training)


def _check_library(lib) -> None:
    with rh.VerilatorTransport(preset("tiny"), mem_size=0x10000, latency=(4, 2),
                               library=lib) as t:
        t.write32(0, 8)
        t.step(50)
        assert t.read32(0) == 2


@pytest.fixture
def builds(tmp_path, monkeypatch):
    monkeypatch.setattr(glue, "BUILD_ROOT", tmp_path / "builds")
    monkeypatch.setenv(glue.PGO_ENV, "1")
    return tmp_path / "builds"


def test_a_training_run_gives_a_profiled_library(builds, capsys):
    training = ProfileTraining("stand-in v1", (sys.executable, "-c", TRAINER, "{library}"))
    lib = _build(training)
    obj = lib.parent / "obj"
    assert sorted(obj.glob("*.gcda")), "the training run left no profile"
    assert json.loads((lib.parent / glue._PGO_MARKER).read_text())["skipped"] is None
    log = (lib.parent / glue._BUILD_LOG).read_text()
    assert "-fprofile-generate" in log and "-fprofile-use" in log and "trained" in log
    assert not list(lib.parent.glob("*_instrumented.so"))
    spec = json.loads((lib.parent / glue._MARKER).read_text())
    assert spec["pgo"]["identity"] == "stand-in v1"
    assert spec["opt"] == {"fast": glue.LIBRARY_OPT_FAST, "slow": glue.LIBRARY_OPT_SLOW,
                           "global": glue.LIBRARY_OPT_GLOBAL}
    assert spec["compiler"] and spec["args"][:len(glue.LIBRARY_VERILATOR_ARGS)] == list(
        glue.LIBRARY_VERILATOR_ARGS)
    _check_library(lib)
    assert "without profile-guided" not in capsys.readouterr().err
    assert _build(training) == lib  # cached

    # Another training program, or none (NMX_PGO=0), is another build.
    other = _build(ProfileTraining("stand-in v2", training.command))
    assert other.parent != lib.parent


def test_no_training_and_pgo_off_build_the_same_plain_library(builds, monkeypatch):
    plain = _build(None)
    assert not list((plain.parent / "obj").glob("*.gcda"))
    assert not (plain.parent / glue._PGO_MARKER).exists()
    training = ProfileTraining("stand-in v1", (sys.executable, "-c", TRAINER, "{library}"))
    for off in ("0", "off", " False "):
        monkeypatch.setenv(glue.PGO_ENV, off)
        assert _build(training) == plain


@pytest.mark.parametrize("value", ["", "1", "on", "YES"])
def test_pgo_is_on_unless_turned_off(monkeypatch, value):
    monkeypatch.setenv(glue.PGO_ENV, value)
    assert glue.pgo_enabled()
    monkeypatch.delenv(glue.PGO_ENV)
    assert glue.pgo_enabled()


def test_a_bad_nmx_pgo_value_is_an_error(monkeypatch):
    monkeypatch.setenv(glue.PGO_ENV, "maybe")
    with pytest.raises(glue.NmxError, match="NMX_PGO='maybe'"):
        glue.pgo_enabled()


def test_a_failing_training_run_falls_back_with_a_note(builds, capsys):
    training = ProfileTraining("stand-in broken",
                               (sys.executable, "-c", "raise SystemExit(3)", "{library}"))
    lib = _build(training)
    err = capsys.readouterr().err
    assert "without profile-guided optimisation: the training run" in err
    assert "exited with status 3" in err
    assert not list((lib.parent / "obj").glob("*.gcda"))
    assert json.loads((lib.parent / glue._PGO_MARKER).read_text())["skipped"]
    _check_library(lib)
    assert _build(training) == lib  # reused, and the note repeats
    assert "without profile-guided optimisation" in capsys.readouterr().err


def test_every_compiler_flag_is_in_the_key(builds, monkeypatch):
    plain = _build(None)
    log = (plain.parent / glue._BUILD_LOG).read_text()
    assert f"-I{plain.parent / 'src'}" in log
    monkeypatch.setattr(glue, "LIBRARY_CFLAGS", (*glue.LIBRARY_CFLAGS, "-DNMX_KEY_PROBE=1"))
    probed = _build(None)
    assert probed.parent != plain.parent
    assert "-DNMX_KEY_PROBE=1" in (probed.parent / glue._BUILD_LOG).read_text()
    _check_library(probed)
    monkeypatch.setattr(glue, "LIBRARY_LDFLAGS", (*glue.LIBRARY_LDFLAGS, "-Wl,-O1"))
    assert _build(None).parent not in (plain.parent, probed.parent)
    monkeypatch.setenv("CXXFLAGS", "-DNMX_KEY_PROBE=2")
    spec = json.loads((_build(None).parent / glue._MARKER).read_text())
    assert spec["make"]["env"] == {"CXXFLAGS": "-DNMX_KEY_PROBE=2"}
