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
from compiler.determinism import thread_independent
from compiler.execute import run
from compiler.graph import ConvertError
from compiler.quant.quantize import quantize_graph

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


@thread_independent
def finetune(converted: ConvertedModel, data: Iterable, epochs: int = 1, lr: float = 1e-4, *,
             distill: float = 0.5, temperature: float = 2.0, seed: int = 0,
             validation: Iterable | None = None, select: str = "loss",
             min_gain: float = 0.02) -> ConvertedModel:
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
    validation : iterable, optional
        Held-out items shaped like ``data``. The ``select`` criterion is measured on them
        (fake-quant, no gradient) before training and after every epoch, and the weights of
        the best of those points are kept: when no epoch improves on the converted model, the
        result keeps its weights (and its quantisation) unchanged. Without it the last epoch
        is kept.
    select : str
        ``"loss"``: the training loss (unlabelled items measure the distillation loss alone);
        an epoch must lower it by at least ``min_gain`` (a fraction) to be kept.
        ``"agreement"``: the fraction of output rows whose argmax (last dim) equals the float
        model's; an epoch must raise it to be kept (ties keep the earlier epoch).
    min_gain : float
        See ``select="loss"`` (changes below it are noise on small held-out sets).

    Returns
    -------
    ConvertedModel
        A new converted model (the input is not modified), re-calibrated and re-quantised when
        its weights changed. ``finetune_history`` holds ``{"select": ..., "val": [...],
        "best_epoch": k}`` (``val`` empty without ``validation``; epoch 0 is the converted
        model).
    """
    if epochs < 0 or lr <= 0:
        raise ConvertError(f"finetune needs epochs >= 0 and lr > 0, got {epochs}, {lr}")
    data = list(data)
    if not data:
        raise ConvertError("finetune: the data set is empty")
    val = None if validation is None else list(validation)
    if val is not None and not val:
        raise ConvertError("finetune: the validation set is empty")
    if select not in ("loss", "agreement"):
        raise ConvertError(f"finetune: select={select!r}; choose 'loss' or 'agreement'")
    if select == "agreement" and converted.float_model is None:
        raise ConvertError("finetune: select='agreement' needs the float model")
    cm = copy.copy(converted)
    cm.graph = copy.deepcopy(converted.graph)
    names = trainable_constants(cm)
    params = {n: torch.nn.Parameter(cm.graph.constants[n].clone()) for n in names}
    consts = dict(cm.graph.constants)
    consts.update(params)
    opt = torch.optim.Adam(params.values(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n_in = len(cm.graph.inputs)
    loss_of = _Loss(cm, converted.float_model, n_in, distill, temperature)

    def score() -> float:
        with torch.no_grad():
            if select == "loss":
                total = sum(float(loss_of(it, consts, ("val", i))) for i, it in enumerate(val))
                return total / len(val)
            same = rows = 0
            for i, it in enumerate(val):
                out, ref = loss_of.outputs(it, consts, ("val", i))
                same += int((out.argmax(-1) == ref.argmax(-1)).sum())
                rows += out.argmax(-1).numel()
            return same / rows

    def better(new: float, old: float) -> bool:
        return new < (1 - min_gain) * old if select == "loss" else new > old

    history = {"select": select, "val": [] if val is None else [score()], "best_epoch": 0}
    best = None
    for epoch in range(1, epochs + 1):
        for i in torch.randperm(len(data), generator=gen).tolist():
            loss = loss_of(data[i], consts, ("train", i))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if val is not None:
            history["val"].append(score())
            if better(history["val"][-1], history["val"][history["best_epoch"]]):
                history["best_epoch"] = epoch
                best = {n: p.detach().clone() for n, p in params.items()}
    if val is None:
        history["best_epoch"] = epochs
        best = {n: p.detach().clone() for n, p in params.items()}
    if history["best_epoch"] == 0:  # cm.graph is an unchanged copy; keep the quantisation
        cm.finetune_history = history
        return cm
    cm.graph.constants.update(best)
    cm.stats = _calibrate(cm, [_split(d, n_in)[0] for d in data])
    cm.quant = quantize_graph(cm.graph, cm.stats, segments=cm.segments, clipping=cm.clipping)
    cm.finetune_history = history
    return cm


class _Loss:
    """The fine-tuning loss of one data item: label loss plus distillation to the float model
    (whose outputs are computed once per item)."""

    def __init__(self, cm: ConvertedModel, float_model, n_inputs: int, distill: float,
                 temperature: float):
        self.cm, self.fm, self.n_in = cm, float_model, n_inputs
        self.distill, self.t = distill, temperature
        self.teacher: dict = {}

    def outputs(self, item, consts: dict, key) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fake-quant output of ``item``'s inputs and the float model's (None without)."""
        cm = self.cm
        inputs, _ = _split(item, self.n_in)
        samples, batch = cm.to_samples(inputs)
        outs = run(cm.graph, samples, "fake-quant", cm.quant, consts=consts)
        return cm._unstack(outs[0], batch), self._teacher(inputs, key)

    def _teacher(self, inputs, key) -> torch.Tensor | None:
        if self.fm is None:
            return None
        if key not in self.teacher:
            with torch.no_grad():
                ref = self.fm(*inputs)
                self.teacher[key] = ref[0] if isinstance(ref, (tuple, list)) else ref
        return self.teacher[key]

    def __call__(self, item, consts: dict, key) -> torch.Tensor:
        _, target = _split(item, self.n_in)
        out, ref = self.outputs(item, consts, key)
        loss = torch.zeros(())
        if target is not None:
            if not target.dtype.is_floating_point:
                loss = loss + F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
            else:
                loss = loss + F.mse_loss(out, target)
        if ref is not None and (target is None or self.distill > 0):
            w = 1.0 if target is None else self.distill
            loss = loss + w * self.t * self.t * F.kl_div(
                F.log_softmax(out / self.t, dim=-1), F.softmax(ref / self.t, dim=-1),
                reduction="batchmean")
        return loss
