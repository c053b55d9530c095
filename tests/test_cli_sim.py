"""``nmx sim`` chooses its config like ``nmx rtl`` (preset, JSON file, --set); no Verilator here."""

from __future__ import annotations

import json

import pytest

import sim.array_demo
from hw.config import AcceleratorConfig, preset
from nmx.cli import build_parser, main
from nmx.commands.sim import request_from_args


def _request(*argv: str):
    argv = ["sim", "--demo", "array", *argv]
    return request_from_args(build_parser(argv).parse_args(argv))


@pytest.fixture
def no_verilator(monkeypatch):
    """Replace the Verilated run by a recorder that stops ``nmx sim`` right after choosing."""
    calls = []

    class Stop(Exception):
        pass

    def record(config, **kwargs):
        calls.append((config, kwargs))
        raise Stop

    monkeypatch.setattr(sim.array_demo, "run_array_demo", record)
    return calls, Stop


def test_default_is_the_default_preset_with_demo_sizes():
    req = _request()
    cfg = preset("default")
    assert req.config == cfg
    assert (req.m, req.k, req.n) == (4 * cfg.rows, 6 * cfg.rows, 3 * cfg.cols)


def test_preset_with_overrides_and_sizes():
    req = _request("--config", "tiny", "--set", "rows=8", "--set", "cols=0x2", "--m", "5")
    assert req.config == preset("tiny").replace(rows=8, cols=2)
    assert (req.m, req.k, req.n) == (5, 48, 6)


@pytest.mark.parametrize("sidecar", [False, True])
def test_json_config_file_and_sidecar(tmp_path, sidecar):
    cfg = AcceleratorConfig(rows=2, cols=3)
    data = {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint} if sidecar else cfg.to_dict()
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    req = _request("--config", str(path), "--set", "cols=4")
    assert req.config == cfg.replace(cols=4)
    assert (req.m, req.k, req.n) == (8, 12, 12)


def test_run_passes_the_chosen_config_to_the_demo(tmp_path, no_verilator):
    calls, stop = no_verilator
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rows": 4, "cols": 2}))
    with pytest.raises(stop):
        main(["sim", "--demo", "array", "--config", str(path), "--set", "rows=2", "--k", "7",
              "--seed", "3"])
    [(config, kwargs)] = calls
    assert config == AcceleratorConfig(rows=2, cols=2)
    assert kwargs == {"m": 8, "k": 7, "n": 6, "seed": 3, "waves": None}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "huge"], "nmx sim: error: unknown config preset 'huge'"),
        (["--config", "tiny", "--set", "rows=0"],
         "nmx sim: error: config field 'rows' = 0: allowed range is 1..64"),
        (["--set", "colz=4"], "nmx sim: error: unknown config field 'colz'"),
        (["--set", "rows"], "nmx sim: error: --set 'rows': expected FIELD=VALUE"),
        (["--set", "rows=eight"], "nmx sim: error: config field 'rows': expected an integer"),
        (["--config", "missing.json"], "nmx sim: error: config file 'missing.json'"),
        (["--m", "0"], "nmx sim: error: --m 0: GEMM sizes must be positive"),
        (["--config", "tiny", "--n", "-3"], "nmx sim: error: --n -3: GEMM sizes must be positive"),
    ],
)
def test_bad_config_or_size_is_one_line_exit_2(capsys, no_verilator, argv, expected):
    calls, _ = no_verilator
    assert main(["sim", "--demo", "array", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not calls


def test_bad_json_config_file_is_one_line(tmp_path, capsys, no_verilator):
    calls, _ = no_verilator
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 4,')
    assert main(["sim", "--demo", "array", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nmx sim: error: config file") and "invalid JSON" in err
    assert err.count("\n") == 1
    assert not calls


def test_network_run_options_are_checked(capsys):
    assert main(["sim", "--model", "alexnet"]) == 2
    assert "unknown model 'alexnet'" in capsys.readouterr().err
    assert main(["sim", "--samples", "0"]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err
    assert main(["sim", "--m", "4"]) == 2
    assert "--m belong to the array demo: add --demo array" in capsys.readouterr().err
