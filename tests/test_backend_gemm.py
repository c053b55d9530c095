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


def _check(ir: IntGraph, inputs: dict[str, np.ndarray], cfg, batch: int, retile=True):
    shapes = {n: tuple(v.shape[1:]) for n, v in inputs.items()}
    bundle = compile_ir(ir, cfg, batch, shapes, _graph(shapes), retile=retile)
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


def test_split_output_needs_rows_at_least_cols_names_node_and_config():
    cfg = preset("tiny").replace(cols=8)
    rng = np.random.default_rng(0)
    node = _node("h", (4, 4), [GemmPass(Operand(ref=TensorRef("x", (4, 4))),
                                        Operand(const=np.eye(4, dtype=np.int64)))],
                 n=4, rng=rng, out_bits=16, split_out=True)
    ir = IntGraph([node], {"x": 1.0}, {"x": 1.0, "h": 1.0}, {"x": 8, "h": 16},
                  [TensorRef("h", (4, 4))])
    with pytest.raises(CompileError,
                       match=r"node h \(module m\.h.*rows >= cols \(have 4x8\).*config 4x8"):
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


def _chain(rng, m, k, depth, split_first=False):
    """``x -> n0 -> n1 -> ...``: each node a GEMM of the previous output with a constant; the
    first optionally a 16-bit split output read by hi and lo passes."""
    nodes, src, planes = [], "x", False
    for i in range(depth):
        w = rng.integers(-128, 128, (k, k))
        ref = TensorRef(src, (m, k))
        if planes:
            passes = [GemmPass(Operand(ref=ref, plane="hi"), Operand(const=w, const_name="w"),
                               "pre"),
                      GemmPass(Operand(ref=ref, plane="lo"), Operand(const=w, const_name="w"))]
        else:
            passes = [GemmPass(Operand(ref=ref), Operand(const=w, const_name=f"w{i}"))]
        split = split_first and i == 0
        nodes.append(_node(f"n{i}", (m, k), passes, n=k, rng=rng, out_bits=16 if split else 8,
                           split_out=split, shift_max=8 if split else 20,
                           table=PwlTable.relu() if i % 2 else None))
        src, planes = f"n{i}", split
    ir = IntGraph(nodes, {"x": 1.0}, {"x": 1.0} | {n.name: 1.0 for n in nodes},
                  {"x": 8} | {n.name: 16 if n.split_out else 8 for n in nodes},
                  [TensorRef(src, (m, k))], wide=["n0"] if split_first else [])
    return ir, rng.integers(-128, 128, (1, m, k))


def _outputs(bundle):
    return {n["name"]: n["output"] for n in bundle.manifest["nodes"]}


def _stores(bundle, name):
    s, e = {n["name"]: n["words"] for n in bundle.manifest["nodes"]}[name]
    return [i for i in bundle.program.instructions[s:e] if type(i).__name__ == "Store"]


@pytest.mark.parametrize("cfgname", CONFIGS)
@pytest.mark.parametrize("split_first", [False, True])
def test_activations_stay_on_chip_between_nodes(cfgname, split_first):
    """Intermediate activations read as plain left operands are written by the EPI into the
    scratchpad arena and read there by the next node's GEMMs: no STORE/LOAD pair, same
    integers; the graph output still goes to DRAM."""
    cfg = preset(cfgname)
    rng = np.random.default_rng(7)
    m, k = 2 * cfg.rows + 3, 2 * cfg.cols + 1
    ir, x = _chain(rng, m, k, 4, split_first)
    bundle = _check(ir, {"x": x}, cfg, 1)
    out = _outputs(bundle)
    assert out["n0"] == out["n1"] == out["n2"] == "scratchpad"
    assert out["n3"] == "DRAM: graph output"
    assert not _stores(bundle, "n0") and not _stores(bundle, "n1")
    assert _stores(bundle, "n3")


def test_activation_that_does_not_fit_goes_through_dram():
    """On tiny (1024 scratchpad rows, a 256-row arena) a 300x32 activation (8 column tiles x
    300 rows) does not fit: it is stored and loaded back, the report says why, and the result
    is the same."""
    cfg = preset("tiny")
    rng = np.random.default_rng(8)
    ir, x = _chain(rng, 300, 32, 3)
    small, xs = _chain(np.random.default_rng(8), 20, 8, 3)
    bundle = _check(ir, {"x": x}, cfg, 1)
    out = _outputs(bundle)
    assert out["n0"].startswith("DRAM: does not fit (1 x 2400 scratchpad rows")
    assert _stores(bundle, "n0")
    assert _outputs(_check(small, {"x": xs}, cfg, 1))["n0"] == "scratchpad"


def test_report_says_where_each_output_went():
    from compiler.backend.report import build_report

    cfg = preset("tiny")
    ir, x = _chain(np.random.default_rng(8), 300, 32, 2)
    bundle = compile_ir(ir, cfg, 1, {"x": x.shape[1:]}, _graph({"x": x.shape[1:]}))
    rep = build_report(bundle, bundle.run([torch.from_numpy(x)]).run)
    assert [n.output[:17] for n in rep.nodes] == ["DRAM: does not fi", "DRAM: graph outpu"]


