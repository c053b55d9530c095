"""The zoo as shipped: its weights files, and every accuracy target asserted on them.

The shipped weights (compiler/zoo/weights) make these figures the same on every machine, so the
targets are asserted here, in the fast suite, and the figures docs/zoo.md quotes are checked
against a fresh measurement.
"""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import compiler.zoo as zoo
from compiler import convert
from compiler.zoo import MODEL_NAMES, load, spec, weights_spec
from compiler.zoo import cache as zoo_cache
from nmx.commands.convert import measure

ROOT = Path(__file__).resolve().parents[1]


def _measured(name: str) -> dict:
    epochs = 1 if spec(name).task == "classification" else 0
    results, _ = measure(name, finetune_epochs=epochs)
    return results


def test_every_model_has_exactly_its_current_weights_shipped():
    sums = zoo_cache.read_sums()
    shipped = sorted(p.name for p in zoo_cache.SHIPPED_DIR.glob("*.npz"))
    expected = sorted(f"{name}_{weights_spec(name)[3]}.npz" for name in MODEL_NAMES)
    assert shipped == expected, "regenerate the shipped weights with `nmx zoo ship`"
    assert sorted(sums) == expected
    total = sum((zoo_cache.SHIPPED_DIR / f).stat().st_size for f in shipped)
    assert total < 1_000_000


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_uses_the_shipped_weights(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", zoo_cache.TrainingOnFirstUse)
        zm = load(name)
    assert zm.weights_source == "shipped"
    assert zm.checkpoint == zoo_cache.shipped_path(name, zm.fingerprint)
    with np.load(zm.checkpoint, allow_pickle=False) as archive:
        stored = {k.removeprefix("state_dict/"): archive[k] for k in archive.files
                  if k.startswith("state_dict/")}
    state = zm.model.state_dict()
    assert stored.keys() == state.keys()
    for key, value in state.items():
        assert np.array_equal(stored[key], value.numpy()), key


def test_shipped_weights_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["compiler.zoo"]
    package = ROOT / "compiler" / "zoo"
    for path in zoo_cache.SHIPPED_DIR.iterdir():
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_a_corrupt_shipped_file_is_refused(tmp_path, monkeypatch):
    name = "gcn"
    digest = weights_spec(name)[3]
    copy = tmp_path / "weights"
    shutil.copytree(zoo_cache.SHIPPED_DIR, copy)
    path = copy / f"{name}_{digest}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setattr(zoo_cache, "SHIPPED_DIR", copy)
    with pytest.raises(zoo_cache.ShippedWeightsError, match="corrupt"):
        load(name)
    (copy / zoo_cache.SUMS_FILE).write_text("")
    with pytest.raises(zoo_cache.ShippedWeightsError, match="not listed"):
        load(name)


def test_a_changed_spec_trains_on_first_use_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo_cache.CACHE_ENV, str(tmp_path))
    calls = []

    def fake_training(entry, config, data):
        calls.append(entry.training.seed)
        model = entry.build(config)
        return {"state_dict": model.state_dict(), "train_seconds": 0.0,
                "train_cpu_seconds": 0.0}

    monkeypatch.setattr(zoo, "train_checkpoint", fake_training)
    with pytest.warns(zoo_cache.TrainingOnFirstUse, match=r"'mlp'.*mlp_[0-9a-f]{12}\.npz"):
        zm = load("mlp", seed=7)
    assert calls == [7] and zm.weights_source == "trained" and zm.seed == 7
    assert zm.checkpoint.parent == tmp_path
    with warnings.catch_warnings():
        warnings.simplefilter("error", zoo_cache.TrainingOnFirstUse)
        again = load("mlp", seed=7)
    assert calls == [7] and again.weights_source == "cached"
    with pytest.raises(zoo.ZooError, match="seed"):
        load("mlp", seed=-1)


