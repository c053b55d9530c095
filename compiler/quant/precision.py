"""Per-tensor precision: which data tensors are held at 16 bits (``256 hi + lo``, two int8 GEMMs).

A tensor is chosen *wide* by setting its producing node's ``Epilogue.out_bits`` to 16; the
quantiser (:func:`compiler.quant.quantize.quantize_graph`) then treats every 16-bit node output
that a GEMM reads as a split operand (:mod:`compiler.quant.wide`). Because the choice lives in
the graph it survives copies of the graph (fine-tuning re-quantises the same choice).

Policies of ``convert(..., wide=...)``:

- ``"none"``: every GEMM operand int8 (the graph as lowered);
- an iterable of tensor names or :mod:`fnmatch` patterns (matched against node names and module
  paths): exactly those tensors; a name that cannot be 16-bit, or a pattern that matches no
  eligible tensor, is an error;
- ``"layernorm"``: every LayerNorm's input, centred tensor ``xc`` and output, and the
  activation (GELU, ReLU, ...) output that a projection into a LayerNorm's input reads (the FFN
  hidden layer) (:func:`layernorm_tensors`): the residual stream, the tensors whose int8
  rounding a LayerNorm amplifies by ``1/σ`` (its variance reads the ``hi`` halves of ``xc``), and
  the sublayer output whose small rows sit next to "massive-activation" rows; no search;
  measured on the zoo transformers (docs/transformers.md);
- ``"transformer"``: :func:`transformer_tensors` (no measurement);
- ``"auto"`` (the default of ``convert``): the ``"transformer"`` tensors, then a measured search
  (:func:`choose_wide`). The output error is measured in the integer executor against the float
  graph on calibration inputs; if it is within the budget nothing more changes. Otherwise every
  int8 candidate's contribution is measured (:func:`int8_errors`: the float graph with only that
  tensor on its int8 grid) and prefixes of that ranking are made 16-bit until the budget is met
  (or the best measured error is reached, or ``max_tensors``).

The output error is the mean over output rows (vectors along the last dim: tokens, samples'
logits) of ``1 - cosine`` to the float graph, the worst over the outputs.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from compiler.graph import MatrixGraph, TensorRef, Term
from compiler.quant.quantize import QuantizationError, quantize_graph
from compiler.quant.wide import (
    WEIGHT_SUFFIX,
    scale_group,
    weight_problem,
    weight_terms,
    wide_cost,
    wide_problem,
    wide_tensors,
    wide_weights,
)

__all__ = ["DEFAULT_BUDGET", "WIDE_POLICIES", "WideSearch", "choose_wide", "int8_errors",
           "layernorm_tensors", "output_error", "resolve_wide", "set_wide", "transformer_tensors",
           "weight_candidates", "wide_candidates", "wide_choices"]

#: Named policies of ``convert(..., wide=...)`` (besides an iterable of names/patterns).
WIDE_POLICIES = ("auto", "layernorm", "none", "transformer")
_LN_MEAN = re.compile(r"ln_mean(_\d+)?$")
_LN_CENTRED = re.compile(r"ln_centred(_\d+)?$")
_LN_NORM = re.compile(r"ln_norm(_\d+)?$")
_LN_AFFINE = re.compile(r"ln_affine(_\d+)?$")
_SM_EXP = re.compile(r"sm_exp(_\d+)?$")
#: PWL activation functions whose outputs the ``"layernorm"`` policy holds at 16 bits when they
#: feed a sublayer's output projection (the FFN hidden layer).
_ACTIVATIONS = ("elu", "gelu", "gelu_tanh", "hardsigmoid", "hardswish", "hardtanh", "leaky_relu",
                "relu", "relu6", "sigmoid", "silu", "softplus", "tanh")
#: Default output-error budget of ``"auto"``: mean per-row ``1 - cosine`` (0.999 mean cosine).
DEFAULT_BUDGET = 1e-3
#: A candidate must lower the error by at least this fraction to be kept.
_MIN_GAIN = 0.02


def wide_candidates(graph: MatrixGraph) -> list[str]:
    """int8 graph inputs and node outputs that could be held at 16 bits
    (see :func:`compiler.quant.wide.wide_problem`);
    a scale group (:func:`compiler.quant.wide.scale_group`) is listed once, by its root."""
    return [i.name for i in graph.inputs
            if i.bits == 8 and wide_problem(graph, i.name) is None] + [
        n.name for n in graph.nodes
        if n.epilogue.out_bits == 8 and n.epilogue.scale_like is None
        and wide_problem(graph, n.name) is None]


def weight_candidates(graph: MatrixGraph) -> list[str]:
    """``"<node>:weights"`` for every node with an int8 weight that could be 16-bit
    (:func:`compiler.quant.wide.weight_terms`), in graph order."""
    return [n.name + WEIGHT_SUFFIX for n in graph.nodes
            if any(n.terms[i].const_bits == 8 for i in weight_terms(graph, n))]


def wide_choices(graph: MatrixGraph) -> list[str]:
    """Everything held at 16 bits in ``graph``: tensors, then ``"<node>:weights"`` names."""
    return wide_tensors(graph) + wide_weights(graph)


def layernorm_tensors(graph: MatrixGraph, *, any_width: bool = False) -> list[str]:
    """The ``"layernorm"`` policy: around every LayerNorm, its input (the tensor its ``ln_mean``
    node averages), its centred values (``ln_centred``) and its output (``ln_affine``, or
    ``ln_norm`` without an affine step): the transformer's residual stream; and the outputs of
    activation nodes (:data:`_ACTIVATIONS`) read by a node outside the stream whose output a
    stream node reads (a sublayer's output projection): the FFN hidden layer, ``fc1``'s output
    in ``x + fc2(gelu(fc1(x)))``. Only tensors that can be 16-bit (an int32 network output
    cannot), in graph order; with ``any_width`` every node the rule names, whatever its
    current width (the structural set, e.g. after the tensors were made 16-bit).
    """
    eligible = _eligible(graph, any_width)
    affine_inputs = {t.a.source for n in graph.nodes if _LN_AFFINE.match(n.name)
                     for t in n.terms}
    chosen = set()
    for n in graph.nodes:
        if _LN_MEAN.match(n.name):
            chosen |= {t.a.source for t in n.terms}
        elif (_LN_CENTRED.match(n.name) or _LN_AFFINE.match(n.name)
              or (_LN_NORM.match(n.name) and n.name not in affine_inputs)):
            chosen.add(n.name)
    nodes = {n.name: n for n in graph.nodes}
    ln_stream = set(chosen)
    for n in graph.nodes:
        if n.name not in ln_stream:
            continue
        for t in n.terms:  # a sublayer's output projection accumulating into the stream
            proj = nodes.get(t.a.source)
            if proj is None or proj.name in ln_stream:
                continue
            for u in proj.terms:  # ... that reads an activation (the FFN hidden layer)
                hidden = nodes.get(u.a.source)
                if hidden is not None and hidden.epilogue.function in _ACTIVATIONS:
                    chosen.add(hidden.name)
    return [n.name for n in graph.nodes if n.name in chosen and n.name in eligible]


def _data_sources(graph: MatrixGraph, node) -> list[str]:
    return [r.source for t in node.terms for r in (t.a, t.b) if not graph.is_const(r)]


def _eligible(graph: MatrixGraph, any_width: bool) -> set[str]:
    return {n.name for n in graph.nodes} if any_width else set(wide_candidates(graph))


def transformer_tensors(graph: MatrixGraph, *, any_width: bool = False) -> list[str]:
    """The ``"transformer"`` policy: :func:`layernorm_tensors`, and

    - every LayerNorm's normalised values (``ln_norm``, which the affine step reads);
    - the producers of every LayerNorm input outside the residual stream (a sublayer's output
      projection, the embedding sum), and before them the lookups that read only graph inputs
      or host results (one-hot embedding GEMMs);
    - around every softmax exp (``sm_exp``): the scores with their max tree (one scale group),
      both operands of the score GEMM (queries and keys) and the key tensor a masked-key
      selection (``Selᵀ k``) reads, the exp output, and the row-scaled ``P·V`` products that
      read it.

    The values stay int8. Measured on the zoo transformers in docs/transformers.md; models
    without LayerNorm and softmax get no 16-bit tensor. ``any_width``: as in
    :func:`layernorm_tensors`.
    """
    eligible = _eligible(graph, any_width)
    nodes = {n.name: n for n in graph.nodes}
    stream = set(layernorm_tensors(graph, any_width=any_width))
    chosen = set(stream)
    chosen |= {n.name for n in graph.nodes if _LN_NORM.match(n.name)}
    ln_inputs = {t.a.source for n in graph.nodes if _LN_MEAN.match(n.name) for t in n.terms}
    for name in ln_inputs:
        node = nodes.get(name)
        if node is None:
            continue
        for src in _data_sources(graph, node):
            producer = nodes.get(src)
            if producer is None or producer.name in stream:
                continue
            chosen.add(producer.name)
            for src2 in _data_sources(graph, producer):
                lookup = nodes.get(src2)
                if lookup is not None and all(graph.kind_of(x) in ("input", "host")
                                              for x in _data_sources(graph, lookup)):
                    chosen.add(lookup.name)
    for e in graph.nodes:
        if not _SM_EXP.match(e.name):
            continue
        chosen.add(e.name)
        scores = nodes.get(e.terms[0].a.source)
        if scores is None:
            continue
        root = nodes[scale_group(graph, scores.name)[0]]
        chosen.add(root.name)
        for t in root.terms:
            if graph.is_const(t.a) or graph.is_const(t.b):
                continue
            for src in (t.a.source, t.b.source):
                chosen.add(src)
                sel = nodes.get(src)
                if sel is not None and len(sel.terms) == 1 and sel.epilogue.function is None:
                    chosen.update(_data_sources(graph, sel))
        for n in graph.nodes:
            if n.epilogue.row_scale is not None and e.name in _data_sources(graph, n):
                chosen.add(n.name)
    return [n.name for n in graph.nodes if n.name in chosen and n.name in eligible]


def resolve_wide(graph: MatrixGraph, spec: Iterable[str]) -> list[str]:
    """Tensor names selected by ``spec`` (names or fnmatch patterns over names and modules)."""
    if isinstance(spec, str):
        raise ValueError(f"wide={spec!r}: use 'auto', 'none' or an iterable of tensor names or "
                         "patterns")
    chosen: list[str] = []
    eligible = set(wide_candidates(graph))
    for item in spec:
        if item.endswith(WEIGHT_SUFFIX):
            chosen += [h for h in _resolve_weights(graph, item) if h not in chosen]
            continue
        if any(c in item for c in "*?["):
            hits = [n.name for n in graph.nodes if n.name in eligible and (
                fnmatch.fnmatchcase(n.name, item) or fnmatch.fnmatchcase(n.module, item))]
            if not hits:
                raise QuantizationError(f"wide pattern {item!r} matches no tensor that can be "
                                        f"16-bit; candidates: {', '.join(sorted(eligible))}")
        else:
            problem = wide_problem(graph, item)
            if problem is not None:
                raise QuantizationError(f"tensor {item!r} cannot be a 16-bit GEMM operand: "
                                        f"{problem}")
            hits = [item]
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _resolve_weights(graph: MatrixGraph, item: str) -> list[str]:
    """``"<node or pattern>:weights"`` -> the weight choices it names."""
    base = item[: -len(WEIGHT_SUFFIX)]
    if not any(c in base for c in "*?["):
        problem = weight_problem(graph, item)
        if problem is not None:
            raise QuantizationError(f"{item!r} cannot have 16-bit weights: {problem}")
        return [item]
    hits = [n.name + WEIGHT_SUFFIX for n in graph.nodes if weight_terms(graph, n) and (
        fnmatch.fnmatchcase(n.name, base) or fnmatch.fnmatchcase(n.module, base))]
    if not hits:
        raise QuantizationError(f"weight pattern {item!r} matches no node with a weight that "
                                "int8 cannot hold exactly")
    return hits


def set_wide(graph: MatrixGraph, names: Iterable[str], wide: bool = True) -> None:
    """Mark (``wide=True``) or unmark the producers of ``names``, each with its scale group
    (:func:`compiler.quant.wide.scale_group`), as 16-bit (``out_bits``); a name
    ``"<node>:weights"`` marks that node's weights (:attr:`compiler.graph.Term.const_bits`)."""
    for name in names:
        if name.endswith(WEIGHT_SUFFIX):
            node = graph.node(name[: -len(WEIGHT_SUFFIX)])
            for i in weight_terms(graph, node):
                node.terms[i].const_bits = 16 if wide else 8
            continue
        if graph.kind_of(name) == "input":
            next(i for i in graph.inputs if i.name == name).bits = 16 if wide else 8
            continue
        for member in scale_group(graph, name):
            ep = graph.node(member).epilogue
            if wide and ep.out_bits == 8:
                ep.out_bits = 16
            elif not wide and ep.out_bits == 16:
                ep.out_bits = 8


def output_error(outs: list[torch.Tensor], refs: list[torch.Tensor]) -> float:
    """Worst over outputs of the mean over rows (last dim) of ``1 - cosine`` to ``refs``."""
    worst = 0.0
    for o, r in zip(outs, refs, strict=True):
        o = o.double().reshape(-1, o.shape[-1] if o.ndim else 1)
        r = r.double().reshape(-1, r.shape[-1] if r.ndim else 1)
        cos = torch.nn.functional.cosine_similarity(o, r, dim=-1, eps=1e-30)
        both_zero = (o.abs().amax(-1) == 0) & (r.abs().amax(-1) == 0)
        cos = torch.where(both_zero, torch.ones_like(cos), cos)
        worst = max(worst, float((1 - cos).mean()))
    return worst


@dataclass
class WideSearch:
    """What :func:`choose_wide` measured.

    ``budget``: the output-error target; ``max_tensors``: the most tensors the search may add
    (None: no limit); ``prior``: tensors 16-bit before the search (the ``"transformer"``
    policy's); ``baseline``/``final``: output error before the search / with ``chosen`` added;
    ``floor``: the error with every candidate 16-bit (``nan`` when the baseline met the budget);
    ``int8_error``: per candidate, the output error of the float graph with only that tensor
    (its scale group) rounded to its int8 grid: its measured contribution, the search's ranking;
    ``steps``: (tensors 16-bit so far, error measured with them); ``seconds``: search time.
    """

    budget: float
    baseline: float
    final: float
    max_tensors: int | None = None
    prior: list[str] = field(default_factory=list)
    floor: float = float("nan")
    chosen: list[str] = field(default_factory=list)
    int8_error: dict[str, float] = field(default_factory=dict)
    steps: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    cost: list[dict] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """Whether the final error is within the budget."""
        return self.final <= self.budget


def _dependants(graph: MatrixGraph) -> dict[str, list[int]]:
    """Per tensor, the indices of the nodes that read it (operands or row scale)."""
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        srcs = {r.source for t in n.terms for r in (t.a, t.b)}
        if n.epilogue.row_scale is not None:
            srcs.add(n.epilogue.row_scale.source)
        for s in srcs:
            readers.setdefault(s, []).append(i)
    return readers


def _int8_weights(cm, name: str):
    """A copy of node ``name`` whose weight terms read their int8 values as ``cm.quant``
    quantises them (other constants exact), and the constants it reads (the graph's, plus
    those values), for :func:`int8_errors`."""
    import copy

    graph = cm.graph
    node = graph.node(name)
    nq = cm.quant.nodes[name]
    twin = copy.copy(node)
    twin.terms = list(node.terms)
    consts = dict(graph.constants)
    for i in weight_terms(graph, node):
        t, tq = node.terms[i], nq.terms[i]
        side = "a" if graph.is_const(t.a) else "b"
        q, step = (tq.a_int, tq.a_scale) if side == "a" else (tq.b_int, tq.b_scale)
        orig = graph.const_value(t.a if side == "a" else t.b)
        value = (q.double() * torch.as_tensor(np.asarray(step, dtype=np.float64))).to(orig.dtype)
        key = f"{name}.t{i}.{side}.int8"
        consts[key] = value
        ref = TensorRef(key, tuple(value.shape))
        twin.terms[i] = Term(ref, t.b, t.clamp) if side == "a" else Term(t.a, ref, t.clamp)
    return twin, consts


def int8_errors(cm, samples: list[torch.Tensor], candidates: list[str],
                refs: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Output error (:func:`output_error`) of the *float* graph on ``samples`` with one
    candidate tensor at a time (with its scale group) rounded and saturated to its int8 grid
    (``cm.quant``'s scale), everything else exact: what holding that tensor at int8 costs at the
    output, apart from every other source. Only the nodes downstream of the candidate are
    recomputed."""
    from compiler.execute import _float_node, _fq, _get, run

    graph = cm.graph
    consts = graph.constants
    outs, base = run(graph, samples, "float", keep=True)
    refs = outs if refs is None else refs
    readers = _dependants(graph)
    index = {n.name: i for i, n in enumerate(graph.nodes)}
    res: dict[str, float] = {}
    with torch.no_grad():
        for c in candidates:
            vals = dict(base)
            if c.endswith(WEIGHT_SUFFIX):
                group = [c[: -len(WEIGHT_SUFFIX)]]
                twin, twin_consts = _int8_weights(cm, group[0])
                vals[group[0]] = _float_node(graph, twin, vals, twin_consts, "float", None,
                                             None)
            else:
                group = scale_group(graph, c)
                for m in group:
                    vals[m] = _fq(base[m], cm.quant.scales[m], 8)
            dirty = set(group)
            todo = sorted({j for m in group for j in readers.get(m, [])})
            start = min([index[m] for m in group if m in index] + todo) if todo else len(
                graph.nodes)
            for node in graph.nodes[start:]:
                if node.name in dirty:
                    continue
                srcs = {r.source for t in node.terms for r in (t.a, t.b)}
                if node.epilogue.row_scale is not None:
                    srcs.add(node.epilogue.row_scale.source)
                if srcs & dirty:
                    vals[node.name] = _float_node(graph, node, vals, consts, "float", None, None)
                    dirty.add(node.name)
            got = [_get(graph, o, vals, consts) for o in graph.outputs]
            res[c] = output_error(got, refs)
    return res


def choose_wide(cm, samples: list[torch.Tensor], *, budget: float = DEFAULT_BUDGET,
                candidates: list[str] | None = None, fit_cache: dict | None = None,
                max_tensors: int | None = None, weights: bool = True) -> WideSearch:
    """Measured per-tensor precision search on sample-stacked ``samples``.

    1. The integer executor's output error (:func:`output_error` against the float graph) with
       the tensors already 16-bit in ``cm.graph`` (the prior). Within ``budget``: done.
    2. Every int8 candidate's measured contribution (:func:`int8_errors`): the float graph with
       only that tensor on its int8 grid. Candidates are ranked by it (largest first); those
       costing nothing (``< 1e-9``) are dropped.
    3. Prefixes of the ranking are made 16-bit, doubling in size (1, 2, 4, ... tensors, at
       most ``max_tensors``), each measured in the integer executor, until one meets the
       budget; bisection between it and the previous prefix then finds the shortest prefix
       that meets it. If none does, the shortest measured prefix whose error is within 2 % of
       the best one is kept (one sample set's error is noisy: a prefix can measure worse than
       a shorter one). A tensor whose 16-bit operand would overflow a reader's accumulator is
       skipped.

    About ``2 log2(candidates)`` integer runs. Leaves ``cm.graph`` marked with the chosen tensors
    and ``cm.quant`` quantised for them. ``fit_cache`` (:func:`compiler.quant.quantize.
    quantize_graph`'s) reuses the PWL fits of an earlier quantisation with the same statistics.
    """
    if max_tensors is not None and max_tensors < 0:
        raise ValueError(f"max_tensors must be >= 0, got {max_tensors}")
    t0 = time.perf_counter()
    graph = cm.graph
    fit_cache = {} if fit_cache is None else fit_cache
    prior = wide_tensors(graph)

    def quantise():
        return quantize_graph(graph, cm.stats, fit_cache=fit_cache, segments=cm.segments,
                              clipping=cm.clipping)

    with torch.no_grad():
        refs = cm.run_samples(samples, "float")

        def measure() -> float:
            try:
                cm.quant = quantise()
                return output_error(cm.run_samples(samples, "int"), refs)
            except QuantizationError:
                return float("inf")

        base = measure()
        search = WideSearch(budget=budget, baseline=base, final=base, max_tensors=max_tensors,
                            prior=prior)
        if base <= budget or max_tensors == 0:
            search.seconds = time.perf_counter() - t0
            return search
        if candidates is None:
            cands = wide_candidates(graph) + (weight_candidates(graph) if weights else [])
        else:
            cands = list(candidates)
        search.int8_error = int8_errors(cm, samples, cands, refs)
        order = sorted((c for c in cands if search.int8_error[c] >= 1e-9),
                       key=lambda c: -search.int8_error[c])
        limit = len(order) if max_tensors is None else min(len(order), max_tensors)

        chosen: list[str] = []

        def extend(names: list[str]) -> float:
            """Add ``names`` (skipping any whose 16-bit operand overflows) and measure."""
            set_wide(graph, names)
            e = measure()
            if e != float("inf"):
                chosen.extend(names)
                return e
            set_wide(graph, names, wide=False)
            for n in names:
                set_wide(graph, [n])
                if measure() == float("inf"):
                    set_wide(graph, [n], wide=False)
                else:
                    chosen.append(n)
            return measure()

        def use(k: int, full: list[str]) -> None:
            set_wide(graph, chosen, wide=False)
            chosen[:] = full[:k]
            set_wide(graph, chosen)

        # prefixes of the ranking doubling in size, up to the limit
        pos = 0
        history: list[tuple[int, float]] = [(0, base)]  # (len(chosen), error)
        while pos < limit:
            nxt = 1 if pos == 0 else min(limit, 2 * pos)
            e = extend(order[pos:nxt])
            pos = nxt
            history.append((len(chosen), e))
            search.steps.append((len(chosen), e))
            if e <= budget:
                break
        if pos == len(order):
            search.floor = history[-1][1]
        full = list(chosen)
        if history[-1][1] <= budget:
            # the shortest prefix meeting the budget lies between the last two steps
            lo, hi = history[-2][0], history[-1][0]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                use(mid, full)
                e = measure()
                search.steps.append((mid, e))
                if e <= budget:
                    hi = mid
                else:
                    lo = mid
            use(hi, full)
        else:
            # budget not reached: the shortest measured prefix within 2 % of the best error
            best = min(e for _, e in history)
            use(min(k for k, e in history if e <= best * (1 + _MIN_GAIN)), full)
        search.chosen = list(chosen)
        search.final = measure()
    search.cost = wide_cost(graph, search.chosen)
    search.seconds = time.perf_counter() - t0
    return search

