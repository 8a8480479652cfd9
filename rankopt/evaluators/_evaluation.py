"""Inference: logits, top-1 accuracy and cross-entropy of a model on images (no grad,
eval mode, the model's training mode restored afterwards)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from rankopt.data import EVAL_BATCH
from rankopt.errors import DataError
from rankopt.evaluators._common import check_pair, device_of, model_mode
from rankopt.evaluators._device import Device, on_device, resolve_device

__all__ = [
    "Images",
    "accuracy_and_loss",
    "compute_logits",
    "compute_logits_and_labels",
    "evaluate_accuracy",
    "evaluate_accuracy_and_loss",
]

Images = torch.Tensor | Iterable[Any]
"""(N, C, H, W) tensor, or an iterable of batches (a DataLoader): image tensors or
``(images, labels, ...)`` tuples, streamed batch by batch."""


def _batches(images: Images, batch_size: int) -> Iterator[tuple[torch.Tensor, Any]]:
    """``(images, labels or None)`` batches of a tensor or a batch iterable."""
    if isinstance(images, torch.Tensor):
        for i in range(0, images.shape[0], batch_size):
            yield images[i : i + batch_size], None
        return
    for batch in images:
        if isinstance(batch, torch.Tensor):
            yield batch, None
        elif isinstance(batch, tuple | list) and batch and isinstance(batch[0], torch.Tensor):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise DataError(
                f"a batch of type {type(batch).__name__}; batches must be image tensors or "
                "(images, labels) tuples of tensors"
            )


@torch.no_grad()
def compute_logits_and_labels(
    model: nn.Module,
    images: Images,
    *,
    batch_size: int = EVAL_BATCH,
    device: Device | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, K) float32 on the CPU, and the batches' labels (N,) int64 when they have.

    One streamed pass; see :func:`compute_logits` for the arguments.
    """
    if device is not None:
        model = on_device(model, resolve_device(device))
    dev = device_of(model)
    outs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    with model_mode(model, False):
        for x, y in _batches(images, batch_size):
            outs.append(model(x.to(dev, non_blocking=True)).float().cpu())
            if y is not None:
                labels.append(torch.as_tensor(y).reshape(-1).long().cpu())
    if not outs:
        raise DataError("compute_logits: no images")
    logits = torch.cat(outs)
    all_labels = torch.cat(labels) if len(labels) == len(outs) else None
    return logits, all_labels


def compute_logits(
    model: nn.Module,
    images: Images,
    *,
    batch_size: int = EVAL_BATCH,
    device: Device | None = None,
) -> torch.Tensor:
    """Logits of ``model`` on ``images`` in eval mode (e.g. the teacher's, once per study).

    Args:
        model: The network; its training mode is restored afterwards.
        images: (N, C, H, W) float tensor (any device; moved batch by batch), or an
            iterable of batches (a ``DataLoader``; ``(images, labels)`` tuples or tensors),
            streamed.
        batch_size: Images per forward pass (tensor input).
        device: Run there (``"auto"``, ``"cpu"``, ``"cuda"``; a copy of the model is moved
            when it is elsewhere); None: the model's own device.

    Returns:
        (N, K) float32 tensor on the CPU.
    """
    return compute_logits_and_labels(model, images, batch_size=batch_size, device=device)[0]


def evaluate_accuracy(
    model: nn.Module,
    images: Images,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = EVAL_BATCH,
    device: Device | None = None,
) -> float:
    """Top-1 accuracy of ``model`` (eval mode, no grad; training mode restored afterwards).

    Args:
        model: The network.
        images: (N, C, H, W) float tensor, or an iterable of ``(images, labels)`` batches
            (a ``DataLoader``), streamed.
        labels: (N,) int64 class indices; None: the batches' labels.
        batch_size: Images per forward pass.
        device: As in :func:`compute_logits` (None: the model's own device).

    Returns:
        Fraction of correctly classified images, in [0, 1].
    """
    accuracy, _loss = evaluate_accuracy_and_loss(
        model, images, labels, batch_size=batch_size, device=device
    )
    return accuracy


def evaluate_accuracy_and_loss(
    model: nn.Module,
    images: Images,
    labels: torch.Tensor | None = None,
    *,
    batch_size: int = EVAL_BATCH,
    device: Device | None = None,
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy (nats per image) in one pass; arguments as in
    :func:`evaluate_accuracy`.

    The loss is the finer signal: on a few hundred validation images the accuracy moves in
    steps of ``1 / N`` and ties between plans are common, the loss does not.
    """
    if isinstance(images, torch.Tensor) or labels is not None:
        if labels is None:
            raise DataError("evaluate_accuracy: images given as a tensor need labels")
        if isinstance(images, torch.Tensor):
            check_pair(images, labels, "evaluate_accuracy")
    logits, batch_labels = compute_logits_and_labels(
        model, images, batch_size=batch_size, device=device
    )
    if labels is None:
        if batch_labels is None:
            raise DataError("evaluate_accuracy: the batches carry no labels; pass labels")
        labels = batch_labels
    if labels.shape[0] != logits.shape[0]:
        raise DataError(f"evaluate_accuracy: {logits.shape[0]} images but {labels.shape[0]} labels")
    return accuracy_and_loss(logits, labels)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy (nats per image) of (N, K) logits."""
    labels = labels.to(logits.device)
    accuracy = float((logits.argmax(dim=1) == labels).float().mean().item())
    return accuracy, float(torch.nn.functional.cross_entropy(logits, labels).item())