def test_ship_writes_npz_and_sums(tmp_path):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    ckpt = {"state_dict": state, "train_seconds": 1.5, "train_cpu_seconds": 1.25}
    old = zoo_cache.save_shipped("m", "0" * 12, ckpt, tmp_path)
    path = zoo_cache.save_shipped("m", "1" * 12, ckpt, tmp_path)
    assert not old.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        zoo_cache.SUMS_FILE, "m_111111111111.npz"]
    assert list(zoo_cache.read_sums(tmp_path)) == [path.name]
    with np.load(path, allow_pickle=False) as archive:
        assert np.array_equal(archive["state_dict/w"], state["w"].numpy())
        assert archive["state_dict/n"].dtype == np.int64
        assert float(archive["train_cpu_seconds"]) == 1.25


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_target_is_met_on_the_shipped_weights(name):
    """Every binding target, and the figures docs/zoo.md quotes (one conversion per model: this
    is the fast suite's most expensive test)."""
    results = _measured(name)
    assert results["weights"] == "shipped"
    _check_docs_figures(name, results)
    checks = results["targets"]
    assert checks and all(c["measured"] is not None for c in checks), checks
    missed = [f"{c['target']} [{c['form']}]: {c['measured']:.5g} (needs {c['comparison']} "
              f"{c['threshold']})" for c in checks if c["binding"] and not c["met"]]
    assert not missed, missed
    # the one target that is not binding (below the test split's resolution, docs/zoo.md)
    assert {c["target"] for c in checks if not c["binding"]} <= {
        "top-1 within 0.1 pp of float after fine-tuning"}


def _docs_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "zoo.md").read_text()
    section = text.split("<!-- shipped-figures -->")[1].split("<!-- /shipped-figures -->")[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _check_docs_figures(name: str, r: dict) -> None:
    """docs/zoo.md's table of `nmx convert --model all` on the shipped weights is what the
    conversion measures now (int outputs are bit-identical, so these are exact)."""
    row = _docs_table()[name]
    tok = (f"{r['int8']['token_cos_mean']:.5f} / {r['int8']['token_cos_worst']:.5f}"
           if "token_cos_mean" in r["int8"] else "-")
    assert row == [f"{100 * r['float']:.2f} %", f"{100 * r['float-pwl']['accuracy']:.2f} %",
                   f"{100 * r['int8']['accuracy']:.2f} %", f"{100 * r['int8']['agreement']:.2f} %",
                   tok]


def test_conversion_does_not_depend_on_the_thread_count():
    """Calibration runs float kernels whose reductions depend on the thread count (measured:
    mobilenet's ``head_0`` amax 8.194259643554688 on 1 thread, 8.194258689880371 on 3, before
    conversion ran single-threaded); the scales and int outputs must not."""
    zm = load("mobilenet")
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            cm = convert(zm.model, zm.example_inputs, zm.calibration)
            with torch.no_grad():
                out = cm(*zm.eval_inputs, mode="int")
            runs.append(({k: np.asarray(v, np.float64) for k, v in cm.quant.scales.items()},
                         dict(cm.stats.amax), out))
    finally:
        torch.set_num_threads(previous)
    (s1, a1, o1), (s2, a2, o2) = runs
    assert a1 == a2
    assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(o1, o2)


def test_sweep_summary_counts_passes_and_worst():
    from nmx.commands.zoo import summarise

    def run(seed, agreement):
        return {"model": "gcn", "seed": seed, "targets": [
            {"target": "t", "form": "int8", "metric": "agreement", "comparison": ">=",
             "threshold": 0.99, "measured": agreement, "met": agreement >= 0.99,
             "binding": True}]}

    (row,) = summarise([run(0, 1.0), run(1, 0.985), run(2, 0.995)])
    assert row["passes"] == 2 and row["worst"] == 0.985 and row["seeds"] == [0, 1, 2]
    assert row["mean"] == pytest.approx((1.0 + 0.985 + 0.995) / 3)
    assert row["model"] == "gcn"
