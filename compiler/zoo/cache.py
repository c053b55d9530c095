"""The zoo's weight cache: train once, reuse until anything that shaped the weights changes.

A trained model is stored as ``<cache dir>/<name>_<hash>.pt``. The hash covers the source code of
the modules that build and train it, its architecture and training hyperparameters, the training
data itself, and the torch version, so editing any of them retrains and an unchanged zoo loads
instantly. Concurrent loaders (pytest-xdist workers) serialise on an ``fcntl`` lock file next to
the weights; the weights are written to a temporary file and renamed into place, so a reader never
sees a partial file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["CACHE_ENV", "cache_dir", "fingerprint", "load_or_train"]

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
