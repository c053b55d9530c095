"""Where a converted model's int-vs-float error comes from.

- :func:`local_errors`: every node's own error. The node runs in float on the dequantised
  *integer* values of its inputs (from the integer-exact run) and is compared with its integer
  output: the error this node adds, apart from what it inherits. The total error against the
  float network is listed next to it.
- :func:`error_sources`: the output cosine with one source of quantisation at a time, in the
  ``fake-quant`` executor (which tracks ``int`` to a few int8 steps): the graph inputs only, the
  constants (weights, biases) only, the node outputs (activations) only, and the integer result
  with every GEMM operand int8, with every eligible activation held at 16 bits, and with
  everything 16-bit (graph inputs, activations and weights: the most the hardware offers);
  ``"int"`` is the converted model as given (the default precision policy).
  If each source alone costs about as much as all of them, the network amplifies any small
  perturbation (compare :func:`compiler.coverage.measure.float_sensitivity`) and no choice of
  scales can remove it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from compiler.execute import _float_node
from compiler.quant.precision import (
    set_wide,
    weight_candidates,
    wide_candidates,
    wide_choices,
)
from compiler.quant.quantize import quantize_graph

__all__ = ["NodeLocalError", "error_sources", "local_errors"]


@dataclass
class NodeLocalError:
    """Relative RMS errors of one node's output: its own (``local``) and against float
    (``total``)."""

    name: str
    module: str
    function: str
    out_bits: int
    shape: tuple
    local: float
    total: float


def _rel_rms(got: torch.Tensor, ref: torch.Tensor) -> float:
    d = (got.double() - ref.double()).pow(2).mean().sqrt()
    return float(d / ref.double().pow(2).mean().sqrt().clamp_min(1e-30))


def local_errors(cm, inputs: tuple) -> list[NodeLocalError]:
    """Per-node local and total relative RMS errors of converted model ``cm`` on ``inputs``, in
    graph order (see the module docstring)."""
    graph, qp = cm.graph, cm.quant
    samples, _ = cm.to_samples(tuple(inputs))
    with torch.no_grad():
        _, ints = cm.run_samples(samples, "int", keep=True)
        _, floats = cm.run_samples(samples, "float", keep=True)
        deq = {k: (v.double() * qp.scales[k]).float()
               if k in qp.scales and not v.dtype.is_floating_point else v
               for k, v in ints.items()}
        out = []
        for node in graph.nodes:
            own = _float_node(graph, node, deq, graph.constants, "float", None, None)
            out.append(NodeLocalError(
                node.name, node.module, node.epilogue.function or "id", node.epilogue.out_bits,
                tuple(node.shape), _rel_rms(deq[node.name], own),
                _rel_rms(deq[node.name], floats[node.name])))
    return out


def _without(qp, *, inputs: list[str], constants: bool, activations: bool, amax: dict):
    """A copy of ``qp`` whose fake-quant run leaves out the chosen sources: graph inputs not
    quantised, constants (and biases) not quantised, node outputs (and the epilogue's input
    grid) at 2**-24 of their calibrated range (float for this purpose)."""
    q = copy.deepcopy(qp)
    for name in inputs:
        q.scales.pop(name, None)
    for name, nq in q.nodes.items():
        if constants:
            for t in nq.terms:
                if t.a_int is not None:
                    t.a_scale = None
                if t.b_int is not None:
                    t.b_scale = None
            nq.bias_int = None
        if activations:
            nq.out_bits, nq.split_out = 32, False
            nq.out_scale = max(amax.get(name, 0.0), 1e-30) * 2.0**-24
            nq.x_scale = min(nq.x_scale, nq.out_scale)  # an identity's x grid is its output's
    return q


def _cosine(cm, case, mode: str) -> float:
    """Worst-sample cosine of ``cm``'s output in ``mode`` against the float model."""
    values = []
    with torch.no_grad():
        for inputs in case.evaluation:
            ref = case.model(*inputs).float()
            got = cm(*inputs, mode=mode).float()
            r, g = ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
            values.append(torch.nn.functional.cosine_similarity(
                g.double(), r.double(), dim=-1).min())
    return float(torch.stack(values).min())


def error_sources(cm, case) -> dict[str, float]:
    """Output cosine (worst sample, the coverage table's ``logits`` statistic) of converted
    classifier ``cm`` on ``case.evaluation`` with one quantisation source at a time (see the
    module docstring). ``cm`` is left as it was."""
    qp = cm.quant
    inputs = [i.name for i in cm.graph.inputs]
    amax = cm.stats.amax
    res = {"int": _cosine(cm, case, "int"), "fake-quant": _cosine(cm, case, "fake-quant")}
    variants = {"inputs only": dict(inputs=[], constants=True, activations=True),
                "weights only": dict(inputs=inputs, constants=False, activations=True),
                "activations only": dict(inputs=inputs, constants=True, activations=False)}
    saved = wide_choices(cm.graph)

    def requantise(wide: list[str]) -> None:
        set_wide(cm.graph, wide_choices(cm.graph), wide=False)
        set_wide(cm.graph, wide)
        cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments,
                                  clipping=getattr(cm, "clipping", "mse"),
                                  fit_cache=getattr(cm, "fit_cache", None))

    try:
        for label, kw in variants.items():
            cm.quant = _without(qp, amax=amax, **kw)
            res[label] = _cosine(cm, case, "fake-quant")
        requantise([])
        res["int, all int8"] = _cosine(cm, case, "int")
        inputs = {i.name for i in cm.graph.inputs}
        tensors = wide_candidates(cm.graph)
        requantise([t for t in tensors if t not in inputs])
        res["int, every activation 16-bit"] = _cosine(cm, case, "int")
        requantise(tensors + weight_candidates(cm.graph))
        res["int, everything 16-bit"] = _cosine(cm, case, "int")
    finally:
        set_wide(cm.graph, wide_choices(cm.graph), wide=False)
        set_wide(cm.graph, saved)
        cm.quant = qp
    return res
