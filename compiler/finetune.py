"""Approximation-aware fine-tuning: train the weights through the fake-quant + PWL forward pass.

The forward pass is :mod:`compiler.execute`'s ``fake-quant`` executor: int8 operands and outputs,
per-column int8 weights, the requantisation grid and the fitted PWL functions, with
straight-through estimators for every rounding (gradients pass through ``round`` unchanged and are
zero where a value saturates). The trainable parameters are the GEMM weights (constant right
operands of data x constant terms) and the biases; scales, PWL tables and the graph stay fixed
during training. Afterwards the network is re-calibrated (on the fine-tuning inputs) and
re-quantised, which refits every PWL over the new ranges.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from compiler.convert import ConvertedModel, _calibrate
from compiler.execute import run
from compiler.graph import ConvertError
from compiler.quantize import quantize_graph

__all__ = ["finetune", "trainable_constants"]


def trainable_constants(cm: ConvertedModel) -> list[str]:
    """Names of the constants fine-tuning trains: weights of data x W terms, and biases."""
    g = cm.graph
    names: list[str] = []
    for node in g.nodes:
        for t in node.terms:
            if g.is_const(t.b) and not g.is_const(t.a) and not _is_structural(g.constants[
                    t.b.source]):
                names.append(t.b.source)
        if node.bias is not None:
            names.append(node.bias)
    return sorted(set(names))


def _is_structural(c: torch.Tensor) -> bool:
    """Identity/selection/pooling matrices (one nonzero magnitude) are structure, not weights."""
    nz = c[c != 0].abs()
    return nz.numel() == 0 or bool(torch.all(nz == nz[0]))


def _split(item, n_inputs: int) -> tuple[tuple, torch.Tensor | None]:
    """``(inputs_tuple, labels)``, ``(x, labels)`` for one-input models, or inputs only."""
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (tuple, list)):
        return tuple(item[0]), item[1]
    if isinstance(item, torch.Tensor):
        return (item,), None
    item = tuple(item)
    if len(item) == n_inputs:
        return item, None
    if len(item) == n_inputs + 1:
        return item[:n_inputs], item[n_inputs]
    raise ConvertError(f"finetune: a data item has {len(item)} tensors; expected "
                       f"(inputs_tuple, labels), {n_inputs} input(s), or inputs plus labels")


def finetune(converted: ConvertedModel, data: Iterable, epochs: int = 1, lr: float = 1e-4, *,
             distill: float = 0.5, temperature: float = 2.0, seed: int = 0) -> ConvertedModel:
    """Fine-tune ``converted``'s weights through the fake-quant + PWL forward pass.

    Parameters
    ----------
    converted : ConvertedModel
        From :func:`compiler.convert`.
    data : iterable
        Items ``(inputs_tuple, labels)`` (or ``(x, labels)`` for a one-input model); ``labels``
        int64 class indices (cross-entropy on the last dim) or float targets (MSE). Items that are
        just the inputs train to match the float model (knowledge distillation only).
    epochs : int
        Passes over ``data``.
    lr : float
        Adam learning rate.
    distill : float
        Weight of the distillation loss (KL divergence to the float model's softened outputs) added
        to the label loss when labels are given and the float model is known; 0 disables it.
    temperature : float
        Softmax temperature of the distillation loss.
    seed : int
        Seed of the batch order.

    Returns
    -------
    ConvertedModel
        A new converted model (the input is not modified), re-calibrated and re-quantised.
    """
    if epochs < 0 or lr <= 0:
        raise ConvertError(f"finetune needs epochs >= 0 and lr > 0, got {epochs}, {lr}")
    data = list(data)
    if not data:
        raise ConvertError("finetune: the data set is empty")
    cm = copy.copy(converted)
    cm.graph = copy.deepcopy(converted.graph)
    names = trainable_constants(cm)
    params = {n: torch.nn.Parameter(cm.graph.constants[n].clone()) for n in names}
    consts = dict(cm.graph.constants)
    consts.update(params)
    opt = torch.optim.Adam(params.values(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    fm = converted.float_model
    n_in = len(cm.graph.inputs)
    teacher: dict[int, torch.Tensor] = {}  # the float model's output per item, for distillation
    for _ in range(epochs):
        for i in torch.randperm(len(data), generator=gen).tolist():
            inputs, target = _split(data[i], n_in)
            samples, batch = cm.to_samples(inputs)
            outs = run(cm.graph, samples, "fake-quant", cm.quant, consts=consts)
            out = cm._unstack(outs[0], batch)
            loss = torch.zeros(())
            if target is not None:
                if not target.dtype.is_floating_point:
                    loss = loss + F.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                  target.reshape(-1))
                else:
                    loss = loss + F.mse_loss(out, target)
            if fm is not None and (target is None or distill > 0):
                if i not in teacher:
                    with torch.no_grad():
                        ref = fm(*inputs)
                        teacher[i] = ref[0] if isinstance(ref, (tuple, list)) else ref
                ref = teacher[i]
                w = 1.0 if target is None else distill
                t = temperature
                loss = loss + w * t * t * F.kl_div(
                    F.log_softmax(out / t, dim=-1), F.softmax(ref / t, dim=-1),
                    reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        for n, p in params.items():
            cm.graph.constants[n] = p.detach().clone()
    cm.stats = _calibrate(cm, [_split(d, n_in)[0] for d in data])
    cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments, clipping=cm.clipping)
    return cm
