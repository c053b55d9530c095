"""Every case of the lowering tests compiled and run on the golden model: bit for bit equal to
the converted model in int mode, with status OK.

The cases are the lowering tests' own tables and modules, imported from them (same modules,
seeds, example and calibration inputs): ``tests/test_convert_ops.py``,
``tests/test_lowering_real_ops.py``, ``tests/test_lowering_transformer.py``,
``tests/test_lowering_gcn.py`` and ``tests/test_lowering_fusion.py``. Fast: every case on the
``tiny`` config (4x4 array, small memories: every node is tiled and padded). Slow: every case on
``default`` and ``ecp5``; a fast sample runs on ``default``.

Not included: the lowering tests that build a matrix graph by hand without quantisation
(test_lowering_fusion's fusion graphs, test_convert_ops' padded-view test: float mode only) and
the ones that check a conversion error (nothing to compile).

A case the back end cannot compile must be listed in :data:`EXPECTED_COMPILE_ERRORS` with the
reason; it then has to raise :class:`CompileError` naming the node and the config.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
import torch
from torch import nn

from compiler import convert
from compiler.backend import CompileError, compile
from hw.config import preset
from tests import test_convert_ops as convert_ops
from tests import test_lowering_fusion as fusion
from tests import test_lowering_gcn as gcn
from tests import test_lowering_real_ops as real_ops
from tests import test_lowering_transformer as transformer

#: A case: () -> (model, example inputs, calibration inputs, test inputs)
Case = Callable[[], tuple[nn.Module, tuple, list, tuple]]


def _convert_ops_case(name: str) -> Case:
    def build():
        factory, shape, _ = convert_ops.CASES[name]
        torch.manual_seed(0)
        model = factory().eval()
        gen = torch.Generator().manual_seed(1)
        cal = [(torch.randn(shape, generator=gen),) for _ in range(4)]
        x = torch.randn(shape, generator=gen)
        return model, (x,), cal, (x,)
    return build


def _real_ops_case(name: str) -> Case:
    def build():
        factory, shape, _ = real_ops.CASES[name]
        torch.manual_seed(0)
        module = factory()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
        return module.eval(), (x,), real_ops._cal(shape), (x,)
    return build


def _conv1d() -> tuple:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1, stride=2), nn.ELU(),
                          nn.Conv1d(5, 4, 1)).eval()
    x = torch.randn(2, 3, 16)
    return model, (x,), real_ops._cal((2, 3, 16)), (x,)


def _maxpool_after_relu() -> tuple:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)).eval()
    x = torch.randn(2, 2, 6, 6)
    return model, (x,), [(torch.randn(2, 2, 6, 6),) for _ in range(3)], (x,)


def _nearest_upsampling_batch1() -> tuple:
    torch.manual_seed(0)
    model = real_ops._ConvThen(nn.Upsample(scale_factor=2)).eval()
    x = torch.randn(1, 3, 4, 4)
    return model, (x,), real_ops._cal((1, 3, 4, 4)), (x,)


class _Prod(nn.Module):
    """test_lowering_real_ops' product of two data tensors (row scaling by a 16-bit operand)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        return self.a(x) * self.b(x)


def _product() -> tuple:
    torch.manual_seed(0)
    model = _Prod().eval()
    x = torch.randn(8, 6)
    return model, (x,), [(x,), *real_ops._cal((8, 6))], (x,)


def _transformer_ops() -> tuple:
    torch.manual_seed(0)
    model = transformer._Ops().eval()
    return (model, transformer._ids(1, seed=1)[0], transformer._ids(6, seed=2),
            transformer._ids(1, seed=3)[0])


def _attention(fill: str) -> Case:
    def build():
        torch.manual_seed(1)
        model = transformer._Attn(fill=fill).eval()
        return (model, transformer._attn_inputs(1, seed=5)[0],
                transformer._attn_inputs(6, seed=6), transformer._attn_inputs(1, seed=7)[0])
    return build


def _bert_block(sdpa: bool) -> Case:
    def build():
        torch.manual_seed(2)
        model = transformer._Block(sdpa=sdpa).eval()
        return (model, transformer._tok(1, seed=1)[0], transformer._tok(8, seed=2),
                transformer._tok(1, seed=3)[0])
    return build


def _gcn(order: str) -> Case:
    def build():
        torch.manual_seed(0)
        model = gcn._GCN(order=order).eval()
        x = gcn._feats(1, seed=1)[0]
        cal = [x] + [(x[0] + 0.02 * torch.randn_like(x[0]),) for _ in range(3)]
        return model, x, cal, x
    return build


def _data_matmul() -> tuple:
    g = torch.Generator().manual_seed(3)

    def pair():
        return (torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 5, generator=g))

    example = pair()
    cal = [pair() for _ in range(4)]
    return gcn._DataMatmul().eval(), example, cal, pair()


def _const_then_data() -> tuple:
    torch.manual_seed(0)
    x = torch.randn(3, 5)
    g = torch.Generator().manual_seed(1)
    return fusion._ConstThenData().eval(), (x,), [(torch.randn(3, 5, generator=g),)
                                                 for _ in range(4)], (x,)


