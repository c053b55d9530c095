"""The back end on single GEMM nodes: the golden model's run of a compiled IR equals the IR's
integer interpretation bit for bit (shapes around the array size, 16-bit operands, row and
column scales, transposed and data weights, PWL tables beyond the resident slots), on the tiny,
default and ecp5 configs; unsupported cases raise CompileError naming the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.backend import CompileError
from compiler.backend.compile import compile_ir
from compiler.graph import GraphInput, MatrixGraph, Permute, Reshape, TensorRef
from compiler.ir import GemmPass, IntGraph, IntNode, Operand, interpret
from hw.config import preset
from hw.numeric import PwlTable
from tests.golden_reference import random_pwl_table

CONFIGS = ("tiny", "default", "ecp5")
_SETTINGS = settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _dims(cfg):
    r = cfg.rows
    return st.sampled_from(sorted({1, max(1, r - 1), r, r + 1, 2 * r + 3, 37}))


def _graph(inputs: dict[str, tuple]) -> MatrixGraph:
    return MatrixGraph(inputs=[GraphInput(n, i, s, torch.int64)
                               for i, (n, s) in enumerate(inputs.items())])


def _check(ir: IntGraph, inputs: dict[str, np.ndarray], cfg, batch: int):
    shapes = {n: tuple(v.shape[1:]) for n, v in inputs.items()}
    bundle = compile_ir(ir, cfg, batch, shapes, _graph(shapes))
    vals = {n: torch.from_numpy(v) for n, v in inputs.items()}
    interpret(ir, vals)
    res = bundle.run([torch.from_numpy(v) for v in inputs.values()])
    assert res.run.status.ok
    for ref, got in zip(ir.outputs, res.int_outputs, strict=True):
        want = vals[ref.source]
        assert got.shape == want.shape
        assert torch.equal(got, want), f"{int((got != want).sum())} mismatches"
    return bundle


def _node(name, shape, passes, *, n, rng, bias=True, table=None, out_bits=8, row_scale=None,
          split_out=False, shift_max=14):
    mult = None if row_scale is not None else rng.integers(1, 1 << 15, (1, n))
    shift = (np.asarray(rng.integers(4, shift_max)) if row_scale is not None
             else rng.integers(0, shift_max, (1, n)))
    return IntNode(name, f"m.{name}", "aten.test", shape, passes,
                   rng.integers(-5000, 5000, (1, n)) if bias else None, mult, shift, row_scale,
                   table or PwlTable.identity(), out_bits, split_out)


def _table(rng, cfg, kind):
    if kind == "identity":
        return PwlTable.identity()
    if kind == "relu":
        return PwlTable.relu()
    return random_pwl_table(rng, int(rng.integers(2, cfg.pwl_segments + 1)))


@pytest.mark.parametrize("cfgname", CONFIGS)
@_SETTINGS
@given(data=st.data())
def test_gemm_node_bit_exact(cfgname, data):
    cfg = preset(cfgname)
    m, k, n = (data.draw(_dims(cfg)) for _ in range(3))
    batch = data.draw(st.sampled_from([1, 2]))
    kind = data.draw(st.sampled_from(["identity", "relu", "random"]))
    out_bits = data.draw(st.sampled_from([8, 32]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (batch, m, k))
    w = rng.integers(-128, 128, (k, n))
    node = _node("y", (m, n), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                        Operand(const=w, const_name="w"))],
                 n=n, rng=rng, table=_table(rng, cfg, kind), out_bits=out_bits)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "y": 1.0}, {"x": 8, "y": out_bits},
                  [TensorRef("y", (m, n))])
    _check(ir, {"x": x}, cfg, batch)


@pytest.mark.parametrize("cfgname", CONFIGS)
@_SETTINGS
@given(data=st.data())
def test_sixteen_bit_operand_and_bias_after_x256(cfgname, data):
    """A producer splits its int32 result into hi/lo planes; the consumer runs hi GEMMs, the
    x256 epilogue, lo GEMMs with the bias (ACCUMULATE_BIAS) and a second int8 term before the
    shift."""
    cfg = preset(cfgname)
    m, k, n = (data.draw(_dims(cfg)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (1, m, k))
    w0 = rng.integers(-128, 128, (k, k))
    prod = _node("h", (m, k), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                        Operand(const=w0, const_name="w0"))],
                 n=k, rng=rng, out_bits=16, split_out=True, shift_max=8)
    w1 = rng.integers(-128, 128, (k, n))
    w2 = rng.integers(-128, 128, (k, n))
    h = TensorRef("h", (m, k))
    passes = [GemmPass(Operand(ref=h, plane="hi"), Operand(const=w1, const_name="w1"), "pre"),
              GemmPass(Operand(ref=TensorRef("x", (m, k))), Operand(const=w2, const_name="w2"),
                       "pre"),
              GemmPass(Operand(ref=h, plane="lo"), Operand(const=w1, const_name="w1"), "post")]
    cons = _node("y", (m, n), passes, n=n, rng=rng, table=_table(rng, cfg, "random"),
                 shift_max=24)
    ir = IntGraph([prod, cons], {"x": 1.0}, {"x": 1.0, "h": 1.0, "y": 1.0},
                  {"x": 8, "h": 16, "y": 8}, [TensorRef("y", (m, n)), h], wide=["h"])
    _check(ir, {"x": x}, cfg, 1)


@pytest.mark.parametrize("cfgname", CONFIGS)
@_SETTINGS
@given(data=st.data())
def test_row_scale_and_data_weights(cfgname, data):
    """A 16-bit row vector written by one node scales the rows of another (EPI dest SCALE then
    scale_mode ROW); the second node's weights are data, read plainly and transposed."""
    cfg = preset(cfgname)
    m, k, n = (data.draw(_dims(cfg)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (1, m, k))
    z = rng.integers(-128, 128, (1, k, n))
    yt = rng.integers(-128, 128, (1, n, k))
    ones = np.ones((k, 1), dtype=np.int64)
    rs = _node("r", (m, 1), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                      Operand(const=ones, const_name="ones"))],
               n=1, rng=rng, out_bits=16, bias=False)
    rref = TensorRef("r", (m, 1))
    xz = [GemmPass(Operand(ref=TensorRef("x", (m, k))), Operand(ref=TensorRef("z", (k, n)))),
          GemmPass(Operand(ref=TensorRef("x", (m, k))),
                   Operand(ref=TensorRef("yt", (n, k), (Permute((1, 0)),))))]
    y = _node("y", (m, n), xz, n=n, rng=rng, table=_table(rng, cfg, "random"), row_scale=rref,
              shift_max=30)
    ir = IntGraph([rs, y], {"x": 1.0, "z": 1.0, "yt": 1.0}, {"x": 1.0, "r": 1.0, "y": 1.0,
                                                           "z": 1.0, "yt": 1.0},
                  {"x": 8, "r": 16, "y": 8, "z": 8, "yt": 8}, [TensorRef("y", (m, n))])
    _check(ir, {"x": x, "z": z, "yt": yt}, cfg, 1)


