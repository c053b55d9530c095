"""User files of the ``nmx`` commands: every read or write failure is one line on stderr, exit 2.

Runs as root too (the project's machines do), so "unwritable" means a path under a regular file
(``/dev/null/x``), an existing folder, or a missing parent folder, not a permission bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import nmx.commands.convert
from hw.config import preset
from hw.errors import NmxError
from hw.isa import Halt, Program
from nmx import files
from nmx.cli import main
from sim.dram_image import DramImage

CFG = preset("default")


def _unwritable(tmp_path):
    """(path, expected words in the message) for paths no user can write a file at."""
    return [
        ("/dev/null/x.json", "Not a directory: '/dev/null'"),
        (str(tmp_path), "it is a directory, not a file"),
        (str(tmp_path / "no" / "x.json"), f"folder {str(tmp_path / 'no')!r} does not exist"),
    ]


def _one_line_error(capsys, argv, *expected):
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert err.startswith(f"nmx {argv[0]}: error: "), err
    for words in expected:
        assert words in err, (argv, err)
    return captured.out


@pytest.fixture
def no_conversion(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the --json path must be checked before converting")

    monkeypatch.setattr(nmx.commands.convert, "measure", refuse)


@pytest.mark.parametrize("index", range(3))
def test_convert_json_unwritable_fails_before_converting(tmp_path, capsys, no_conversion, index):
    path, reason = _unwritable(tmp_path)[index]
    _one_line_error(capsys, ["convert", "--model", "mlp", "--json", path],
                    f"--json {path!r}: cannot write", reason)


@pytest.mark.parametrize("index", range(3))
def test_pwl_json_and_png_unwritable(tmp_path, capsys, index):
    path, reason = _unwritable(tmp_path)[index]
    if "does not exist" in reason:  # nmx pwl creates missing folders
        blocker = tmp_path / "file"
        blocker.write_text("")
        path, reason = str(blocker / "x.json"), f"Not a directory: {str(blocker)!r}"
    out = _one_line_error(capsys, ["pwl", "tanh", "--segments", "4", "--grid", "256",
                                   "--no-png", "--json", path],
                          f"--json {path!r}: cannot write", reason)
    assert out == ""  # nothing fitted or printed before the error
    _one_line_error(capsys, ["pwl", "tanh", "--segments", "4", "--grid", "256", "--png", path],
                    f"--png {path!r}: cannot write", reason)


def test_pwl_creates_missing_folders(tmp_path, capsys):
    js = tmp_path / "a" / "b" / "fit.json"
    assert main(["pwl", "tanh", "--segments", "4", "--grid", "256", "--no-png", "--json",
                 str(js)]) == 0
    assert json.loads(js.read_text())["name"] == "tanh"
    assert f"json: {js}" in capsys.readouterr().out


def test_asm_and_disasm_files(tmp_path, capsys):
    src = tmp_path / "p.nmasm"
    src.write_text("halt\n")
    for path, reason in _unwritable(tmp_path):
        _one_line_error(capsys, ["asm", str(src), "-o", path], f"-o {path!r}: cannot write",
                        reason)
    good = tmp_path / "p.bin"
    good.write_bytes(Program([Halt()]).to_bytes(CFG))
    for path, reason in _unwritable(tmp_path):
        _one_line_error(capsys, ["disasm", str(good), "-o", path], f"-o {path!r}: cannot write",
                        reason)
    missing = str(tmp_path / "missing.bin")
    _one_line_error(capsys, ["disasm", missing], f"program {missing!r}: cannot read: not found")
    _one_line_error(capsys, ["disasm", str(tmp_path)],
                    f"program {str(tmp_path)!r}: cannot read: it is a directory")
    _one_line_error(capsys, ["disasm", "/dev/null/x"],
                    "program '/dev/null/x': cannot read: Not a directory: '/dev/null'")


def test_run_golden_missing_inputs(tmp_path, capsys):
    program = tmp_path / "p.bin"
    program.write_bytes(Program([Halt()]).to_bytes(CFG))
    dram = tmp_path / "d.dram"
    img = DramImage.zeros(16, CFG)
    img.add("r", 0, np.zeros(16, np.uint8))
    img.save(dram)
    missing = str(tmp_path / "none.bin")
    _one_line_error(capsys, ["run-golden", missing, "--dram", str(dram)],
                    f"program {missing!r}: cannot read: not found")
    base = ["run-golden", str(program), "--dram", str(dram)]
    npy = str(tmp_path / "none.npy")
    _one_line_error(capsys, [*base, "--expect", f"r={npy}"],
                    f"--expect 'r={npy}': file {npy!r}: cannot read: not found")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    _one_line_error(capsys, [*base, "--expect", f"r={empty}"], "is not a NumPy .npy/.npz file")
    bad_zip = tmp_path / "bad.npz"
    bad_zip.write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(capsys, [*base, "--expect", f"r={bad_zip}:k"], "is not a NumPy .npy/.npz")
    good = tmp_path / "r.npz"
    np.savez(good, k=np.zeros(16, np.uint8))
    assert main([*base, "--expect", f"r={good}:k"]) == 0
    assert f"r matches {good}:k (16 values)" in capsys.readouterr().out


def test_rtl_config_file_and_out(tmp_path, capsys):
    missing = str(tmp_path / "none.json")
    _one_line_error(capsys, ["rtl", "--config", missing],
                    f"config file {missing!r}: cannot read: not found")
    _one_line_error(capsys, ["rtl", "--config", "tiny", "--out", "/dev/null/x"],
                    "--out '/dev/null/x': cannot write", "Not a directory: '/dev/null'")


def test_read_text_rejects_non_utf8_with_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\ntwo \xff\n")
    with pytest.raises(NmxError, match=r"^thing '.*t\.txt': not UTF-8 text \(line 2, byte 8\)$"):
        files.read_text(path, "thing")
    path.write_text("caf\u00e9\n", encoding="utf-8")
    assert files.read_text(path, "thing") == "caf\u00e9\n"


def test_check_writable_leaves_no_trace(tmp_path):
    new = tmp_path / "new.json"
    files.check_writable(new, "--json")
    assert not new.exists()
    old = tmp_path / "old.json"
    old.write_text("keep")
    files.check_writable(old, "--json")
    assert old.read_text() == "keep"
    deep = tmp_path / "a" / "b.json"
    with pytest.raises(NmxError, match="does not exist"):
        files.check_writable(deep, "--json")
    files.check_writable(deep, "--json", parents=True)
    assert deep.parent.is_dir() and not deep.exists()


def test_write_json_does_not_touch_the_file_on_unserialisable_data(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        files.write_json(path, {"x": object()}, "--json")
    assert path.read_text() == "old"
    files.write_json(path, {"x": [1, 2]}, "--json")
    assert json.loads(path.read_text()) == {"x": [1, 2]}
