"""Model zoo: data splits, caching, float accuracy floors, export capture, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import time
from functools import cache

import numpy as np
import pytest
import torch

import compiler.zoo as zoo
from compiler.zoo import MODEL_NAMES, UnknownModelError, ZooError, load
from compiler.zoo import cache as zoo_cache
from compiler.zoo.bert import BertForSequenceClassification, BertSdpaSelfAttention
from compiler.zoo.data import (
    GCN_LABELS_PER_CLASS,
    TOKEN_PAD,
    digits,
    digits_split,
    gcn_split,
    pixel_tokens,
)
from hw.errors import NmxError

# Documented in docs/zoo.md: the float test accuracy every cached or freshly trained model must
# reach (measured values are 1-4 pp above these).
ACCURACY_FLOOR = {
    "mlp": 0.95,
    "resnet": 0.96,
    "mobilenet": 0.96,
    "bert": 0.85,
    "vit": 0.94,
    "gcn": 0.95,
}


@cache
def _zoo(name: str) -> zoo.ZooModel:
    return load(name)


def test_model_names():
    assert MODEL_NAMES == ("mlp", "resnet", "mobilenet", "bert", "vit", "gcn")
    assert set(ACCURACY_FLOOR) == set(MODEL_NAMES)


def test_unknown_name_lists_the_zoo():
    with pytest.raises(UnknownModelError) as info:
        load("alexnet")
    assert isinstance(info.value, NmxError)
    message = str(info.value)
    assert "'alexnet'" in message
    assert all(name in message for name in MODEL_NAMES)


def test_unknown_option_is_named():
    with pytest.raises(ZooError, match=r"'depth_multiplier'.*activation"):
        load("mlp", depth_multiplier=2)


def test_invalid_option_value_is_named():
    with pytest.raises(ZooError, match="hidden_act"):
        load("bert", hidden_act="swish")


def test_digits_split_is_deterministic_stratified_and_pinned():
    train, test = digits_split()
    again_train, again_test = digits_split()
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    _, labels = digits()
    assert len(train) == 1347 and len(test) == 450
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(len(labels)))
    per_class_test = np.bincount(labels[test], minlength=10)
    per_class_all = np.bincount(labels, minlength=10)
    assert np.all(np.abs(per_class_test - 0.25 * per_class_all) <= 0.5)
    # Pinned: a change of the split silently invalidates every documented accuracy.
    assert hashlib.sha256(test.tobytes()).hexdigest()[:16] == "b5f40a368eb2b91e"


def test_digits_split_is_recomputed_identically():
    zoo.data._split.cache_clear()
    first = digits_split()
    zoo.data._split.cache_clear()
    second = digits_split()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_gcn_split_is_deterministic_and_pinned():
    train, test = gcn_split()
    again_train, _ = gcn_split()
    assert np.array_equal(train, again_train)
    _, labels = digits()
    assert np.all(np.bincount(labels[train], minlength=10) == GCN_LABELS_PER_CLASS)
    assert np.intersect1d(train, test).size == 0
    assert len(train) + len(test) == len(labels)
    assert hashlib.sha256(train.tobytes()).hexdigest()[:16] == "7b3c3ac7fe921fed"


def test_pixel_tokens_drop_trailing_zeros_and_pad():
    image = np.zeros((1, 8, 8), dtype=np.int64)
    image[0, 0, 2] = 16
    image[0, 1, 0] = 5
    ids, mask = pixel_tokens(image)
    assert ids.shape == mask.shape == (1, 66)
    # [CLS], pixels 0..8 (last non-zero is pixel 8), [SEP], then padding.
    assert mask[0].tolist() == [1] * 11 + [0] * 55
    assert ids[0, :11].tolist() == [1, 3, 3, 19, 3, 3, 3, 3, 3, 8, 2]
    assert torch.all(ids[0, 11:] == TOKEN_PAD)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_contract_and_accuracy(name):
    zm = _zoo(name)
    assert zm.name == name
    assert not any(m.training for m in zm.model.modules())
    assert all(p.dtype == torch.float32 for p in zm.model.parameters())
    assert isinstance(zm.example_inputs, tuple) and zm.example_inputs
    assert all(isinstance(t, torch.Tensor) for t in zm.example_inputs)
    assert isinstance(zm.calibration, list) and zm.calibration
    for batch in zm.calibration:
        assert isinstance(batch, tuple) and len(batch) == len(zm.example_inputs)
        for t, ex in zip(batch, zm.example_inputs, strict=True):
            assert t.dtype == ex.dtype and t.shape[1:] == ex.shape[1:]
    assert zm.task in ("classification", "node-classification")
    assert zm.description and "\n" not in zm.description
    assert re.fullmatch(rf"{name}_[0-9a-f]{{12}}\.npz", zm.checkpoint.name)  # shipped
    assert zm.checkpoint.is_file()
    with torch.no_grad():
        outputs = zm.model(*zm.eval_inputs)
    assert zm.metric(outputs, zm.eval_labels) == zm.float_accuracy
    assert zm.float_accuracy >= ACCURACY_FLOOR[name], (name, zm.float_accuracy)
    assert 0 < zm.train_seconds and 0 < zm.train_cpu_seconds


@pytest.mark.parametrize("name", ["mlp", "resnet", "mobilenet", "bert", "vit"])
def test_classification_data_shapes(name):
    zm = _zoo(name)
    assert zm.task == "classification" and zm.eval_mask is None
    assert all(len(t) == 8 for t in zm.example_inputs)
    assert len(zm.calibration) == 8 and all(len(b[0]) == 32 for b in zm.calibration)
    assert all(len(t) == 450 for t in zm.eval_inputs) and zm.eval_labels.shape == (450,)
    # The example batch is the first 8 test samples.
    for ex, ev in zip(zm.example_inputs, zm.eval_inputs, strict=True):
        assert torch.equal(ex, ev[:8])


def test_gcn_metric_scores_test_nodes_only():
    zm = _zoo("gcn")
    assert zm.task == "node-classification"
    (features,) = zm.eval_inputs
    assert features.shape == (1797, 64)
    assert zm.eval_labels.shape == zm.eval_mask.shape == (1797 - 10 * GCN_LABELS_PER_CLASS,)
    with torch.no_grad():
        outputs = zm.model(features)
    assert zm.metric(outputs, zm.eval_labels) == zoo.accuracy(outputs[zm.eval_mask], zm.eval_labels)
    assert zm.metric(outputs[zm.eval_mask], zm.eval_labels) == zm.float_accuracy
    a_norm = zm.model.a_norm
    assert torch.allclose(a_norm, a_norm.T)
    assert "a_norm" not in zm.model.state_dict()
    assert len(zm.calibration) >= 2
    assert all(b[0].shape == features.shape for b in zm.calibration)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_captures(name):
    zm = _zoo(name)
    exported = torch.export.export(zm.model, zm.example_inputs, strict=False)
    with torch.no_grad():
        expected = zm.model(*zm.example_inputs)
        actual = exported.module()(*zm.example_inputs)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_bert_attention_mask_matters_and_padding_is_ignored():
    zm = _zoo("bert")
    input_ids, attention_mask = zm.eval_inputs
    padded = (attention_mask == 0).any(dim=1)
    assert padded.float().mean() > 0.5
    ids, mask = input_ids[padded][:16], attention_mask[padded][:16]
    scrambled = torch.where(mask == 0, torch.full_like(ids, 10), ids)
    with torch.no_grad():
        reference = zm.model(ids, mask)
        torch.testing.assert_close(zm.model(scrambled, mask), reference)
        unmasked = zm.model(ids, torch.ones_like(mask))
    assert (unmasked - reference).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("option", "value", "atol"),
    [
        ("attn_implementation", "sdpa", 1e-5),
        ("mask_fill", "-10000", 1e-5),
        ("hidden_act", "gelu_pytorch_tanh", 5e-2),
        ("hidden_act", "gelu_new", 5e-2),
    ],
)
def test_bert_variants_share_weights(option, value, atol):
    zm = _zoo("bert")
    variant = BertForSequenceClassification(dataclasses.replace(zm.config, **{option: value}))
    variant.load_state_dict(zm.model.state_dict())
    variant.eval()
    with torch.no_grad():
        expected = zm.model(*zm.example_inputs)
        actual = variant(*zm.example_inputs)
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
    torch.export.export(variant, zm.example_inputs, strict=False)


@pytest.mark.parametrize(
    ("option", "value"), [("attn_implementation", "sdpa"), ("mask_fill", "-10000")]
)
def test_bert_inference_options_reuse_the_default_weights(option, value):
    default = _zoo("bert")
    variant = load("bert", **{option: value})
    assert variant.checkpoint == default.checkpoint
    assert getattr(variant.config, option) == value
    with torch.no_grad():
        torch.testing.assert_close(
            variant.model(*variant.eval_inputs),
            default.model(*default.eval_inputs),
            atol=1e-5,
            rtol=0,
        )
    assert abs(variant.float_accuracy - default.float_accuracy) <= 1 / 450
    if option == "attn_implementation":
        attention = variant.model.bert.encoder.layer[0].attention.self
        assert isinstance(attention, BertSdpaSelfAttention)


def test_cached_weights_are_reused(monkeypatch):
    first = _zoo("mlp")

    def no_training(*args, **kwargs):
        raise AssertionError("load() retrained a cached model")

    monkeypatch.setattr(zoo, "train_checkpoint", no_training)
    again = load("mlp")
    assert again.checkpoint == first.checkpoint
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key])


def test_training_is_deterministic():
    entry = zoo.spec("mlp")
    data = entry.data(entry.config)
    first = zoo.train_checkpoint(entry, entry.config, data)["state_dict"]
    second = zoo.train_checkpoint(entry, entry.config, data)["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_fingerprint_covers_code_settings_data_and_torch(tmp_path, monkeypatch):
    source = tmp_path / "model.py"
    source.write_text("WIDTH = 1\n")
    data = [torch.arange(4)]
    base = zoo_cache.fingerprint([source], {"lr": 1e-3}, data)
    assert re.fullmatch(r"[0-9a-f]{12}", base)
    assert zoo_cache.fingerprint([source], {"lr": 1e-3}, data) == base
    assert zoo_cache.fingerprint([source], {"lr": 2e-3}, data) != base
    assert zoo_cache.fingerprint([source], {"lr": 1e-3}, [torch.arange(5)]) != base
    source.write_text("WIDTH = 2\n")
    changed_code = zoo_cache.fingerprint([source], {"lr": 1e-3}, data)
    assert changed_code != base
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert zoo_cache.fingerprint([source], {"lr": 1e-3}, data) != changed_code


def test_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo_cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert zoo_cache.cache_dir() == tmp_path / "elsewhere"


def test_concurrent_loaders_train_once(tmp_path):
    path = tmp_path / "m_000000000000.pt"
    calls = []

    def train():
        calls.append(threading.get_ident())
        time.sleep(0.2)
        return {"state_dict": {"w": torch.ones(3)}, "train_seconds": 0.2}

    results = []

    def worker():
        results.append(zoo_cache.load_or_train(path, train))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(trained for _, trained in results) == [False, False, True]
    assert all(torch.equal(ckpt["state_dict"]["w"], torch.ones(3)) for ckpt, _ in results)
    assert [p.name for p in tmp_path.glob("*.tmp")] == []
