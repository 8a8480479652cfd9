"""Fashion-MNIST (and any MNIST-format data set) read from its four idx files.

The idx format (LeCun's MNIST files): a big-endian header ``0x00 0x00 <type> <n_dims>``,
then ``n_dims`` big-endian uint32 sizes, then the values. Images are type ``0x08`` (uint8)
with 3 dims ``(N, H, W)``; labels are uint8 with 1 dim ``(N,)``. Files may be gzip
compressed (``.gz``, as Debian's ``dataset-fashion-mnist`` installs them).

Split (fixed, ``split_version`` of :mod:`rankopt.data._splits`): the 60,000 training images
are split into 55,000 train and 5,000 validation images (500 per class, stratified, seed 0);
the official 10,000 test images are the test split. Why 5,000 validation images: the
search ranks plans on it; at 90 % accuracy one image is 0.02 points and the binomial std of
an accuracy is 0.42 points on 5,000 images (1.3 points on the 500 of mnist5k), below the
gaps between plans that the benchmark separates.
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rankopt.data._splits import DataSplits, split_indices
from rankopt.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "IDX_FILES",
    "IdxImages",
    "is_idx_dir",
    "load_idx_dir",
    "read_idx",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four idx files."""
FASHION_MNIST_ENV = "RANKOPT_FASHION_MNIST_DIR"
"""Environment variable naming another folder that holds the four Fashion-MNIST files."""
APT_LINE = "apt-get install -y dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four files of an MNIST-format folder (each plain or with ``.gz``)."""
N_VAL = 5000
MEAN = 0.2860
"""Mean pixel of the 60,000 Fashion-MNIST training images, scaled to [0, 1]."""
STD = 0.3530
"""Standard deviation of the same pixels."""
_TYPE_UINT8 = 0x08
_MAX_BYTES = 1 << 31


def read_idx(path: Path, *, n_dims: int) -> np.ndarray:
    """Read one idx file (plain or gzip) into a read-only uint8 array.

    Args:
        path: The file.
        n_dims: Dimensions the file must have (3 for images, 1 for labels).

    Returns:
        The values, shape given by the header.

    Raises:
        DataError: the file cannot be read, is not gzip when named ``.gz``, has a wrong
            magic number (not ``0x0000 08 <n_dims>``), or holds fewer or more bytes than its
            header says (truncated or padded).
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                blob = f.read(_MAX_BYTES)
        else:
            blob = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"idx file {str(path)!r} cannot be read: {exc}") from exc
    expected_magic = bytes((0, 0, _TYPE_UINT8, n_dims))
    if len(blob) < 4 or blob[:4] != expected_magic:
        raise DataError(
            f"idx file {str(path)!r} has magic number 0x{blob[:4].hex() or 'empty'}; an "
            f"idx file of uint8 values with {n_dims} dimension(s) starts with "
            f"0x{expected_magic.hex()}"
        )
    header = 4 + 4 * n_dims
    if len(blob) < header:
        raise DataError(
            f"idx file {str(path)!r} is truncated: {len(blob)} bytes, shorter than its "
            f"{header}-byte header"
        )
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    n_values = int(np.prod(shape))
    if len(blob) != header + n_values:
        what = "truncated" if len(blob) < header + n_values else "longer than its header says"
        raise DataError(
            f"idx file {str(path)!r} is {what}: {len(blob) - header} value bytes, its "
            f"header {shape} says {n_values}"
        )
    values = np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)
    return values


@functools.lru_cache(maxsize=2)
def _read_files(stamps: tuple[tuple[str, int, int], ...]) -> dict[str, np.ndarray]:
    """The four files' arrays, read once per process per (path, mtime, size)."""
    return {
        key: read_idx(Path(stamp[0]), n_dims=3 if key.endswith("images") else 1)
        for key, stamp in zip(IDX_FILES, stamps, strict=True)
    }


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def is_idx_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding the four MNIST-format idx files."""
    return path.is_dir() and all(_find(path, stem) is not None for stem in IDX_FILES.values())


class IdxImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images kept as uint8 and normalised per batch as they are read (streamed).

    Memory is one byte per pixel (55 MB for Fashion-MNIST's training split) instead of
    the four of float32 tensors. Items are ``(image float32 (1, H, W), label int64)``.

    Attributes:
        targets: The labels, int64 tensor (N,).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> None:
        self._images = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
        self.targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self._mean = float(mean)
        self._std = float(std)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def _convert(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw.float().div_(255.0) - self._mean).div_(self._std).unsqueeze(-3)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._convert(self._images[index]), self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch at once (the DataLoader's fast path): one gather, one conversion."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        images = self._convert(self._images[idx])
        labels = self.targets[idx]
        return list(zip(images, labels, strict=True))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items as one ``(images float32 (N, 1, H, W), labels int64 (N,))`` pair."""
        return self._convert(self._images), self.targets.clone()


