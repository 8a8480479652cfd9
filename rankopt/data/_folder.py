"""An ImageFolder directory streamed from disk: torchvision transforms, split by index."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from rankopt.data._splits import DataSplits, split_indices
from rankopt.errors import DataError

__all__ = ["GRAY_MODES", "resolve_image_size", "stream_image_folder"]

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
"""PIL modes read as one grey channel (every other mode is read as RGB)."""


def resolve_image_size(
    image_size: int | Sequence[int] | None, first_wh: tuple[int, int]
) -> tuple[int, int]:
    """``(height, width)`` images are resized to: ``image_size`` (an int for a square),
    else the first image's size (PIL's ``(width, height)``).

    Raises:
        DataError: a size below 1.
    """
    if image_size is None:
        size = (int(first_wh[1]), int(first_wh[0]))
    elif isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = (int(image_size[0]), int(image_size[1]))
    if min(size) < 1:
        raise DataError(f"image_size {image_size!r} must be positive")
    return size


class _Part(Subset[Any]):
    """A split of the folder that also exposes its ``targets`` (labels without decoding)."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        super().__init__(dataset, indices)
        all_targets = dataset.targets
        self.targets = [int(all_targets[i]) for i in indices]


class _Loader:
    """Opens one image file in a fixed mode; a file that cannot be read is a DataError."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, file: str) -> Any:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as opened:
                return opened.convert(self.mode)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image file {file!r} cannot be read: {exc}") from exc


def _check_stats(name: str, values: Sequence[float] | None, channels: int) -> list[float] | None:
    if values is None:
        return None
    out = [float(v) for v in values]
    if len(out) == 1:
        out = out * channels
    if len(out) != channels:
        raise DataError(
            f"--{name} has {len(out)} values for {channels}-channel images; give 1 or {channels}"
        )
    if name == "std" and not all(v > 0 for v in out):
        raise DataError(f"--std {out}: every value must be > 0")
    return out


def stream_image_folder(
    path: Path,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataSplits:
    """Split an ImageFolder directory 70 / 10 / 20 % without loading its images.

    Only file headers are read here (image size and mode); each image is decoded when a
    batch asks for it, through torchvision transforms: convert to ``L`` (every file
    grayscale) or ``RGB``, ``Resize(image_size)`` (default: the first image's size),
    ``ToTensor`` (scaled to [0, 1]) and ``Normalize(mean, std)`` when given.

    Args:
        path: Root directory (``root/<class>/<image>``).
        seed: Seed of the stratified split.
        image_size: ``s`` or ``(height, width)`` in pixels.
        mean: Per-channel mean (1 value or one per channel) subtracted after scaling.
        std: Per-channel standard deviation (same forms), > 0.

    Returns:
        ``DataSplits`` whose ``train`` / ``val`` / ``test`` are ``Subset`` datasets of
        ``(image (C, H, W) float32, label)`` items (with ``targets``).

    Raises:
        DataError: not ImageFolder layout, an unreadable image, bad mean / std or size.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    name = str(path)
    try:
        probe = ImageFolder(name, loader=lambda p: p)  # lists files; decodes nothing
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"data directory {name!r} is not in ImageFolder layout "
            f"(root/<class>/<image file>): {exc}"
        ) from exc
    modes, first_size = set(), None
    for file, _ in probe.samples:  # headers only (PIL opens lazily)
        try:
            with Image.open(file) as opened:
                modes.add(opened.mode)
                first_size = first_size or opened.size
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image file {file!r} cannot be read: {exc}") from exc
    mode = "L" if modes <= set(GRAY_MODES) else "RGB"
    channels = 1 if mode == "L" else 3
    assert first_size is not None
    size = resolve_image_size(image_size, first_size)
    mean_c = _check_stats("mean", mean, channels)
    std_c = _check_stats("std", std, channels)
    steps: list[Any] = [transforms.Resize(size), transforms.ToTensor()]
    if mean_c is not None or std_c is not None:
        steps.append(transforms.Normalize(mean_c or [0.0] * channels, std_c or [1.0] * channels))
    folder = ImageFolder(name, transform=transforms.Compose(steps), loader=_Loader(mode))
    labels = np.asarray(folder.targets, dtype=np.int64)
    n = len(labels)
    if n < 10:
        raise DataError(f"{name}: {n} images; at least 10 are needed for the 70/10/20 split")
    n_val, n_test = max(1, round(0.1 * n)), max(1, round(0.2 * n))
    train, val, test = (
        _Part(folder, [int(i) for i in part])
        for part in split_indices(labels, n_val=n_val, n_test=n_test, seed=seed)
    )
    num_classes = len(folder.classes)
    if num_classes < 2:
        raise DataError(f"{name}: {num_classes} class directory; at least 2 are needed")
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=(channels, size[0], size[1]),
        class_names=tuple(folder.classes),
    )