@pytest.mark.parametrize("cfgname", ["tiny", "ecp5"])
def test_more_tables_than_slots_are_reloaded(cfgname):
    cfg = preset(cfgname)
    rng = np.random.default_rng(3)
    m = k = cfg.rows + 1
    nodes, src = [], "x"
    for i in range(cfg.pwl_functions + 4):
        w = rng.integers(-128, 128, (k, k))
        nodes.append(_node(f"n{i}", (m, k), [GemmPass(Operand(ref=TensorRef(src, (m, k))),
                                                      Operand(const=w, const_name=f"w{i}"))],
                           n=k, rng=rng, table=_table(rng, cfg, "random"), shift_max=20))
        src = f"n{i}"
    ir = IntGraph(nodes, {"x": 1.0}, {"x": 1.0} | {n.name: 1.0 for n in nodes},
                  {"x": 8} | {n.name: 8 for n in nodes}, [TensorRef(src, (m, k))])
    bundle = _check(ir, {"x": rng.integers(-128, 128, (1, m, k))}, cfg, 1)
    loads = [i for i in bundle.program.instructions if type(i).__name__ == "Loadt"
             and i.kind.name == "PWL"]
    assert len(loads) > cfg.pwl_functions


def test_split_output_needs_square_array_names_node_and_config():
    cfg = preset("tiny").replace(cols=8)
    rng = np.random.default_rng(0)
    node = _node("h", (4, 4), [GemmPass(Operand(ref=TensorRef("x", (4, 4))),
                                        Operand(const=np.eye(4, dtype=np.int64)))],
                 n=4, rng=rng, out_bits=16, split_out=True)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "h": 1.0}, {"x": 8, "h": 16},
                  [TensorRef("h", (4, 4))])
    with pytest.raises(CompileError, match=r"node h \(module m\.h.*rows == cols.*config 4x8"):
        compile_ir(ir, cfg, 1, {"x": (4, 4)}, _graph({"x": (4, 4)}))