def _missing_message(root: Path, name: str, missing: list[str], default: bool) -> str:
    listing = ", ".join(missing)
    if default:
        return (
            f"{name}: {listing} not found in {str(root)!r}; install Debian's package "
            f"(`{APT_LINE}`), or set {FASHION_MNIST_ENV} to a folder holding the four idx "
            f"files ({', '.join(s + '.gz' for s in IDX_FILES.values())})"
        )
    return (
        f"{name}: {listing} not found in {str(root)!r}; an MNIST-format folder holds the "
        f"four idx files {', '.join(s + '[.gz]' for s in IDX_FILES.values())}"
    )


def fashion_mnist_root() -> tuple[Path, bool]:
    """The folder Fashion-MNIST is read from, and whether it is Debian's default path."""
    custom = os.environ.get(FASHION_MNIST_ENV)
    return (Path(custom).expanduser(), False) if custom else (FASHION_MNIST_DIR, True)


def load_idx_dir(
    root: Path,
    *,
    name: str,
    stream: bool = False,
    mean: float = MEAN,
    std: float = STD,
    class_names: tuple[str, ...] | None = None,
    default_location: bool = False,
) -> DataSplits:
    """Read an MNIST-format folder: train / val from its train files, test from ``t10k``.

    Args:
        root: The folder.
        name: Data set name (in messages and in the result).
        stream: Return :class:`IdxImages` parts (uint8 in memory, normalised per batch)
            instead of float32 tensor pairs.
        mean: Normalisation mean of pixels scaled to [0, 1].
        std: Normalisation standard deviation (> 0).
        class_names: One name per class (default ``"0"``, ``"1"``, ...).
        default_location: ``root`` is the package's default path (the message for a
            missing file then gives the apt command).

    Returns:
        The split data set: train = the train file less :data:`N_VAL` stratified
        validation images (seed 0), test = the ``t10k`` files.

    Raises:
        DataError: a file is missing, unreadable, truncated or of the wrong magic number,
            image and label counts differ, image sizes differ between train and test, or a
            label is not below the number of classes.
    """
    missing = [stem + ".gz" for stem in IDX_FILES.values() if _find(root, stem) is None]
    if missing:
        raise DataError(_missing_message(root, name, missing, default_location))
    files = tuple(_find(root, stem) for stem in IDX_FILES.values())
    stamps = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f)
    arrays = _read_files(stamps)
    for part in ("train", "test"):
        n_images, n_labels = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_images != n_labels:
            raise DataError(
                f"{name}: {IDX_FILES[part + '_images']} holds {n_images} images but "
                f"{IDX_FILES[part + '_labels']} holds {n_labels} labels; the counts must be equal"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{name}: train images are {arrays['train_images'].shape[1:]} pixels, test images "
            f"{arrays['test_images'].shape[1:]}; both files must hold images of one size"
        )
    num_classes = len(class_names) if class_names else int(arrays["train_labels"].max()) + 1
    for part in ("train", "test"):
        top = int(arrays[f"{part}_labels"].max())
        if top >= num_classes:
            raise DataError(
                f"{name}: {IDX_FILES[part + '_labels']} holds label {top}; labels must be "
                f"class indices below {num_classes}"
            )
    n_train = len(arrays["train_labels"])
    n_val = N_VAL if n_train >= 4 * N_VAL else max(1, n_train // 10)
    train_idx, val_idx, _ = split_indices(arrays["train_labels"], n_val=n_val, n_test=0, seed=0)
    test_labels = arrays["test_labels"]
    parts: list[Any] = [
        IdxImages(arrays["train_images"][train_idx], arrays["train_labels"][train_idx], mean, std),
        IdxImages(arrays["train_images"][val_idx], arrays["train_labels"][val_idx], mean, std),
        IdxImages(arrays["test_images"], test_labels, mean, std),
    ]
    if not stream:
        parts = [p.tensors() for p in parts]
    h, w = (int(s) for s in arrays["train_images"].shape[1:])
    return DataSplits(
        name=name,
        train=parts[0],
        val=parts[1],
        test=parts[2],
        num_classes=num_classes,
        input_shape=(1, h, w),
        class_names=class_names or tuple(str(c) for c in range(num_classes)),
    )


def load_fashion_mnist(*, stream: bool = False) -> DataSplits:
    """Fashion-MNIST from Debian's path, or from ``$RANKOPT_FASHION_MNIST_DIR``.

    See :func:`load_idx_dir` (``name="fashion-mnist"``, the Fashion-MNIST class names and
    normalisation constants).
    """
    root, default = fashion_mnist_root()
    return load_idx_dir(
        root,
        name="fashion-mnist",
        stream=stream,
        class_names=FASHION_MNIST_CLASSES,
        default_location=default,
    )