CASES: dict[str, Case] = {
    **{f"convert_ops/{n}": _convert_ops_case(n) for n in sorted(convert_ops.CASES)},
    **{f"real_ops/{n}": _real_ops_case(n) for n in sorted(real_ops.CASES)},
    "convert_ops/maxpool_after_relu": _maxpool_after_relu,
    "real_ops/conv1d": _conv1d,
    "real_ops/nearest_upsampling_batch1": _nearest_upsampling_batch1,
    "real_ops/product_of_two_data_tensors": _product,
    "transformer/ops": _transformer_ops,
    "transformer/attention_finfo_min": _attention("finfo_min"),
    "transformer/attention_-10000": _attention("-10000"),
    "transformer/bert_block_eager": _bert_block(False),
    "transformer/bert_block_sdpa": _bert_block(True),
    "gcn/a_xw": _gcn("a_xw"),
    "gcn/ax_w": _gcn("ax_w"),
    "gcn/data_by_data_matmul": _data_matmul,
    "fusion/constant_then_data": _const_then_data,
}

#: (case, config) -> reason: cases the back end rejects with a CompileError, on purpose.
EXPECTED_COMPILE_ERRORS: dict[tuple[str, str], str] = {}

#: Cases also run on ``default`` in the fast suite (one per family, the rest are slow).
DEFAULT_SAMPLE = ["convert_ops/conv_depthwise", "convert_ops/maxpool3s2p1",
                  "convert_ops/squeeze_excite", "real_ops/layer_scale", "transformer/ops",
                  "transformer/attention_finfo_min", "gcn/a_xw"]


@functools.cache
def _converted(name: str):
    model, example, cal, test = CASES[name]()
    cm = convert(model, example, cal)
    return cm, test


def _check(name: str, cfgname: str) -> None:
    cm, test = _converted(name)
    config = preset(cfgname)
    reason = EXPECTED_COMPILE_ERRORS.get((name, cfgname))
    if reason is not None:
        with pytest.raises(CompileError) as info:
            compile(cm, config, batch=1, name=name)
        msg = str(info.value)
        assert f"{config.rows}x{config.cols}" in msg and config.fingerprint in msg, msg
        return
    bundle = compile(cm, config, batch=1, name=name)
    samples, _ = cm.to_samples(test)
    res = bundle.run(samples, backend="golden")
    assert res.run.status.ok
    with torch.no_grad():
        want = cm(*test, mode="int")
    want = want if isinstance(want, tuple) else (want,)
    assert len(res.outputs) == len(want)
    for i, (got, w) in enumerate(zip(res.outputs, want, strict=True)):
        assert got.shape[0] == 1
        assert torch.equal(got[0], w), f"{name} output {i}: {int((got[0] != w).sum())} differ"


def test_case_table_covers_every_lowering_case():
    assert len(CASES) == len(convert_ops.CASES) + len(real_ops.CASES) + 13
    assert set(DEFAULT_SAMPLE) <= set(CASES)
    assert {c for c, _ in EXPECTED_COMPILE_ERRORS} <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_bit_exact_on_tiny(name):
    _check(name, "tiny")


@pytest.mark.parametrize("name", DEFAULT_SAMPLE)
def test_case_bit_exact_on_default(name):
    _check(name, "default")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(CASES) - set(DEFAULT_SAMPLE)))
def test_case_bit_exact_on_default_slow(name):
    _check(name, "default")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_case_bit_exact_on_ecp5_slow(name):
    _check(name, "ecp5")


def test_case_that_does_not_fit_a_non_square_array_raises_compile_error():
    """No preset rejects a case; on an array with fewer rows than columns (4x8, otherwise tiny)
    the BERT block's 16-bit embedding sum cannot be split into planes (the hi x (-128 I)
    correction GEMM streams R operand lanes and must reach all C columns): a CompileError naming
    the node, its module path, the limit and the config. With more rows than columns (8x4) the
    same case compiles and is bit-exact."""
    cm, _ = _converted("transformer/bert_block_eager")
    config = dataclasses.replace(preset("tiny"), cols=8)
    with pytest.raises(CompileError) as info:
        compile(cm, config, batch=1, name="bert_block")
    msg = str(info.value)
    assert msg.startswith("node emb (module emb, aten.embedding.default)"), msg
    assert "splitting a 16-bit output needs rows >= cols (have 4x8)" in msg
    assert f"config 4x8 {config.fingerprint}" in msg
    cm, test = _converted("transformer/bert_block_eager")
    tall = dataclasses.replace(preset("tiny"), rows=8)
    res = compile(cm, tall, batch=1, name="bert_block").run([t.unsqueeze(0) for t in test])
    assert res.run.status.ok
    want = cm(*test)
    for got, w in zip(res.outputs, want if isinstance(want, tuple) else (want,), strict=True):
        assert torch.equal(got[0], w)
