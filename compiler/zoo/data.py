"""The zoo's data: scikit-learn's handwritten digits, split and encoded for each model family.

Everything here is deterministic and offline: ``sklearn.datasets.load_digits`` ships its 1797
8x8 images (pixel values 0..16, 10 classes) inside the package, and every split comes from a
``numpy.random.default_rng`` seeded with a fixed value (NumPy guarantees PCG64 streams are stable).

Splits
------
- Image models (mlp, resnet, mobilenet, bert, vit): a stratified split with seed 0; in each class,
  a random 25 % (rounded) of the images is the test split, the rest trains. 1347 train / 450 test.
- GCN: the nodes are all 1797 images; with seed 0, 20 random nodes per class are labelled for
  training (200 nodes), every other node is a test node (1597 nodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "DIGITS_CLASSES",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "GCN_LABELS_PER_CLASS",
    "GCN_NEIGHBOURS",
    "ClassificationData",
    "digits",
    "digits_split",
    "image_data",
    "flat_data",
    "token_data",
    "pixel_tokens",
    "knn_adjacency",
    "normalized_adjacency",
    "gcn_split",
    "gcn_graph",
    "graph_data",
    "TOKEN_PAD",
    "TOKEN_CLS",
    "TOKEN_SEP",
    "TOKEN_PIXEL0",
    "TOKEN_VOCAB_SIZE",
    "TOKEN_SEQ_LEN",
]

DIGITS_CLASSES = 10
SPLIT_SEED = 0
TEST_FRACTION = 0.25
GCN_LABELS_PER_CLASS = 20
GCN_NEIGHBOURS = 10

TOKEN_PAD = 0
TOKEN_CLS = 1
TOKEN_SEP = 2
TOKEN_PIXEL0 = 3
"""Pixel value v (0..16) is token ``TOKEN_PIXEL0 + v``."""
TOKEN_VOCAB_SIZE = TOKEN_PIXEL0 + 17
TOKEN_SEQ_LEN = 1 + 64 + 1
"""[CLS] + at most 64 pixel tokens + [SEP]; shorter sequences are padded with [PAD]."""


@dataclass(frozen=True)
class ClassificationData:
    """Inputs and labels of one task, already encoded for one model family.

    Attributes
    ----------
    train_inputs, test_inputs : tuple of torch.Tensor
        The model's positional inputs; the first dimension indexes samples (for a node
        classification task the inputs are the whole graph in both, and the masks select nodes).
    train_labels, test_labels : torch.Tensor
        int64 class labels of the training and test samples (or nodes).
    train_mask, test_mask : torch.Tensor or None
        For node classification, the int64 indices of the training and test nodes in the graph;
        None for per-sample tasks.
    """

    train_inputs: tuple[torch.Tensor, ...]
    train_labels: torch.Tensor
    test_inputs: tuple[torch.Tensor, ...]
    test_labels: torch.Tensor
    train_mask: torch.Tensor | None = None
    test_mask: torch.Tensor | None = None


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images, dtype=np.int64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The raw digits data set.

    Returns
    -------
    pixels : numpy.ndarray
        int64, shape (1797, 8, 8), values 0..16 (read-only).
    labels : numpy.ndarray
        int64, shape (1797,), values 0..9 (read-only).
    """
    return _digits_arrays()


