"""Verilog generation (hw.rtl), ``nmx rtl`` and lint of the generated Verilog (sim.lint)."""

import json
import os
import subprocess
import sys

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import PRESETS, AcceleratorConfig, preset
from hw.rtl import TOP_MODULE, TOPS, top_component, verilog_text, write_if_changed, write_rtl
from nmx.cli import main as nmx_main
from nmx.commands.rtl import load_config


class Adder(wiring.Component):
    a: In(8)
    b: In(8)
    s: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.s.eq(self.a + self.b)
        return m


def test_verilog_text_is_deterministic_and_has_no_source_locations():
    first = verilog_text(Adder(), "adder")
    assert first == verilog_text(Adder(), "adder")
    assert "module adder(" in first
    assert "src =" not in first
    assert os.environ["AMARANTH_USE_YOSYS"]


def test_write_if_changed_keeps_mtime(tmp_path):
    path = tmp_path / "f.txt"
    assert write_if_changed(path, b"one")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not write_if_changed(path, b"one")
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert write_if_changed(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_write_rtl_is_byte_identical_and_named_by_fingerprint(tmp_path):
    config = preset("tiny")
    path = write_rtl(config, tmp_path)
    assert path == tmp_path / f"nmx_accelerator_{config.rows}x{config.cols}_{config.fingerprint}.v"
    text = path.read_bytes()
    assert f"module {TOP_MODULE}(".encode() in text
    sidecar = path.with_suffix(".json")
    stamps = {p: p.stat().st_mtime_ns for p in (path, sidecar)}
    for p in stamps:
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    assert write_rtl(config, tmp_path) == path
    assert path.read_bytes() == text
    assert path.stat().st_mtime_ns == sidecar.stat().st_mtime_ns == 1_000_000_000
    # A fresh interpreter (different hash seed, fresh Amaranth name counters) agrees.
    other = tmp_path / "other"
    code = "import sys; from hw.config import preset; from hw.rtl import write_rtl; "
    code += "print(write_rtl(preset('tiny'), sys.argv[1]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, env=env)
    assert (other / path.name).read_bytes() == text


def test_array_top_is_available_and_unknown_tops_are_refused(tmp_path):
    config = preset("tiny")
    path = write_rtl(config, tmp_path, "array")
    assert path.name == f"systolic_array_{config.rows}x{config.cols}_{config.fingerprint}.v"
    assert b"module systolic_array(" in path.read_bytes()
    assert json.loads(path.with_suffix(".json").read_text())["module"] == TOPS["array"]
    with pytest.raises(ValueError, match="unknown top 'cpu'; known: accelerator, array"):
        top_component(config, "cpu")
    assert nmx_main(["rtl", "--config", "tiny", "--top", "array", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_emits_the_accelerator_lint_clean(tmp_path, name):
    from sim.lint import lint_file

    path = write_rtl(preset(name), tmp_path)
    assert f"module {TOP_MODULE}(".encode() in path.read_bytes()
    result = lint_file(path)
    assert result.clean, result.messages


def test_sidecar_holds_the_config(tmp_path):
    config = preset("tiny").replace(cols=3)
    path = write_rtl(config, tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["module"] == TOP_MODULE
    assert sidecar["verilog"] == path.name
    assert sidecar["fingerprint"] == config.fingerprint
    assert AcceleratorConfig.from_dict(sidecar["config"]) == config


def test_presets_give_different_files(tmp_path):
    tiny = write_rtl(PRESETS["tiny"], tmp_path)
    ecp5 = write_rtl(PRESETS["ecp5"], tmp_path)
    assert tiny.name != ecp5.name
    assert tiny.read_bytes() != ecp5.read_bytes()


@pytest.mark.rtl
def test_generated_verilog_lints_clean(tmp_path):
    from sim.lint import lint_file

    path = write_rtl(preset("tiny"), tmp_path)
    result = lint_file(path)
    assert result.clean, result.messages
    # The waivers are scoped to generated file names: the same text under another name is not
    # waived.
    other = tmp_path / "hand_written.v"
    other.write_bytes(path.read_bytes())
    messages = lint_file(other).messages
    assert "%Warning-WIDTHEXPAND" in messages and "%Warning-DECLFILENAME" in messages


@pytest.mark.rtl
def test_lint_reports_real_problems(tmp_path):
    from sim.lint import lint_file, main

    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input [7:0] a, output [7:0] y, output z);\nassign y=a;\nendmodule\n")
    result = lint_file(bad)
    assert not result.clean
    assert "%Warning-UNDRIVEN" in result.messages and "'z'" in result.messages
    assert main([str(tmp_path)]) == 1
    assert main([str(tmp_path / "empty_dir_that_is_missing")]) == 2


def test_lint_of_a_clean_file_passes(tmp_path, capsys):
    from sim.lint import main

    (tmp_path / "adder.v").write_text(verilog_text(Adder(), "adder"))
    assert main([str(tmp_path)]) == 0
    assert "1 of 1 files lint clean" in capsys.readouterr().out


def test_nmx_rtl_writes_and_prints_the_path(tmp_path, capsys):
    assert nmx_main(["rtl", "--config", "tiny", "--set", "cols=2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    config = preset("tiny").replace(cols=2)
    assert out == str(tmp_path / f"{config.artifact_stem(TOP_MODULE)}.v")
    # The sidecar is a valid --config file and names the same artifact.
    sidecar = tmp_path / f"{config.artifact_stem(TOP_MODULE)}.json"
    assert load_config(str(sidecar)) == config


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "rows=0"], "nmx rtl: error: config field 'rows' = 0: allowed range is 1..64"),
        (["--set", "rows=x"], "nmx rtl: error: config field 'rows': expected an integer, got 'x'"),
        (["--set", "bogus=1"], "nmx rtl: error: unknown config field 'bogus'"),
        (["--set", "rows"], "nmx rtl: error: --set 'rows': expected FIELD=VALUE"),
        (["--set", "scratchpad_rows=1000"], "'scratchpad_rows' = 1000: must be a power of two"),
    ],
)
def test_nmx_rtl_bad_config_is_one_line(tmp_path, capsys, args, expected):
    assert nmx_main(["rtl", "--config", "tiny", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err
    assert not list(tmp_path.iterdir())


def test_nmx_rtl_bad_preset_and_file(tmp_path, capsys):
    assert nmx_main(["rtl", "--config", "huge", "--out", str(tmp_path)]) == 2
    assert "unknown config preset 'huge'" in capsys.readouterr().err
    assert nmx_main(["rtl", "--config", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 4, "colz": 4}')
    assert nmx_main(["rtl", "--config", str(bad)]) == 2
    assert "colz" in capsys.readouterr().err


def test_load_config_from_json_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"rows": 2, "cols": 3}))
    assert load_config(str(path), ["cols=0x4"]) == AcceleratorConfig(rows=2, cols=4)


def test_nmx_rtl_error_has_no_traceback(tmp_path):
    nmx = os.path.join(os.path.dirname(sys.executable), "nmx")
    done = subprocess.run(
        [nmx, "rtl", "--config", "tiny", "--set", "rows=0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "nmx rtl: error: config field 'rows' = 0: allowed range is 1..64\n"


def test_nmx_rtl_unreadable_config_files_are_one_line(tmp_path, capsys):
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe{\x00")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for path, expected in ((binary, "not UTF-8 text"), (folder, "is a directory")):
        assert nmx_main(["rtl", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert expected in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_nmx_rtl_unwritable_out_is_one_line(capsys):
    assert nmx_main(["rtl", "--config", "tiny", "--out", "/dev/null/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nmx rtl: error: --out '/dev/null/x': cannot write" in err
    assert "Not a directory" in err


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"rows": 8, "config": {"rows": 2}}, "['rows']"),
        ({"config": {"rows": 2}, "fingerprint": "x", "extra": 1}, "['extra']"),
        ({"config": 4}, "'config' must be a JSON object"),
        ({"rows": 2, "colz": 4}, "colz"),
    ],
)
def test_nmx_rtl_rejects_unknown_json_keys(tmp_path, capsys, content, named):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    assert nmx_main(["rtl", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert named in err
    assert not (tmp_path / "out").exists()
