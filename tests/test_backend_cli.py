"""``nmx compile`` / ``nmx run`` on the zoo MLP, and their one-line errors."""

from __future__ import annotations

import json

import torch

from nmx.cli import main


def test_compile_report_then_run(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert main(["compile", "--model", "mlp", "--config", "default", "--batch", "2", "-o",
                 str(out), "--report"]) == 0
    text = capsys.readouterr().out
    assert "bit for bit" in text and "utilisation" in text
    for f in ("program.nmxp", "dram.nmxd", "manifest.json", "report.json", "utilisation.png"):
        assert (out / f).is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["batch"] == 2 and report["total_cycles"] > 0
    assert {n["name"] for n in report["nodes"]} == {
        n["name"] for n in json.loads((out / "manifest.json").read_text())["nodes"]}
    assert main(["run", str(out), "--input", str(out / "sample_inputs.pt"), "--int"]) == 0
    assert "status: OK" in capsys.readouterr().out


def test_run_rejects_a_wrongly_shaped_input(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert main(["compile", "--model", "mlp", "-o", str(out)]) == 0
    bad = tmp_path / "x.pt"
    torch.save(torch.zeros(3, 5), bad)
    assert main(["run", str(out), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nmx run: error:" in err and "compiled for" in err


def test_compile_unknown_model(tmp_path, capsys):
    assert main(["compile", "--model", "alexnet", "-o", str(tmp_path)]) == 2
    assert "unknown model 'alexnet'" in capsys.readouterr().err
