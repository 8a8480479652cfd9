"""``load_data``: built-in names, ImageFolder directories and ``.pt`` tensor files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rankopt.data._builtin import BUILTIN_DATA, load_builtin
from rankopt.data._folder import GRAY_MODES, resolve_image_size, stream_image_folder
from rankopt.data._idx import is_idx_dir, load_idx_dir
from rankopt.data._splits import DataSplits, split_indices
from rankopt.errors import DataError, UnknownNameError, first_line

__all__ = ["TENSOR_SUFFIXES", "list_data", "load_data", "split_tensors"]

TENSOR_SUFFIXES = (".pt", ".pth")
_VAL_FRACTION = 0.1
_TEST_FRACTION = 0.2
_MIN_SAMPLES = 10


def list_data() -> list[str]:
    """Names of the built-in data sets, sorted."""
    return sorted(BUILTIN_DATA)


def load_data(
    spec: str | os.PathLike[str],
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    stream: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataSplits:
    """Load a data set and split it into train / val / test.

    ``spec`` is, in this order of precedence:

    * a built-in name (:func:`list_data`: ``mnist5k``, ``digits``, ``fashion-mnist``), with
      its fixed split (``seed`` is ignored; write ``./digits`` to load a directory of that
      name); fashion-mnist reads Debian's ``/usr/share/datasets/fashion-mnist`` or the folder
      in ``$RANKOPT_FASHION_MNIST_DIR`` (:mod:`rankopt.data._idx`);
    * a directory holding the four MNIST-format idx files (``train-images-idx3-ubyte[.gz]``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``):
      split as fashion-mnist (the t10k files are the test split), pixels scaled to [0, 1]
      and normalised by ``mean`` / ``std`` when given;
    * a directory in ``torchvision.datasets.ImageFolder`` layout (``root/<class>/<image>``):
      every image is loaded into memory, resized to ``image_size`` (default: the size of
      the first image) and scaled to [0, 1]; the images are 1-channel when every file is
      grayscale, else 3-channel RGB;
    * a ``.pt`` / ``.pth`` file holding ``(images, labels)`` (tuple or list) or a dict with
      keys ``"images"`` and ``"labels"``: images of shape (N, C, H, W) or (N, H, W), used as
      given (uint8 images are scaled to [0, 1]), labels an integer tensor of shape (N,)
      with values in ``[0, num_classes)``.

    User data is split 70 / 10 / 20 % (train / val / test), stratified by class, seeded.

    Args:
        spec: Built-in name or path.
        seed: Seed of the split of user data.
        image_size: ImageFolder only: target size in pixels, ``s`` or ``(height, width)``.
        stream: ImageFolder: keep the images on disk; the splits are ``Dataset``
            objects decoded batch by batch through torchvision transforms
            (:func:`rankopt.data._folder.stream_image_folder`). fashion-mnist and idx
            folders: ``Dataset`` parts that hold uint8 pixels and normalise each batch.
        mean: ImageFolder with ``stream``: per-channel mean to normalise with.
        std: ImageFolder with ``stream``: per-channel standard deviation.

    Returns:
        The split data set.

    Raises:
        UnknownNameError: ``spec`` is neither a built-in name nor an existing path.
        DataError: the path does not exist, cannot be read, or holds data that breaks a rule
            (shapes, label dtype, fewer than 2 classes, fewer than 10 samples, ...).
    """
    text = os.fspath(spec)
    if text in BUILTIN_DATA:
        return load_builtin(text, stream=stream)
    path = Path(text).expanduser()
    if is_idx_dir(path):
        return load_idx_dir(
            path, name=text, stream=stream, mean=_one(mean, 0.0), std=_one(std, 1.0)
        )
    if path.is_dir():
        if stream:
            return stream_image_folder(path, seed=seed, image_size=image_size, mean=mean, std=std)
        return _load_image_folder(path, seed=seed, image_size=image_size)
    if path.is_file():
        if path.suffix.lower() in TENSOR_SUFFIXES:
            return _load_tensor_file(path, seed=seed)
        raise DataError(
            f"data file {text!r} has suffix {path.suffix!r}; a data file must be "
            f"a {' or '.join(TENSOR_SUFFIXES)} tensor file (or give a directory "
            f"in ImageFolder layout)"
        )
    if path.exists():
        raise DataError(f"data path {text!r} is neither a regular file nor a directory")
    if os.sep in text or "/" in text or path.suffix.lower() in TENSOR_SUFFIXES:
        raise DataError(f"data path {text!r} does not exist")
    raise UnknownNameError("data set", text, BUILTIN_DATA)


def _one(values: Sequence[float] | None, default: float) -> float:
    """The one normalisation constant of a grey idx data set."""
    if values is None:
        return default
    if len(values) != 1:
        raise DataError(f"mean / std {list(values)}: idx images have 1 channel; give 1 value")
    if default == 1.0 and not values[0] > 0:
        raise DataError(f"std {values[0]} must be > 0")
    return float(values[0])


# --------------------------------------------------------------------- shared split
def split_tensors(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    name: str,
    seed: int = 0,
    class_names: tuple[str, ...] | None = None,
) -> DataSplits:
    """Validate an in-memory data set and split it 70 / 10 / 20 %, stratified and seeded.

    Args:
        images: Images, (N, C, H, W) or (N, H, W); converted to float32 (uint8 scaled to
            [0, 1]).
        labels: Integer class indices, shape (N,), values in ``[0, num_classes)``.
        name: Name used in messages and in the result.
        seed: Seed of the split.
        class_names: Optional class names (one per class).

    Returns:
        The split data set.

    Raises:
        DataError: a rule is broken; the message names ``name``, the value and the rule.
    """
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(
            f"{name}: images and labels must be torch tensors, got "
            f"{type(images).__name__} and {type(labels).__name__}"
        )
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or min(images.shape) < 1:
        raise DataError(
            f"{name}: images must have shape (N, C, H, W) or (N, H, W), got {tuple(images.shape)}"
        )
    if images.dtype == torch.bool or images.is_complex():
        raise DataError(f"{name}: images must be real numbers, got dtype {images.dtype}")
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"{name}: images contain NaN or infinite values")
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise DataError(
            f"{name}: labels must be an integer tensor of class indices, got dtype {labels.dtype}"
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{name}: labels must have shape (N,) = ({images.shape[0]},) to match "
            f"the images, got {tuple(labels.shape)}"
        )
    labels = labels.long()
    n = int(labels.shape[0])
    if n < _MIN_SAMPLES:
        raise DataError(
            f"{name}: {n} samples; at least {_MIN_SAMPLES} are needed for the "
            f"70/10/20 train/val/test split"
        )
    if int(labels.min()) < 0:
        raise DataError(f"{name}: labels must be class indices >= 0, got {int(labels.min())}")
    num_classes = int(labels.max()) + 1
    n_distinct = int(torch.unique(labels).numel())
    if n_distinct < 2:
        raise DataError(
            f"{name}: labels hold {n_distinct} class; at least 2 classes are "
            f"needed for classification"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"{name}: {len(class_names)} class names for {num_classes} classes")
    n_val = max(1, round(_VAL_FRACTION * n))
    n_test = max(1, round(_TEST_FRACTION * n))
    parts = split_indices(labels.numpy(), n_val=n_val, n_test=n_test, seed=seed)
    train, val, test = (
        (images[torch.from_numpy(p)].contiguous(), labels[torch.from_numpy(p)].contiguous())
        for p in parts
    )
    c, h, w = (int(s) for s in images.shape[1:])
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=(c, h, w),
        class_names=class_names or tuple(str(i) for i in range(num_classes)),
    )


# --------------------------------------------------------------------- .pt files
def _load_tensor_file(path: Path, *, seed: int) -> DataSplits:
    name = str(path)
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"data file {name!r} cannot be read as a torch tensor file: {first_line(exc)}"
        ) from exc
    if isinstance(obj, dict):
        missing = [k for k in ("images", "labels") if k not in obj]
        if missing:
            raise DataError(
                f"data file {name!r} holds a dict without key(s) "
                f"{', '.join(map(repr, missing))}; expected keys 'images' and "
                f"'labels' (found {', '.join(map(repr, list(obj)[:10]))})"
            )
        images, labels = obj["images"], obj["labels"]
    elif isinstance(obj, tuple | list) and len(obj) == 2:
        images, labels = obj
    else:
        raise DataError(
            f"data file {name!r} holds a {type(obj).__name__}; expected a tuple "
            f"(images, labels) or a dict with keys 'images' and 'labels'"
        )
    return split_tensors(images, labels, name=name, seed=seed)


# --------------------------------------------------------------------- ImageFolder
def _load_image_folder(
    path: Path, *, seed: int, image_size: int | tuple[int, int] | None
) -> DataSplits:
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    name = str(path)
    try:
        folder = ImageFolder(str(path), loader=lambda p: p)  # the loader returns the path
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"data directory {name!r} is not in ImageFolder layout "
            f"(root/<class>/<image file>): {exc}"
        ) from exc
    pil_images: list[Image.Image] = []
    labels: list[int] = []
    for file, label in folder.samples:
        try:
            with Image.open(file) as opened:
                opened.load()
                pil_images.append(opened.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image file {file!r} cannot be read: {exc}") from exc
        labels.append(int(label))
    grayscale = all(im.mode in GRAY_MODES for im in pil_images)
    mode = "L" if grayscale else "RGB"
    size = resolve_image_size(image_size, pil_images[0].size)
    tensors = []
    for original in pil_images:
        im = original.convert(mode)
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        tensors.append(pil_to_tensor(im))
    images = torch.stack(tensors).float() / 255.0
    return split_tensors(
        images,
        torch.tensor(np.asarray(labels, dtype=np.int64)),
        name=name,
        seed=seed,
        class_names=tuple(folder.classes),
    )
