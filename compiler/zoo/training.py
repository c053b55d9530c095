"""Deterministic training loops for the zoo (single CPU thread, fixed seeds)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compiler.zoo.data import ClassificationData

if TYPE_CHECKING:
    from compiler.zoo.spec import ZooSpec

__all__ = [
    "TrainingConfig",
    "single_thread",
    "train_classifier",
    "train_node_classifier",
    "train_checkpoint",
]


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one training run (AdamW, cosine learning-rate decay, cross-entropy).

    Attributes
    ----------
    epochs : int
        Passes over the training set (full-batch steps for node classification).
    batch_size : int
        Mini-batch size; ignored by full-batch node classification.
    lr : float
        Peak learning rate.
    weight_decay : float
        AdamW weight decay.
    seed : int
        Seeds the initialisation, the shuffling and dropout.
    label_smoothing : float
        Cross-entropy label smoothing.
    """

    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    label_smoothing: float = 0.0


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the body with one intra-op torch thread (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _optimiser(
    model: nn.Module, config: TrainingConfig, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=steps, pct_start=0.15
    )
    return optimiser, schedule


def train_classifier(model: nn.Module, data: ClassificationData, config: TrainingConfig) -> None:
    """Train ``model`` in place on mini-batches of ``data``'s training split, then set eval mode."""
    generator = torch.Generator().manual_seed(config.seed)
    n = len(data.train_labels)
    batches_per_epoch = -(-n // config.batch_size)
    optimiser, schedule = _optimiser(model, config, config.epochs * batches_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            inputs = tuple(t[idx] for t in data.train_inputs)
            loss = loss_fn(model(*inputs), data.train_labels[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()


def train_node_classifier(
    model: nn.Module, data: ClassificationData, config: TrainingConfig
) -> None:
    """Train ``model`` in place full-batch on the labelled nodes, then set eval mode."""
    if data.train_mask is None:
        raise ValueError("node classification needs data.train_mask")
    optimiser, schedule = _optimiser(model, config, config.epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    for _ in range(config.epochs):
        logits = model(*data.train_inputs)[data.train_mask]
        loss = loss_fn(logits, data.train_labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    model.eval()


def train_checkpoint(entry: ZooSpec, config: Any, data: ClassificationData) -> dict[str, Any]:
    """Build ``entry``'s model for ``config`` from seed ``entry.training.seed`` and train it.

    Runs on one torch thread. Returns the checkpoint the cache stores: ``state_dict``,
    ``train_seconds`` (wall) and ``train_cpu_seconds`` (process CPU time).
    """
    with single_thread():
        wall, cpu = time.perf_counter(), time.process_time()
        torch.manual_seed(entry.training.seed)
        model = entry.build(config)
        entry.trainer(model, data, entry.training)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"state_dict": model.state_dict(), "train_seconds": wall, "train_cpu_seconds": cpu}
