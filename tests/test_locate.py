"""First-mismatch locator (compiler/backend/locate.py) and the debug/profile compile modes.

The zoo MLP on ``tiny`` (batch 2): a debug compile keeps every node's output in DRAM; the golden
model's run equals the integer executor node by node; injected faults (a weight byte, a PWL
table's intercepts, one byte of a node's output) are located at the node that first computes
them, with its instruction range, element, STORE and tile.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from compiler.backend import CompileError, compile
from compiler.backend.locate import locate, node_output, reference_values
from compiler.convert import convert
from compiler.zoo import load
from hw.config import preset
from hw.isa import PWL_HEADER_BYTES, Load, Loadt, Store, TableKind
from nmx.commands.compile import sample_inputs
from sim.golden import GoldenModel

BATCH = 2


@functools.cache
def _setup():
    zm = load("mlp")
    cm = convert(zm.model, zm.example_inputs, zm.calibration)
    samples = sample_inputs(zm, cm, BATCH)
    bundle = compile(cm, preset("tiny"), batch=BATCH, name="mlp", mode="debug")
    q = bundle.quantize_inputs(samples)
    return cm, samples, bundle, q, reference_values(bundle, q)


def _run(bundle, q, image=None):
    img = bundle.image_for(q) if image is None else image
    res = GoldenModel(bundle.config).run(bundle.program, img)
    assert res.ok, res.status
    return res


def _node_range(bundle, k):
    s, e = bundle.manifest["nodes"][k]["words"]
    return bundle.program.instructions[s:e]


def test_golden_equals_the_integer_executor_at_every_node():
    cm, samples, bundle, q, ref = _setup()
    res = _run(bundle, q)
    assert locate(bundle, res.dram, ref) is None
    # the debug compile computes what the normal one does
    outs, _ints = bundle.read_outputs(res.dram)
    for got, want in zip(outs, cm.run_samples(samples, "int"), strict=True):
        assert torch.equal(got, want)
    for name, planes in ref.items():
        got = node_output(bundle, res.dram, name)
        assert got.keys() == planes.keys()
        for plane, v in planes.items():
            assert np.array_equal(got[plane], v), (name, plane)


def test_a_corrupted_weight_byte_is_located_at_its_node():
    _cm, _samples, bundle, q, ref = _setup()
    k = 1
    name = bundle.manifest["nodes"][k]["name"]
    region = bundle.image.regions[f"{name}.p0.b"]
    loads = [i for i in _node_range(bundle, k) if isinstance(i, Load)
             and region.addr <= i.offset < region.end]
    assert loads, "node 1 loads its weights from its constant region"
    img = bundle.image_for(q)
    img.data[loads[0].offset] ^= 0x80  # flip the sign bit of the first weight byte loaded
    m = locate(bundle, _run(bundle, q, img).dram, ref)
    assert m is not None
    assert (m.node, m.node_index, m.words) == (name, k, tuple(bundle.manifest["nodes"][k]["words"]))
    assert m.got != m.want and m.differing >= 1
    s, e = m.words
    assert s <= m.store_word < e
    assert isinstance(bundle.program.instructions[m.store_word], Store)
    assert name in str(m) and f"[{s}, {e})" in str(m)


def test_a_corrupted_pwl_table_is_located_at_its_first_user():
    _cm, _samples, bundle, q, ref = _setup()
    seg = bundle.config.pwl_segments
    for k in range(len(bundle.manifest["nodes"])):
        tables = [i for i in _node_range(bundle, k)
                  if isinstance(i, Loadt) and i.kind == TableKind.PWL]
        if tables:
            break
    else:
        pytest.fail("no node loads a PWL table")
    img = bundle.image_for(q)
    base = tables[0].offset
    shift = int(img.data[base])
    icpt = base + PWL_HEADER_BYTES + 4 * (seg - 1) + 2 * seg
    vals = img.data[icpt : icpt + 4 * seg].view("<i4").astype(np.int64)
    vals += 7 << min(shift, 24)
    img.data[icpt : icpt + 4 * seg] = np.clip(vals, -(2**31), 2**31 - 1).astype("<i4").view(
        np.uint8)
    m = locate(bundle, _run(bundle, q, img).dram, ref)
    assert m is not None and (m.node, m.node_index) == (bundle.manifest["nodes"][k]["name"], k)
    assert m.tile["column tile"] == m.index[-1] // bundle.config.cols


def test_dram_against_dram_names_node_element_and_store():
    """The RTL-vs-golden form: two final images; one output byte of node j changed."""
    _cm, _samples, bundle, q, _ref = _setup()
    good = _run(bundle, q).dram
    nodes = bundle.manifest["nodes"]
    j = len(nodes) - 1
    spec = bundle.manifest["node_outputs"][nodes[j]["name"]]
    plane, base = next(iter(spec["planes"].items()))
    n_el = BATCH * int(np.prod(spec["shape"]))
    el = n_el // 2 + 1
    addr = base + el * spec["esize"]
    bad = good.copy()
    bad.data[addr] ^= 0x01
    m = locate(bundle, bad, good)
    assert m is not None and (m.node, m.plane, m.address) == (nodes[j]["name"], plane, addr)
    assert m.differing == 1 and m.index == tuple(
        int(x) for x in np.unravel_index(el, (BATCH, *spec["shape"])))
    assert abs(m.got - m.want) == 1
    s, e = m.words
    st = bundle.program.instructions[m.store_word]
    assert s <= m.store_word < e and isinstance(st, Store)
    assert st.offset <= addr
    assert locate(bundle, good, good.data.tobytes()) is None


def test_a_program_compile_cannot_be_located():
    cm, _samples, _bundle, _q, _ref = _setup()
    plain = compile(cm, preset("tiny"), batch=BATCH, name="mlp")
    with pytest.raises(CompileError, match="mode='debug'"):
        locate(plain, plain.image, plain.image)


def test_profile_compile_runs_node_by_node_to_the_same_result():
    cm, samples, _bundle, _q, _ref = _setup()
    prof = compile(cm, preset("tiny"), batch=BATCH, name="mlp", mode="profile")
    assert prof.program is None
    assert [n for n, _p in prof.node_programs] == [n["name"] for n in prof.manifest["nodes"]]
    res = prof.run(samples)
    for got, want in zip(res.outputs, cm.run_samples(samples, "int"), strict=True):
        assert torch.equal(got, want)
    with pytest.raises(CompileError, match="profile"):
        prof.save("/nonexistent/never-written")
    with pytest.raises(ValueError, match="compile mode 'fast' unknown"):
        compile(cm, preset("tiny"), batch=1, mode="fast")