@lru_cache(maxsize=4)
def _split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    _, labels = digits()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in range(DIGITS_CLASSES):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(members.size)]
        n_test = round(members.size * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_idx = np.sort(np.concatenate(train))
    test_idx = np.sort(np.concatenate(test))
    train_idx.setflags(write=False)
    test_idx.setflags(write=False)
    return train_idx, test_idx


def digits_split(
    seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """The stratified train/test split of the digits images.

    Parameters
    ----------
    seed : int
        Seed of the ``numpy.random.default_rng`` that permutes each class.
    test_fraction : float
        Fraction of each class held out for testing (rounded per class).

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        Sorted, disjoint int64 indices into :func:`digits` covering every image.
    """
    return _split(seed, test_fraction)


def _tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels = digits()
    images = torch.from_numpy(pixels[idx].astype(np.float32) / 16.0)
    return images, torch.from_numpy(labels[idx].copy())


def image_data() -> ClassificationData:
    """Digits as float32 images of shape (N, 1, 8, 8) scaled to [0, 1], for CNNs and the ViT."""
    train_idx, test_idx = digits_split()
    x_train, y_train = _tensors(train_idx)
    x_test, y_test = _tensors(test_idx)
    return ClassificationData((x_train[:, None],), y_train, (x_test[:, None],), y_test)


def flat_data() -> ClassificationData:
    """Digits as float32 vectors of shape (N, 64) scaled to [0, 1], for the MLP."""
    train_idx, test_idx = digits_split()
    x_train, y_train = _tensors(train_idx)
    x_test, y_test = _tensors(test_idx)
    return ClassificationData(
        (x_train.reshape(-1, 64),), y_train, (x_test.reshape(-1, 64),), y_test
    )


def pixel_tokens(pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode images as BERT-style token sequences with an attention mask.

    Each image's 64 pixels, in row-major order up to and including its last non-zero pixel,
    become tokens ``TOKEN_PIXEL0 + value``, framed as ``[CLS] pixels... [SEP]`` and padded with
    ``[PAD]`` to ``TOKEN_SEQ_LEN``. Dropping the trailing zero pixels gives sequences of varying
    length, so the attention mask matters; position p + 1 always holds pixel p.

    Parameters
    ----------
    pixels : numpy.ndarray
        Integer pixel values 0..16, shape (N, 8, 8).

    Returns
    -------
    input_ids : torch.Tensor
        int64, shape (N, TOKEN_SEQ_LEN).
    attention_mask : torch.Tensor
        int64, shape (N, TOKEN_SEQ_LEN): 1 for real tokens, 0 for padding.
    """
    flat = pixels.reshape(len(pixels), 64)
    ids = np.full((len(flat), TOKEN_SEQ_LEN), TOKEN_PAD, dtype=np.int64)
    mask = np.zeros((len(flat), TOKEN_SEQ_LEN), dtype=np.int64)
    for row, image in enumerate(flat):
        nonzero = np.flatnonzero(image)
        n = int(nonzero[-1]) + 1 if nonzero.size else 0
        ids[row, 0] = TOKEN_CLS
        ids[row, 1 : n + 1] = image[:n] + TOKEN_PIXEL0
        ids[row, n + 1] = TOKEN_SEP
        mask[row, : n + 2] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def token_data() -> ClassificationData:
    """Digits as (input_ids, attention_mask) token sequences (see :func:`pixel_tokens`)."""
    pixels, labels = digits()
    train_idx, test_idx = digits_split()
    train = pixel_tokens(pixels[train_idx])
    test = pixel_tokens(pixels[test_idx])
    return ClassificationData(
        train,
        torch.from_numpy(labels[train_idx].copy()),
        test,
        torch.from_numpy(labels[test_idx].copy()),
    )


def knn_adjacency(features: np.ndarray, k: int = GCN_NEIGHBOURS) -> np.ndarray:
    """Symmetric 0/1 k-nearest-neighbour adjacency (Euclidean, no self loops).

    Node i links to its k nearest other nodes (ties broken by index), then A = max(A, A^T).

    Parameters
    ----------
    features : numpy.ndarray
        float, shape (N, F).
    k : int
        Neighbours per node before symmetrisation.

    Returns
    -------
    numpy.ndarray
        float32, shape (N, N).
    """
    x = features.astype(np.float64)
    sq = (x * x).sum(axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    adj = np.zeros(dist.shape, dtype=np.float32)
    adj[np.arange(len(x))[:, None], nearest] = 1.0
    return np.maximum(adj, adj.T)


def normalized_adjacency(adj: np.ndarray) -> np.ndarray:
    """Kipf & Welling's renormalised adjacency D^-1/2 (A + I) D^-1/2, float32."""
    a_hat = adj.astype(np.float64) + np.eye(len(adj))
    d_inv_sqrt = 1.0 / np.sqrt(a_hat.sum(axis=1))
    return (a_hat * d_inv_sqrt[:, None] * d_inv_sqrt[None, :]).astype(np.float32)


@lru_cache(maxsize=2)
def _gcn_graph(k: int) -> tuple[np.ndarray, np.ndarray]:
    pixels, _ = digits()
    features = pixels.reshape(len(pixels), 64).astype(np.float32) / 16.0
    a_norm = normalized_adjacency(knn_adjacency(features, k))
    features.setflags(write=False)
    a_norm.setflags(write=False)
    return features, a_norm


def gcn_split(
    seed: int = SPLIT_SEED, per_class: int = GCN_LABELS_PER_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """Semi-supervised node split: ``per_class`` labelled nodes per class; the rest are test nodes.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        Sorted, disjoint int64 node indices covering every node.
    """
    _, labels = digits()
    rng = np.random.default_rng(seed)
    train = [
        rng.choice(np.flatnonzero(labels == cls), size=per_class, replace=False)
        for cls in range(DIGITS_CLASSES)
    ]
    train_idx = np.sort(np.concatenate(train))
    test_idx = np.setdiff1d(np.arange(len(labels)), train_idx)
    return train_idx, test_idx


def gcn_graph(k: int = GCN_NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """Node features (1797, 64) in [0, 1] and the dense normalised adjacency (1797, 1797)."""
    features, a_norm = _gcn_graph(k)
    return torch.from_numpy(features.copy()), torch.from_numpy(a_norm.copy())


def graph_data(k: int = GCN_NEIGHBOURS) -> ClassificationData:
    """The node classification task: whole-graph inputs, node labels and train/test node masks."""
    features, _ = gcn_graph(k)
    _, labels = digits()
    train_idx, test_idx = gcn_split()
    all_labels = torch.from_numpy(labels.copy())
    return ClassificationData(
        (features,),
        all_labels[train_idx],
        (features,),
        all_labels[test_idx],
        train_mask=torch.from_numpy(train_idx),
        test_mask=torch.from_numpy(test_idx),
    )