NON_SQUARE = {"8x4": dict(rows=8), "4x8": dict(cols=8)}


@pytest.mark.parametrize("shape", sorted(NON_SQUARE))
def test_non_square_arrays(shape):
    """rows != cols: a left operand read transposed (columns are DRAM runs) is transposed on
    chip when rows <= cols (else read as narrow chunks), a 16-bit output is split when
    rows >= cols; activations go through DRAM (the report says why); all bit-exact."""
    cfg = preset("tiny").replace(**NON_SQUARE[shape])
    rng = np.random.default_rng(11)
    m, k, n = 2 * cfg.cols + 1, 3 * cfg.rows + 2, cfg.cols + 3
    xt = rng.integers(-128, 128, (1, k, m))
    a = TensorRef("xt", (m, k), (Permute((1, 0)),))
    w = rng.integers(-128, 128, (k, n))
    split = cfg.rows >= cfg.cols
    y = _node("y", (m, n), [GemmPass(Operand(ref=a), Operand(const=w, const_name="w"))], n=n,
              rng=rng, out_bits=16 if split else 8, split_out=split,
              shift_max=8 if split else 20)
    w2 = rng.integers(-128, 128, (n, n))
    yref = TensorRef("y", (m, n))
    passes = ([GemmPass(Operand(ref=yref, plane="hi"), Operand(const=w2), "pre"),
               GemmPass(Operand(ref=yref, plane="lo"), Operand(const=w2))] if split
              else [GemmPass(Operand(ref=yref), Operand(const=w2))])
    z = _node("z", (m, n), passes, n=n, rng=rng, shift_max=24)
    ir = IntGraph([y, z], {"xt": 1.0}, {"xt": 1.0, "y": 1.0, "z": 1.0},
                  {"xt": 8, "y": 16 if split else 8, "z": 8}, [TensorRef("z", (m, n))],
                  wide=["y"] if split else [])
    bundle = _check(ir, {"xt": xt}, cfg, 1)
    assert _outputs(bundle)["y"] == "DRAM: on-chip operand chunks need rows == cols"
    transposes = [i for i in bundle.program.instructions
                  if type(i).__name__ == "Gemm" and i.transpose]
    assert bool(transposes) is (cfg.rows <= cfg.cols)


@pytest.mark.parametrize("cfgname", ["tiny", "default"])
def test_reader_with_smaller_row_tiles_reads_resident_blocks_in_pieces(cfgname):
    """A resident producer written in tall row tiles, read by a row-scaled node whose row tiles
    are limited by the row-scale slots: kept as a first emission has it (``retile=False``),
    the reader's GEMMs cover each producer block piece by piece (one GEMM per piece, column tile
    and chunk); by default the program is emitted again with that activation in DRAM, and the
    report says why. Both bit-exact."""
    cfg = preset(cfgname)
    rng = np.random.default_rng(12)
    from compiler.backend.allocation import OnChip

    m = OnChip(cfg).rs_slot + 17  # more rows than a row-scale slot holds
    k = 2 * cfg.cols + 1
    x = rng.integers(-128, 128, (1, m, k))
    xref = TensorRef("x", (m, k))
    p = _node("p", (m, k), [GemmPass(Operand(ref=xref), Operand(const=rng.integers(
        -128, 128, (k, k)), const_name="wp"))], n=k, rng=rng, shift_max=20)
    ones = np.ones((k, 1), dtype=np.int64)
    r = _node("r", (m, 1), [GemmPass(Operand(ref=xref), Operand(const=ones))], n=1, rng=rng,
              out_bits=16, bias=False)
    q = _node("q", (m, k), [GemmPass(Operand(ref=TensorRef("p", (m, k))), Operand(
        const=rng.integers(-128, 128, (k, k)), const_name="wq"))], n=k, rng=rng,
        row_scale=TensorRef("r", (m, 1)), shift_max=30)
    ir = IntGraph([p, r, q], {"x": 1.0}, {"x": 1.0, "p": 1.0, "r": 1.0, "q": 1.0},
                  {"x": 8, "p": 8, "r": 16, "q": 8}, [TensorRef("q", (m, k))])
    pieces = _check(ir, {"x": x}, cfg, 1, retile=False)
    info = {n["name"]: n for n in pieces.manifest["nodes"]}
    assert info["p"]["output"] == "scratchpad"
    assert info["q"]["tiles"][1] < info["p"]["tiles"][1]
    retiled = _check(ir, {"x": x}, cfg, 1)
    info = {n["name"]: n for n in retiled.manifest["nodes"]}
    assert info["p"]["output"] == f"DRAM: q tiles its rows by {info['q']['tiles'][1]} (the " \
        f"producer by {m})"

    def gemms(bundle):
        s, e = {n["name"]: n["words"] for n in bundle.manifest["nodes"]}["q"]
        return [i for i in bundle.program.instructions[s:e] if type(i).__name__ == "Gemm"]

    assert len(gemms(retiled)) < len(gemms(pieces))
    assert all(g.k_tiles == 1 for g in gemms(pieces))
