"""Small helpers shared by the evaluators: a model's device, a scoped train/eval mode and the
check of an (images, labels) pair."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from rankopt.errors import DataError

__all__ = ["check_pair", "device_of", "model_mode"]


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU when it has none."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put ``model`` in train/eval mode for the block, then restore each module's mode."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, was in saved:
            m.training = was


def check_pair(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` unless ``images`` (N, ...) and ``labels`` (N,) pair up, N > 0."""
    if images.dim() < 2 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{what}: images {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)} must have the same first dimension N and "
            f"labels must be 1-D"
        )
    if images.shape[0] == 0:
        raise DataError(f"{what}: no samples")
