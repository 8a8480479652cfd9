"""Data as PyTorch users hold it: a tensor pair, a ``Dataset`` or a ``DataLoader``.

:func:`as_split` wraps any of them in a :class:`Split`, which the search reads in two ways
only: :meth:`Split.batches` streams ``(images, labels)`` batches (validation, evaluation,
teacher logits), and :meth:`Split.sample` materialises a seeded sample of ``n`` images (the
proxy fine-tune's training sample), reading only those ``n`` items from a ``Dataset``.
A tensor pair and a ``TensorDataset`` of the same tensors give the same sample and batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from rankopt.errors import DataError

__all__ = ["EVAL_BATCH", "Batches", "Split", "as_split"]

EVAL_BATCH = 128
"""Images per forward pass when rankopt evaluates (accuracy, logits) without gradients.

Evaluation memory is this many images' activations, whatever the split's size: a fixed
batch keeps a search's peak resident memory independent of the validation split (with 512,
a 200-image split was one batch of 200 and an 800-image split batches of 512, which alone
grew the peak by ~150 MB for resnet8 on 64x64 images). 128 costs no measurable speed on the
CPU for the built-in models.
"""

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class _TensorBatches:
    """Re-iterable ``(images, labels)`` slices of a tensor pair."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.images.shape[0], self.batch_size):
            yield self.images[i : i + self.batch_size], self.labels[i : i + self.batch_size]

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)


