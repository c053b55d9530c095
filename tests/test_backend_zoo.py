"""Zoo models compiled and run on the golden model: equal to the integer executor bit for bit.

Fast: the MLP at batch 1 and 8 (default and tiny configs) and the GCN at batch 1. Slow: every
model at batch 1 and 8 on the default config and at batch 1 on tiny and ecp5.
"""

from __future__ import annotations

import functools

import pytest
import torch

from compiler.backend import Bundle, compile
from compiler.convert import convert
from compiler.zoo import MODEL_NAMES, load
from hw.config import preset


@functools.cache
def _converted(name: str):
    zm = load(name)
    return zm, convert(zm.model, zm.example_inputs, zm.calibration)


def _samples(name: str, batch: int) -> list[torch.Tensor]:
    zm, cm = _converted(name)
    if zm.task == "node-classification":
        g = torch.Generator().manual_seed(batch)
        base = cm.to_samples(zm.example_inputs)[0]
        return [torch.cat([s] + [s + 0.05 * torch.randn(s.shape, generator=g)
                                 for _ in range(batch - 1)]) for s in base]
    b0 = cm.example_shapes[0][0]
    return cm.to_samples(tuple(t[: batch * b0] for t in zm.eval_inputs))[0]


def _bit_exact(name: str, cfgname: str, batch: int, tmp_path=None) -> Bundle:
    _zm, cm = _converted(name)
    bundle = compile(cm, preset(cfgname), batch=batch, name=name)
    if tmp_path is not None:
        bundle = Bundle.load(bundle.save(tmp_path / name))
    samples = _samples(name, batch)
    ref = cm.run_samples(samples, "int")
    res = bundle.run(samples)
    assert res.run.status.ok
    for got, want in zip(res.outputs, ref, strict=True):
        assert torch.equal(got, want), f"{name}: {int((got != want).sum())} outputs differ"
    return bundle


@pytest.mark.parametrize("batch", [1, 8])
def test_mlp_bit_exact_through_a_saved_bundle(batch, tmp_path):
    bundle = _bit_exact("mlp", "default", batch, tmp_path)
    assert bundle.manifest["batch"] == batch
    assert {n["name"] for n in bundle.manifest["nodes"]} == {
        n.name for n in _converted("mlp")[1].graph.nodes}


def test_mlp_tiny_config():
    _bit_exact("mlp", "tiny", 2)


def test_gcn_bit_exact():
    _bit_exact("gcn", "default", 1)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_bit_exact_default(name, batch, tmp_path):
    # batch 1 goes through a saved and loaded bundle (BERT: host pre-processing ops pickled)
    _bit_exact(name, "default", batch, tmp_path if batch == 1 else None)


@pytest.mark.slow
@pytest.mark.parametrize("cfgname", ["tiny", "ecp5"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_bit_exact_small_configs(name, cfgname):
    _bit_exact(name, cfgname, 1)
