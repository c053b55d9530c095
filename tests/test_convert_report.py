"""``nmx convert`` targets table and summary: issue-#4 targets checked on measured figures."""

from __future__ import annotations

import json

import pytest
import torch

from compiler.report import TARGETS, check_targets, target_family, targets_table


def _render(table) -> str:
    from rich.console import Console

    con = Console(width=200, record=True, color_system=None)
    con.print(table)
    return con.export_text()


def test_cnn_targets_met_missed_and_margin():
    checks = check_targets("resnet", {"float-pwl": {"drop_pp": 0.0, "agreement": 1.0},
                                      "int8": {"drop_pp": 0.44, "agreement": 0.99}})
    by = {(c.target, c.form): c for c in checks}
    pwl = by[("top-1 within 0.3 pp of float, no fine-tuning", "float-pwl")]
    i8 = by[("top-1 within 0.3 pp of float, no fine-tuning", "int8")]
    assert pwl.met and pwl.margin == pytest.approx(0.3)
    assert i8.met is False and i8.margin == pytest.approx(-0.14)
    ft = by[("top-1 within 0.1 pp of float after fine-tuning", "int8 finetuned")]
    assert ft.measured is None and ft.met is None and "--finetune" in ft.note
    text = _render(targets_table(checks))
    assert "MISSED (-0.14 pp)" in text and "met (+0.30 pp)" in text and "not run" in text


def test_gain_counts_as_met():
    (c, *_) = check_targets("mlp", {"float-pwl": {"drop_pp": -0.5}})
    assert c.met and c.margin == pytest.approx(0.8)


def test_transformer_targets_need_token_cosines_and_agreement():
    m = {"int8": {"drop_pp": 0.0, "agreement": 0.996, "token_cos_mean": 0.9949,
                  "token_cos_worst": 0.99}}
    checks = [c for c in check_targets("bert", m) if c.form == "int8"]
    got = {c.metric: (c.met, None if c.margin is None else round(c.margin, 6)) for c in checks}
    assert got == {"token_cos_mean": (False, -0.0001), "token_cos_worst": (True, 0.01),
                   "agreement": (True, 0.001), "agreement_decisive": (None, None)}
    assert all(c.met is None for c in check_targets("bert", m) if c.form == "float-pwl")
    assert {c.metric for c in check_targets("vit", m)} == {"token_cos_mean", "token_cos_worst",
                                                           "agreement", "agreement_decisive"}


def test_gcn_target_is_agreement_99():
    (pwl, i8, *decisive) = check_targets("gcn", {"float-pwl": {"agreement": 0.99},
                                                 "int8": {"agreement": 0.9899}})
    assert pwl.met and not i8.met and i8.threshold == 0.99
    assert [c.metric for c in decisive] == ["agreement_decisive"] * 2


def test_every_family_has_targets_and_unknown_model_raises():
    assert {t.family for t in TARGETS} == {"cnn", "transformer", "gcn"}
    for name in ("mlp", "resnet", "mobilenet", "bert", "vit", "gcn"):
        assert check_targets(name, {})
    assert target_family("vit") == "transformer"
    with pytest.raises(ValueError, match="no accuracy targets"):
        target_family("lenet")


def test_hidden_states_modules_match_the_classifiers():
    from compiler.zoo import hidden_states, load

    for name in ("bert", "vit"):
        zm = load(name)
        module, mask = hidden_states(zm)
        x = tuple(t[:4] for t in zm.eval_inputs)
        with torch.no_grad():
            h = module(*x)
            if name == "bert":
                torch.testing.assert_close(h, zm.model.bert(*x)[0])
                assert mask.dtype == torch.bool and mask.shape == zm.eval_inputs[1].shape
            else:
                torch.testing.assert_close(zm.model.head(h[:, 0]), zm.model(*x))
                assert mask is None
    assert hidden_states(load("mlp")) is None


def test_cli_mlp_prints_and_writes_targets(tmp_path, capsys):
    from nmx.cli import main

    out = tmp_path / "mlp.json"
    assert main(["convert", "--model", "mlp", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "issue-#4 targets: mlp" in text and "top-1 within 0.3 pp" in text
    res = json.loads(out.read_text())
    assert res["forms"] == ["float-pwl", "int8"]
    int8 = [c for c in res["targets"] if c["form"] == "int8" and c["metric"] == "drop_pp"]
    assert len(int8) == 1 and int8[0]["measured"] == pytest.approx(-res["int8"]["delta_pp"])
    assert int8[0]["met"] is True  # the shipped mlp: drop 0.00 pp
    assert "total" in res["seconds"]


def test_cli_gcn_reports_agreement_target(tmp_path, capsys):
    from nmx.cli import main

    out = tmp_path / "gcn.json"
    assert main(["convert", "--model", "gcn", "--json", str(out)]) == 0
    assert "node-classification agreement" in capsys.readouterr().out
    res = json.loads(out.read_text())
    (pwl, i8, *decisive) = res["targets"]
    assert i8["metric"] == "agreement" and i8["measured"] == res["int8"]["agreement"]
    assert i8["met"] is True  # the shipped gcn: 99.94 %
    assert [c["met"] for c in decisive] == [True, True]


def test_cli_all_prints_summary(tmp_path, capsys, monkeypatch):
    import compiler.zoo
    from nmx.cli import main

    monkeypatch.setattr(compiler.zoo, "MODEL_NAMES", ("mlp", "gcn"))
    out = tmp_path / "all.json"
    assert main(["convert", "--model", "all", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nmx convert --model all: summary" in text
    assert "issue-#4 targets, every zoo model" in text and "gcn: node-classification" in text
    res = json.loads(out.read_text())
    assert [r["model"] for r in res] == ["mlp", "gcn"]


def test_cli_unknown_model_is_a_one_line_error(capsys):
    from nmx.cli import main

    assert main(["convert", "--model", "lenet"]) == 2
    assert "unknown zoo model 'lenet'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_bert_reports_token_cosines(tmp_path):
    from nmx.cli import main

    out = tmp_path / "bert.json"
    assert main(["convert", "--model", "bert", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for form in ("float-pwl", "int8"):
        assert -1.0 <= res[form]["token_cos_worst"] <= res[form]["token_cos_mean"] <= 1.0
    assert res["hidden_states"]["token_set"] == "unmasked tokens"
    assert {c["metric"] for c in res["targets"]} == {"token_cos_mean", "token_cos_worst",
                                                     "agreement", "agreement_decisive"}
    if any(c["met"] is False for c in res["targets"]):
        assert all(r["int_cos"] <= 1.0 for r in res["diagnosis"]["lowest"])


def test_cli_finetune_fills_the_finetuned_target(tmp_path):
    from nmx.cli import main

    out = tmp_path / "mlp_ft.json"
    assert main(["convert", "--model", "mlp", "--finetune", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["forms"] == ["float-pwl", "int8", "int8 finetuned"]
    (ft,) = [c for c in res["targets"] if c["form"] == "int8 finetuned"
             and c["metric"] == "drop_pp"]
    assert ft["threshold"] == 0.1 and ft["binding"] is False
    assert ft["measured"] == pytest.approx(-res["int8 finetuned"]["delta_pp"])
    assert ft["met"] is True  # the shipped mlp: drop 0.00 pp
    (decisive,) = [c for c in res["targets"] if c["form"] == "int8 finetuned"
                   and c["metric"] == "agreement_decisive"]
    assert decisive["binding"] and decisive["met"] is True
