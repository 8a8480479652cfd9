"""DataSplits and the seeded, stratified split shared by every data source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SPLIT_VERSION", "DataSplits", "class_interleaved", "split_indices"]

#: Version of the rule :func:`split_indices` follows; a cache of anything trained on a
#: split (the pretrained built-in models) is stale when it records another version.
#: 1: each split in ascending index order (class-sorted sources gave class-sorted splits).
#: 2: each split in a seeded, class-interleaved order (every prefix is class-balanced).
SPLIT_VERSION = 2

Pair = tuple[torch.Tensor, torch.Tensor]
Part = Pair | Dataset[Any]


@dataclass(frozen=True)
class DataSplits:
    """A data set split into train / validation / test parts.

    Parts are in-memory ``(images, labels)`` pairs, or ``Dataset`` objects streamed from
    disk (an ImageFolder loaded with ``stream=True``).

    Attributes:
        name: The data set's name (a built-in name, or the path it was loaded from).
        train: ``(images, labels)``: float32 tensor (N, C, H, W) and int64 tensor (N,).
        val: Validation pair, used by the search to score candidates.
        test: Test pair, used only for final reporting.
        num_classes: Number of classes; labels lie in ``[0, num_classes)``.
        input_shape: Shape of one image, ``(C, H, W)``.
        class_names: Names of the classes (ImageFolder directory names; else ``"0"``, ...).
    """

    name: str
    train: Part
    val: Part
    test: Part
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] = field(default=())

    def sizes(self) -> dict[str, int]:
        """Number of images per split, e.g. ``{"train": 3500, "val": 500, "test": 1000}``."""
        return {k: _size(getattr(self, k)) for k in ("train", "val", "test")}


def _size(part: Part) -> int:
    return len(part[1]) if isinstance(part, tuple) else len(part)  # type: ignore[arg-type]


def class_interleaved(ids: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """``ids`` in a seeded order where every prefix holds each class in its share.

    Each class's members are shuffled; the ``k``-th member (0-based) of a class with ``n``
    members gets the key ``(k + u) / n`` with ``u`` uniform in [0, 1), and the ids are
    sorted by key. Any prefix of length ``m`` then holds ``m * n / len(ids)`` members of each
    class, give or take one.

    Args:
        ids: Sample indices, shape (M,).
        labels: Integer labels of all samples (indexed by ``ids``).
        seed: Random seed of the shuffle.

    Returns:
        A permutation of ``ids``.
    """
    ids = np.asarray(ids)
    rng = np.random.default_rng(seed)
    ids = ids[rng.permutation(len(ids))]
    keys = np.empty(len(ids), dtype=np.float64)
    ids_labels = labels[ids]
    jitter = rng.random(len(ids))
    for c in np.unique(ids_labels):
        members = np.flatnonzero(ids_labels == c)
        keys[members] = (np.arange(len(members)) + jitter[members]) / len(members)
    return ids[np.argsort(keys, kind="stable")]


def split_indices(
    labels: np.ndarray, *, n_val: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split sample indices into train / val / test, stratified by label, seeded.

    First ``n_test`` indices are drawn for the test split, then ``n_val`` of the rest for
    validation (scikit-learn ``train_test_split`` with ``stratify``, ``random_state=seed``).
    When a class is too small to stratify, the split falls back to a plain seeded shuffle.
    Each split is then put in a seeded class-interleaved order (:func:`class_interleaved`),
    so any prefix (``train[:n]``) is class-balanced even when the source is sorted by class.

    Args:
        labels: Integer labels, shape (N,).
        n_val: Number of validation samples.
        n_test: Number of test samples (0: the source has its own test set).
        seed: Random seed of the split and of the order.

    Returns:
        Index arrays ``(train, val, test)``; disjoint, together ``0..N-1``; the same for the
        same labels and seed.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))

    def _split(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            rest, part = train_test_split(ids, test_size=n, random_state=seed, stratify=labels[ids])
        except ValueError:  # a class with a single member, or n < number of classes
            rest, part = train_test_split(ids, test_size=n, random_state=seed)
        return np.asarray(rest), np.asarray(part)

    rest, test = _split(idx, n_test) if n_test > 0 else (idx, idx[:0])
    train, val = _split(rest, n_val)  # the same members as version 1, a new order
    return (
        class_interleaved(np.sort(train), labels, seed),
        class_interleaved(np.sort(val), labels, seed + 1),
        class_interleaved(np.sort(test), labels, seed + 2),
    )
