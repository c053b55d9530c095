"""Model zoo: small networks trained in seconds on scikit-learn's handwritten digits.

>>> from compiler.zoo import load, MODEL_NAMES
>>> zm = load("mlp")
>>> zm.metric(zm.model(*zm.eval_inputs), zm.eval_labels)  # doctest: +SKIP
0.97...

The trained weights ship with the package (``compiler/zoo/weights``, named by a fingerprint of
everything that shaped them), so every machine converts the same networks; a spec no shipped file
matches (changed code, a non-default option or seed) is trained on first use (one CPU thread) with
a warning and cached under ``build/zoo`` (see :mod:`compiler.zoo.cache`). docs/zoo.md describes
every model, its data split and its accuracy.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compiler.zoo import cache
from compiler.zoo.data import ClassificationData
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import train_checkpoint
from hw.errors import NmxError

__all__ = [
    "MODEL_NAMES",
    "ZooError",
    "UnknownModelError",
    "ZooModel",
    "load",
    "spec",
    "weights_spec",
    "accuracy",
    "HiddenStates",
    "hidden_states",
]

MODEL_NAMES: tuple[str, ...] = ("mlp", "resnet", "mobilenet", "bert", "vit", "gcn")

EXAMPLE_BATCH = 8
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 32
GCN_CALIBRATION_NOISE = (0.0, 0.02, 0.05)
"""Standard deviations of the Gaussian noise added to the node features for GCN calibration."""
CALIBRATION_SEED = 1


class ZooError(NmxError):
    """A model zoo request that cannot be served."""


class UnknownModelError(ZooError):
    """A model name that is not in :data:`MODEL_NAMES`."""


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``outputs`` (N, classes) logits against int ``labels`` (N,), in [0, 1]."""
    if outputs.ndim != 2 or outputs.shape[0] != labels.shape[0]:
        raise ZooError(
            f"accuracy needs (N, classes) outputs for N={labels.shape[0]} labels, "
            f"got shape {tuple(outputs.shape)}"
        )
    return (outputs.argmax(dim=1) == labels).float().mean().item()


@dataclass
class ZooModel:
    """A trained zoo model with its data.

    Attributes
    ----------
    name : str
        Zoo name.
    model : torch.nn.Module
        The float32 network in eval mode.
    example_inputs : tuple of torch.Tensor
        A small batch (the first 8 test samples; for the GCN, the whole graph's features).
    calibration : list of tuple of torch.Tensor
        Input tuples for calibration: 8 batches of 32 training samples (GCN: the features,
        clean and with small Gaussian noise).
    eval_inputs : tuple of torch.Tensor
        The whole held-out test split (GCN: the whole graph; the metric selects test nodes).
    eval_labels : torch.Tensor
        int64 labels of the test samples (GCN: of the test nodes, in ``eval_mask`` order).
    task : str
        ``"classification"`` or ``"node-classification"``.
    metric : callable
        ``metric(outputs, labels) -> float``: top-1 accuracy in [0, 1] of the model's outputs on
        ``eval_inputs`` (node classification: outputs for the whole graph, scored on test nodes;
        outputs with one row per label are scored as they are).
    float_accuracy : float
        ``metric(model(*eval_inputs), eval_labels)``, measured at load.
    description : str
        One line: architecture, task, split and data source.
    config : object
        The architecture config the model was built from.
    train_seconds : float
        Wall time of the training run that produced the cached weights.
    train_cpu_seconds : float
        CPU time of that run (one thread, so unaffected by other processes sharing the CPU).
    checkpoint : pathlib.Path
        The weights file (shipped ``.npz`` or cached ``.pt``).
    weights_source : str
        ``"shipped"``, ``"cached"`` or ``"trained"`` (by this call).
    fingerprint : str
        The spec's fingerprint (:func:`compiler.zoo.cache.fingerprint`) naming the weights.
    seed : int
        The training seed.
    eval_mask : torch.Tensor or None
        Node classification: int64 indices of the test nodes; None otherwise.
    """

    name: str
    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    calibration: list[tuple[torch.Tensor, ...]]
    eval_inputs: tuple[torch.Tensor, ...]
    eval_labels: torch.Tensor
    task: str
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    float_accuracy: float
    description: str
    config: Any
    train_seconds: float
    train_cpu_seconds: float
    checkpoint: Path
    weights_source: str = "shipped"
    fingerprint: str = ""
    seed: int = 0
    eval_mask: torch.Tensor | None = field(default=None)


def spec(name: str) -> ZooSpec:
    """The :class:`~compiler.zoo.spec.ZooSpec` of zoo model ``name``.

    Raises
    ------
    UnknownModelError
        If ``name`` is not in :data:`MODEL_NAMES`.
    """
    if name not in MODEL_NAMES:
        raise UnknownModelError(
            f"unknown zoo model {name!r}; the zoo has: {', '.join(MODEL_NAMES)}"
        )
    return importlib.import_module(f"compiler.zoo.{name}").SPEC


def _configured(entry: ZooSpec, overrides: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ZooError(
            f"zoo model {entry.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(fields))}"
        )
    try:
        config = dataclasses.replace(entry.config, **overrides)
        entry.build(config)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"zoo model {entry.name!r}: invalid options {overrides}: {exc}") from exc
    return config


def _source_files(entry: ZooSpec) -> list[Path]:
    here = Path(__file__).resolve().parent
    family = Path(sys.modules[f"compiler.zoo.{entry.name}"].__file__)
    return [family, here / "data.py", here / "training.py", here / "spec.py"]


