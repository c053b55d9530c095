"""What the zoo knows about one model: how to build it, on which data, and how to train it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from compiler.zoo.data import ClassificationData
from compiler.zoo.training import TrainingConfig, train_classifier

__all__ = ["ZooSpec"]


@dataclass(frozen=True)
class ZooSpec:
    """One zoo entry.

    Attributes
    ----------
    name : str
        The name ``compiler.zoo.load`` takes.
    config : object
        The default architecture config (a frozen dataclass); ``load(name, **overrides)``
        replaces its fields.
    training : TrainingConfig
        Training hyperparameters.
    build : callable
        ``build(config) -> nn.Module``, freshly initialised.
    data : callable
        ``data(config) -> ClassificationData``.
    task : str
        ``"classification"`` or ``"node-classification"``.
    describe : callable
        ``describe(config) -> str``: one line naming architecture, task, split and data source.
    trainer : callable
        ``trainer(model, data, training)`` trains in place.
    inference_options : frozenset of str
        Config fields that select an equivalent formulation of the same function (for example
        BERT's SDPA versus explicit attention). They are left out of the cache key: the weights
        are trained with the default config's values and loaded into the requested variant.
    """

    name: str
    config: Any
    training: TrainingConfig
    build: Callable[[Any], nn.Module]
    data: Callable[[Any], ClassificationData]
    task: str
    describe: Callable[[Any], str]
    trainer: Callable[[nn.Module, ClassificationData, TrainingConfig], None] = train_classifier
    inference_options: frozenset[str] = frozenset()
