"""The zoo's weights: shipped with the package, else trained once and cached.

Every zoo model's weights are named by a fingerprint (:func:`fingerprint`): a hash of the source
code of the modules that build and train it, its architecture and training hyperparameters, the
training data itself, and the torch version. :func:`load_weights` looks for them in this order:

1. **Shipped**: ``compiler/zoo/weights/<name>_<hash>.npz`` (package data), the weights the docs'
   figures were measured on, so every machine converts the same networks (float training kernels
   differ between CPUs, so retraining would not reproduce them bit for bit). ``weights/SHA256SUMS``
   holds each file's SHA-256, checked on load. ``nmx zoo ship`` regenerates them.
2. **Cached**: ``<cache dir>/<name>_<hash>.pt`` (``build/zoo``, or ``$NMX_ZOO_CACHE``).
3. **Trained on first use** (only for a spec that no shipped file matches: changed code, settings,
   data or torch version, a non-default option or seed), with a :class:`TrainingOnFirstUse`
   warning that says so, then cached.

Concurrent trainers (pytest-xdist workers) serialise on an ``fcntl`` lock file next to the cached
weights; the weights are written to a temporary file and renamed into place, so a reader never
sees a partial file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw.errors import NmxError

__all__ = [
    "CACHE_ENV",
    "SHIPPED_DIR",
    "SUMS_FILE",
    "ShippedWeightsError",
    "TrainingOnFirstUse",
    "cache_dir",
    "fingerprint",
    "load_or_train",
    "load_weights",
    "read_sums",
    "save_shipped",
    "shipped_path",
]

CACHE_ENV = "NMX_ZOO_CACHE"
"""Environment variable that overrides the cache directory."""


def cache_dir() -> Path:
    """The cache directory: ``$NMX_ZOO_CACHE``, else ``build/zoo`` in the repository checkout.

    Outside a checkout (an installed package), ``build/zoo`` under the working directory.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / "build" / "zoo"
    return Path.cwd() / "build" / "zoo"


def fingerprint(
    source_files: Iterable[Path], settings: dict[str, Any], tensors: Iterable[torch.Tensor]
) -> str:
    """A 12-hex-digit digest of code, settings, data and torch version.

    Parameters
    ----------
    source_files : iterable of Path
        Python files whose text shapes the trained weights.
    settings : dict
        JSON-serialisable architecture and training hyperparameters.
    tensors : iterable of torch.Tensor
        The training data (inputs and labels).
    """
    digest = hashlib.sha256()
    digest.update(torch.__version__.encode())
    for path in sorted(Path(p).resolve() for p in source_files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for tensor in tensors:
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:12]


SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
"""Where the shipped weights live (package data of :mod:`compiler.zoo`)."""

SUMS_FILE = "SHA256SUMS"
"""``sha256sum``-format list of the shipped files, in :data:`SHIPPED_DIR`."""

_META = ("train_seconds", "train_cpu_seconds")
_STATE = "state_dict/"


class ShippedWeightsError(NmxError):
    """A shipped weights file that is missing from, or does not match, ``SHA256SUMS``."""


class TrainingOnFirstUse(UserWarning):
    """No shipped or cached weights match a zoo model's spec, so it is being trained now."""


def shipped_path(name: str, digest: str) -> Path:
    """The shipped weights file of model ``name`` with fingerprint ``digest``."""
    return SHIPPED_DIR / f"{name}_{digest}.npz"