@pytest.mark.parametrize("cfgname", CONFIGS)
def test_all_zero_weight_blocks_are_skipped(cfgname):
    """A block-diagonal constant (residual identities, LayerNorm diagonals) issues one weight
    block per column tile, and still equals the interpreter."""
    cfg = preset(cfgname)
    r = cfg.rows
    m, k = 2 * r + 1, 4 * r
    rng = np.random.default_rng(1)
    w = np.diag(rng.integers(-128, 128, k))
    node = _node("y", (m, k), [GemmPass(Operand(ref=TensorRef("x", (m, k))),
                                        Operand(const=w, const_name="diag"))], n=k, rng=rng)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "y": 1.0}, {"x": 8, "y": 8},
                  [TensorRef("y", (m, k))])
    bundle = _check(ir, {"x": rng.integers(-128, 128, (1, m, k))}, cfg, 1)
    res = bundle.run([torch.from_numpy(rng.integers(-128, 128, (1, m, k)))])
    assert res.run.macs == m * cfg.rows * cfg.cols * (k // cfg.cols)


def _variance_graph(cfg, rng, tokens: int, k: int, var_is_output: bool = False, batch=1):
    """LayerNorm's shape: a 16-bit centred tensor ``xc`` (split into hi/lo planes), the per-row
    self-products ``xc_i . xc_i`` (three passes over reshaped views, one scalar epilogue, int16
    out) and a node scaled per row by them."""
    x = rng.integers(-128, 128, (batch, tokens, k))
    w0 = rng.integers(-128, 128, (k, k))
    xc = _node("xc", (tokens, k), [GemmPass(Operand(ref=TensorRef("x", (tokens, k))),
                                            Operand(const=w0, const_name="w0"))],
               n=k, rng=rng, out_bits=16, split_out=True, shift_max=8)
    row = TensorRef("xc", (tokens, k), (Reshape((tokens, 1, k)),))
    col = TensorRef("xc", (tokens, k), (Reshape((tokens, k, 1)),))
    passes = [GemmPass(Operand(ref=row, plane="hi"), Operand(ref=col, plane="hi"), "pre"),
              GemmPass(Operand(ref=row, plane="hi"), Operand(ref=col, plane="lo"), "post"),
              GemmPass(Operand(ref=row, plane="lo"), Operand(ref=col, plane="hi"), "post")]
    var = IntNode("var", "m.ln", "aten.layer_norm", (tokens, 1, 1), passes, None,
                  np.full((1, 1), 3), np.full((1, 1), 22), None, random_pwl_table(rng, 8), 16)
    vref = TensorRef("var", (tokens, 1, 1), (Reshape((tokens, 1)),))
    w1 = rng.integers(-128, 128, (k, k))
    y = _node("y", (tokens, k), [GemmPass(Operand(ref=TensorRef("x", (tokens, k))),
                                          Operand(const=w1, const_name="w1"))],
              n=k, rng=rng, row_scale=vref, shift_max=30)
    outs = [TensorRef("y", (tokens, k))] + ([TensorRef("var", (tokens, 1, 1))]
                                            if var_is_output else [])
    ir = IntGraph([xc, var, y], {"x": 1.0}, {"x": 1.0, "xc": 1.0, "var": 1.0, "y": 1.0},
                  {"x": 8, "xc": 16, "var": 16, "y": 8}, outs, wide=["xc"])
    return ir, x


@pytest.mark.parametrize("cfgname", CONFIGS)
@pytest.mark.parametrize("var_is_output", [False, True])
def test_row_self_products_run_batched(cfgname, var_is_output):
    """Per-row self-products (LayerNorm's variance) run as one ``C x C`` problem per ``C`` rows
    whose diagonal is the result (its placement addresses the diagonal); as a graph output they
    keep the per-row problems (the host reads outputs row-major)."""
    cfg = preset(cfgname)
    rng = np.random.default_rng(5)
    tokens, k = 2 * cfg.cols + 3, 3 * cfg.rows + 1
    batch = 2 if cfgname == "tiny" else 1
    ir, x = _variance_graph(cfg, rng, tokens, k, var_is_output, batch)
    bundle = _check(ir, {"x": x}, cfg, batch)
    info = {n["name"]: n for n in bundle.manifest["nodes"]}["var"]
    assert info["self_products"] is (not var_is_output)
    if not var_is_output:
        assert info["G"] == -(-tokens * bundle.batch // cfg.cols)