def _calibration(data: ClassificationData, task: str) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    if task == "node-classification":
        (features,) = data.train_inputs
        return [
            ((features + std * torch.randn(features.shape, generator=generator)).clamp(0, 1),)
            for std in GCN_CALIBRATION_NOISE
        ]
    order = torch.randperm(len(data.train_labels), generator=generator)
    batches = []
    for b in range(CALIBRATION_BATCHES):
        idx = order[b * CALIBRATION_BATCH_SIZE : (b + 1) * CALIBRATION_BATCH_SIZE]
        batches.append(tuple(t[idx] for t in data.train_inputs))
    return batches


def weights_spec(
    name: str, *, seed: int | None = None, **options: Any
) -> tuple[ZooSpec, Any, ClassificationData, str]:
    """What the weights of ``load(name, seed=seed, **options)`` are trained from.

    Returns
    -------
    (ZooSpec, config, ClassificationData, str)
        The spec (with ``seed`` in its training config), the architecture config the weights are
        trained with (inference-only options reset to the defaults), the data, and the
        fingerprint (:func:`compiler.zoo.cache.fingerprint`) naming the weights.
    """
    entry = spec(name)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ZooError(f"zoo model {name!r}: seed must be a non-negative int, got {seed!r}")
        entry = dataclasses.replace(entry, training=dataclasses.replace(entry.training, seed=seed))
    config = _configured(entry, options)
    training_config = dataclasses.replace(
        config, **{f: getattr(entry.config, f) for f in entry.inference_options}
    )
    data = entry.data(config)
    settings = {
        "config": dataclasses.asdict(training_config),
        "training": dataclasses.asdict(entry.training),
    }
    digest = cache.fingerprint(
        _source_files(entry), settings, (*data.train_inputs, data.train_labels)
    )
    return entry, training_config, data, digest


def load(name: str, *, seed: int | None = None, **options: Any) -> ZooModel:
    """Load zoo model ``name``: its shipped weights, else cached ones, else train and cache it.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    **options
        Architecture options replacing fields of the model's default config (for example
        ``load("bert", hidden_act="gelu_new")``); each distinct config trains and caches its own
        weights, except options that only select an equivalent formulation (the spec's
        ``inference_options``, e.g. ``load("bert", attn_implementation="sdpa")``), which reuse
        the default config's weights.
    seed : int, optional
        Training seed (default: the spec's, which the shipped weights were trained with). Any
        other seed trains on first use and is cached (``nmx zoo sweep``).

    Returns
    -------
    ZooModel

    Raises
    ------
    UnknownModelError
        If ``name`` is not in :data:`MODEL_NAMES`.
    ZooError
        If an option does not exist or has an invalid value.
    """
    entry, training_config, data, digest = weights_spec(name, seed=seed, **options)
    config = _configured(entry, options)
    checkpoint, path, source = cache.load_weights(
        name, digest, lambda: train_checkpoint(entry, training_config, data)
    )

    model = entry.build(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.float().eval()

    mask = data.test_mask

    def metric(outputs: torch.Tensor, labels: torch.Tensor) -> float:
        if mask is not None and outputs.shape[0] != labels.shape[0]:
            outputs = outputs[mask]
        return accuracy(outputs, labels)

    with torch.no_grad():
        float_accuracy = metric(model(*data.test_inputs), data.test_labels)

    if entry.task == "node-classification":
        example_inputs = data.test_inputs
    else:
        example_inputs = tuple(t[:EXAMPLE_BATCH] for t in data.test_inputs)

    return ZooModel(
        name=name,
        model=model,
        example_inputs=example_inputs,
        calibration=_calibration(data, entry.task),
        eval_inputs=data.test_inputs,
        eval_labels=data.test_labels,
        task=entry.task,
        metric=metric,
        float_accuracy=float_accuracy,
        description=entry.describe(config),
        config=config,
        train_seconds=float(checkpoint["train_seconds"]),
        train_cpu_seconds=float(checkpoint["train_cpu_seconds"]),
        checkpoint=path,
        weights_source=source,
        fingerprint=digest,
        seed=entry.training.seed,
        eval_mask=mask,
    )


class HiddenStates(nn.Module):
    """The final hidden states (token sequence) of a zoo transformer, as a module of its own.

    BERT: ``model.bert(input_ids, attention_mask)[0]`` (the encoder output before the pooler);
    ViT: the final LayerNorm's output for every token (before the head picks ``[CLS]``). It
    shares the classifier's parameters. :attr:`module_path` names the classifier's submodule
    that computes these hidden states, so a converted classifier's node for them can be found.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "bert"):
            layers = model.bert.config.num_hidden_layers
            self.module_path = f"bert.encoder.layer.{layers - 1}.output.LayerNorm"
        elif hasattr(model, "blocks"):
            self.module_path = "norm"
        else:
            raise ZooError(f"{type(model).__name__} is not a zoo transformer (bert or vit)")
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        m = self.model
        if hasattr(m, "bert"):
            return m.bert(*inputs)[0]
        x = m.patch_embed(inputs[0]).flatten(2).transpose(1, 2)
        x = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + m.pos_embed
        return m.norm(m.blocks(x))


def hidden_states(zm: ZooModel) -> tuple[HiddenStates, torch.Tensor | None] | None:
    """The hidden-state module of zoo transformer ``zm`` and its token mask on ``eval_inputs``.

    Returns
    -------
    (HiddenStates, torch.Tensor or None) or None
        The module (eval mode) and a bool (N, L) mask of the tokens the transformer target is
        measured on (BERT: the attention mask's unmasked tokens; ViT: None, every token), or
        None for models that are not transformers.
    """
    if zm.name not in ("bert", "vit"):
        return None
    mask = zm.eval_inputs[1].bool() if zm.name == "bert" else None
    return HiddenStates(zm.model).eval(), mask