def _pair(item: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of one item or batch; DataError naming the type otherwise."""
    if isinstance(item, tuple | list) and len(item) >= 2:
        x, y = item[0], item[1]
        if not isinstance(x, torch.Tensor):
            raise DataError(
                f"{where} yields images of type {type(x).__name__}; rankopt needs tensors "
                "(add a transform such as torchvision.transforms.ToTensor())"
            )
        return x, torch.as_tensor(y)
    raise DataError(
        f"{where} yields {type(item).__name__} items; rankopt needs (image, label) pairs"
    )


class Split:
    """A training or validation split, streamed in batches or sampled by index.

    Args:
        data: ``(images, labels)`` tensors, a map-style or iterable ``Dataset`` of
            ``(image, label)`` items, or a ``DataLoader`` yielding ``(images, labels)``.
        name: ``"training"`` or ``"validation"`` (in messages).
        num_workers: ``DataLoader`` workers when rankopt batches a ``Dataset`` itself.

    Raises:
        DataError: ``data`` is none of these; the message names its type.
    """

    def __init__(self, data: Any, name: str, *, num_workers: int = 0) -> None:
        self.name = name
        self.num_workers = num_workers
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dataset: Dataset[Any] | None = None
        self.loader: DataLoader[Any] | None = None
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        if isinstance(data, tuple | list) and len(data) == 2:
            images, labels = data
            if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
                raise DataError(
                    f"{name} data is a pair of {type(images).__name__} and "
                    f"{type(labels).__name__}; a pair must be (images, labels) tensors"
                )
            self.tensors = (images, labels)
            self.kind = "tensor pair"
        elif isinstance(data, DataLoader):
            self.loader = data
            self.kind = "DataLoader"
        elif isinstance(data, Dataset):
            self.dataset = data
            self.kind = type(data).__name__
        else:
            raise DataError(
                f"{name} data is a {type(data).__module__}.{type(data).__name__}; rankopt "
                "takes an (images, labels) tensor pair, a torch.utils.data.Dataset of "
                "(image, label) items, or a DataLoader yielding (images, labels) batches"
            )

    # ----------------------------------------------------------------- reading
    def _map_dataset(self) -> Dataset[Any] | None:
        """The indexable dataset behind the split (None for tensors and iterable data)."""
        ds = self.dataset if self.dataset is not None else None
        if ds is None and self.loader is not None:
            ds = self.loader.dataset
        if ds is None or isinstance(ds, IterableDataset) or not isinstance(ds, Sized):
            return None
        return ds

    def __len__(self) -> int:
        """Number of images (a ``DataLoader`` over an iterable dataset: unknown -> 0)."""
        if self.tensors is not None:
            return int(self.tensors[0].shape[0])
        ds = self._map_dataset()
        return len(ds) if isinstance(ds, Sized) else 0

    def batches(self, batch_size: int = EVAL_BATCH) -> Batches:
        """Re-iterable ``(images, labels)`` batches in a fixed order (a ``DataLoader``: its own)."""
        if self.tensors is not None:
            return _TensorBatches(*self.tensors, batch_size)
        if self.loader is not None:
            return _Checked(self.loader, f"{self.name} DataLoader")
        assert self.dataset is not None
        loader: DataLoader[Any] = DataLoader(
            self.dataset, batch_size=batch_size, shuffle=False, num_workers=self.num_workers
        )
        return _Checked(loader, f"{self.name} {self.kind}")

    def training_batches(self, batch_size: int, seed: int) -> Batches:
        """Re-iterable ``(images, labels)`` batches for epoch training, streamed.

        Every pass is one epoch in a fresh order drawn from a generator seeded with
        ``seed`` (a ``DataLoader`` with ``shuffle=True``); a ``DataLoader`` split is used as
        it is (its own batch size and order). Only one batch is in memory at a time (a
        tensor pair is already in memory and is sliced).

        Args:
            batch_size: Images per batch (>= 1).
            seed: Seed of the epochs' orders.
        """
        if self.loader is not None:
            return _Checked(self.loader, f"{self.name} DataLoader")
        dataset = TensorDataset(*self.tensors) if self.tensors is not None else self.dataset
        assert dataset is not None
        loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
        )
        return _Checked(loader, f"{self.name} {self.kind}")

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first batch (a single item as a batch of one for a ``Dataset``), read once."""
        if self._first is None:
            self._first = self._read_first()
        return self._first

    def _read_first(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tensors is not None:
            return self.tensors[0][:1], self.tensors[1][:1]
        ds = self._map_dataset()
        if self.loader is None and ds is not None:
            if len(ds) == 0:  # type: ignore[arg-type]
                raise DataError(f"{self.name} {self.kind} is empty")
            x, y = _pair(ds[0], f"{self.name} {self.kind}")
            return x.unsqueeze(0), y.reshape(1)
        for batch in self.batches(1):
            return batch
        raise DataError(f"{self.name} {self.kind} is empty")

    def known_labels(self) -> torch.Tensor | None:
        """All labels when they are at hand without reading images, else None."""
        if self.tensors is not None:
            return self.tensors[1]
        ds = self._map_dataset()
        if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
            return ds.tensors[1]
        targets = getattr(ds, "targets", None)
        if targets is not None and ds is not None and len(targets) == len(ds):  # type: ignore[arg-type]
            return torch.as_tensor(targets)
        return None

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded sample of ``min(n, len)`` images and labels, in memory.

        A tensor pair or indexable ``Dataset`` (also behind a ``DataLoader``): the first
        ``n`` of ``torch.randperm(len, seed)``, reading only those items. A ``DataLoader``
        over an iterable dataset: its first ``n`` images.
        """
        if self.tensors is not None:
            images, labels = self.tensors
            order = _order(images.shape[0], n, seed)
            return images[order].contiguous(), labels[order].contiguous()
        ds = self._map_dataset()
        if ds is not None:
            order = _order(len(ds), n, seed)  # type: ignore[arg-type]
            return _read_items(ds, order, f"{self.name} {self.kind}")
        xs_list, ys_list, have = [], [], 0
        for x, y in self.batches():
            xs_list.append(x)
            ys_list.append(y)
            have += int(x.shape[0])
            if have >= n:
                break
        if not xs_list:
            raise DataError(f"{self.name} {self.kind} is empty")
        return torch.cat(xs_list)[:n], torch.cat(ys_list)[:n].long()


class _Checked:
    """Iterates a ``DataLoader``, checking that every batch is an (images, labels) pair."""

    def __init__(self, loader: DataLoader[Any], where: str) -> None:
        self.loader = loader
        self.where = where

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            yield _pair(batch, self.where)

    def __len__(self) -> int:
        """Batches per pass (a ``TypeError`` for a loader over an unsized iterable dataset)."""
        return len(self.loader)


def _read_items(
    ds: Dataset[Any], order: torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``order`` of ``ds`` stacked into ``(images, labels)``, one copy in memory.

    The images tensor is allocated once from the first item's shape and filled item by item
    (a list of items then ``torch.stack`` held the sample twice at its peak).
    """
    if order.numel() == 0:
        raise DataError(f"{where} is empty")
    first_x, first_y = _pair(ds[int(order[0])], where)
    xs = torch.empty((order.numel(), *first_x.shape), dtype=first_x.dtype)
    ys = torch.empty(order.numel(), dtype=torch.int64)
    for k, i in enumerate(order.tolist()):
        x, y = (first_x, first_y) if k == 0 else _pair(ds[int(i)], where)
        if x.shape != first_x.shape:
            raise DataError(
                f"{where} item {i} has image shape {tuple(x.shape)}, item {int(order[0])} "
                f"{tuple(first_x.shape)}; every image must have the same shape (resize them)"
            )
        xs[k] = x
        ys[k] = int(y.reshape(()))
    return xs, ys


def _order(total: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=gen)[: min(n, total)]


def as_split(data: Any, name: str, *, num_workers: int = 0) -> Split:
    """Wrap ``data`` (tensor pair, ``Dataset`` or ``DataLoader``) as a :class:`Split`."""
    return data if isinstance(data, Split) else Split(data, name, num_workers=num_workers)