def read_sums(directory: Path = SHIPPED_DIR) -> dict[str, str]:
    """File name -> SHA-256 hex digest, from ``directory / SHA256SUMS`` (empty if absent)."""
    sums_path = directory / SUMS_FILE
    if not sums_path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(sums_path.read_text().splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line.strip())
        if match is None:
            raise ShippedWeightsError(f"{sums_path}:{number}: not a sha256sum line: {line!r}")
        sums[match[2]] = match[1]
    return sums


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_shipped(path: Path) -> dict[str, Any]:
    expected = read_sums(path.parent).get(path.name)
    if expected is None:
        raise ShippedWeightsError(f"{path} is not listed in {path.parent / SUMS_FILE}; "
                                  "regenerate the shipped weights with `nmx zoo ship`")
    actual = _sha256(path)
    if actual != expected:
        raise ShippedWeightsError(f"{path} is corrupt: SHA-256 {actual}, {SUMS_FILE} says "
                                  f"{expected}; restore it from the repository or run "
                                  "`nmx zoo ship`")
    with np.load(path, allow_pickle=False) as archive:
        state = {k[len(_STATE):]: torch.from_numpy(archive[k].copy())
                 for k in archive.files if k.startswith(_STATE)}
        meta = {k: float(archive[k]) for k in _META}
    return {"state_dict": state, **meta}


def save_shipped(name: str, digest: str, checkpoint: dict[str, Any],
                 directory: Path = SHIPPED_DIR) -> Path:
    """Write ``checkpoint`` as ``directory/<name>_<digest>.npz``, replacing model ``name``'s
    other shipped files, and update ``SHA256SUMS``.

    The archive holds one array per state-dict entry (``state_dict/<key>``) and the training
    times; it loads with ``numpy.load(allow_pickle=False)``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}_{digest}.npz"
    arrays = {_STATE + k: v.detach().cpu().numpy() for k, v in checkpoint["state_dict"].items()}
    arrays.update({k: np.float64(checkpoint[k]) for k in _META})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sums = read_sums(directory)
    for stale in directory.glob(f"{name}_*.npz"):
        if stale != path:
            stale.unlink()
            sums.pop(stale.name, None)
    sums[path.name] = _sha256(path)
    (directory / SUMS_FILE).write_text(
        "".join(f"{sums[f]}  {f}\n" for f in sorted(sums) if (directory / f).is_file()))
    return path


def load_weights(name: str, digest: str, train: Callable[[], dict[str, Any]], *,
                 shipped: bool = True) -> tuple[dict[str, Any], Path, str]:
    """The weights of zoo model ``name`` with fingerprint ``digest``: shipped, cached or trained.

    Parameters
    ----------
    name, digest : str
        Model name and its spec's :func:`fingerprint`.
    train : callable
        Returns the checkpoint (``state_dict``, ``train_seconds``, ``train_cpu_seconds``).
    shipped : bool
        Whether a shipped file may serve the request (False: cache or train only).

    Returns
    -------
    (checkpoint, path, source)
        ``source`` is ``"shipped"``, ``"cached"`` or ``"trained"``.

    Raises
    ------
    ShippedWeightsError
        A matching shipped file fails its SHA-256 check (never silently retrained).
    """
    path = shipped_path(name, digest)
    if shipped and path.is_file():
        return _load_shipped(path), path, "shipped"
    path = cache_dir() / f"{name}_{digest}.pt"

    def announced_train() -> dict[str, Any]:
        others = sorted(p.name for p in SHIPPED_DIR.glob(f"{name}_*.npz"))
        why = (f"the shipped weights ({', '.join(others)}) were trained for another spec: its "
               "code, settings, training data or torch version changed, or a non-default "
               "option or seed was asked for" if others and shipped
               else "no weights for it are shipped")
        warnings.warn(f"zoo model {name!r} (fingerprint {digest}): {why}; training it now on "
                      f"one CPU thread and caching it as {path}. Its figures will differ from "
                      "the documented ones (`nmx zoo ship` regenerates the shipped weights).",
                      TrainingOnFirstUse, stacklevel=5)
        return train()

    checkpoint, trained = load_or_train(path, announced_train)
    return checkpoint, path, "trained" if trained else "cached"


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_or_train(path: Path, train: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Load the checkpoint at ``path``, or produce it with ``train()`` and store it atomically.

    Parameters
    ----------
    path : Path
        Where the checkpoint lives.
    train : callable
        Returns the checkpoint (a dict holding at least ``"state_dict"``).

    Returns
    -------
    checkpoint : dict
    trained : bool
        True when this call trained the model.
    """
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True), False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_suffix(".lock")):
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True), False
        checkpoint = train()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return checkpoint, True
