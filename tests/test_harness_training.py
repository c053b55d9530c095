"""The fixed training program of the fast harness's profile-guided build (sim/harness_training.py):
it fits every preset, its identity names its content, and the training run checks the RTL
against the golden model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hw.config import preset
from sim import harness_training as ht


@pytest.mark.parametrize("name", ["tiny", "default", "ecp5"])
def test_the_training_gemm_fits_every_preset_and_is_deterministic(name):
    cfg = preset(name)
    p1, i1 = ht.training_program(cfg)
    p2, i2 = ht.training_program(cfg)
    assert p1.words() == p2.words() and np.array_equal(i1.data, i2.data)
    assert len(p1.words()) > 10 and i1.size > 0


def test_identity_names_the_content(tmp_path):
    a = ht.training_for(preset("tiny"), tmp_path)
    assert ht.training_for(preset("tiny"), tmp_path) == a
    b = ht.training_for(preset("default"), tmp_path)
    assert a.identity != b.identity
    folder = tmp_path / f"{preset('tiny').fingerprint}_{a.identity.split()[-1]}"
    settings = json.loads((folder / "training.json").read_text())
    assert settings["passes"] == [list(p) for p in ht.TRAINING_PASSES]
    assert a.command[-2:] == (str(folder), "{library}")


def test_the_network_is_compiled_once_and_names_the_identity(tmp_path, monkeypatch):
    cfg = preset("tiny")
    assert ht.training_network(cfg) == ("mlp", 4)
    assert ht.training_network(preset("default")) == ("bert", 1)
    words, image = ht.network_program(cfg, tmp_path)
    assert len(words) > 10 and image.size > 0
    (cached,) = tmp_path.glob("network_*.npz")
    import compiler.backend

    monkeypatch.setattr(compiler.backend, "compile", None)  # a second compile would fail
    again = ht.network_program(cfg, tmp_path)
    assert again[0] == words and np.array_equal(again[1], image)
    a = ht.training_for(cfg, tmp_path)
    folder = tmp_path / f"{cfg.fingerprint}_{a.identity.split()[-1]}"
    assert json.loads((folder / "network_program.json").read_text()) == words
    assert json.loads((folder / "training.json").read_text())["network"] == {
        "model": "mlp", "batch": 4, "passes": [list(p) for p in ht.NETWORK_PASSES]}
    monkeypatch.setattr(ht, "network_program", lambda c, r: (words[:-1], image))
    assert ht.training_for(cfg, tmp_path).identity != a.identity
    assert cached.is_file()


@pytest.mark.rtl
def test_the_training_run_is_checked_against_the_golden_model(tmp_path, capsys):
    from sim.rtl_harness import build_harness

    cfg = preset("tiny")
    training = ht.training_for(cfg, tmp_path)
    lib = build_harness(cfg)
    assert ht.main([training.command[-2], str(lib)]) == 0
    out = capsys.readouterr().out
    assert out.count("equal to the golden model") == len(ht.TRAINING_PASSES) + len(
        ht.NETWORK_PASSES)
    assert "training pass mlp (batch 4)" in out
