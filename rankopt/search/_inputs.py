"""The model and data a search is given: checked, and the tensors every trial shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from rankopt.errors import DataError, ModelError, RankoptError
from rankopt.evaluators import LatencyTable, compute_logits, latency_table
from rankopt.search._objective import TrialData
from rankopt.spaces import get_method, list_methods

__all__ = ["CALIBRATION_IMAGES", "Data", "check_data", "check_labels", "prepare_data"]

Data = tuple[torch.Tensor, torch.Tensor]
CALIBRATION_IMAGES = 256
"""Training images that re-estimate BatchNorm statistics and score the sensitivity profile."""


def check_data(name: str, data: Data, input_shape: tuple[int, ...]) -> None:
    images, labels = data
    if images.dim() != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
        raise RankoptError(
            f"{name} images have shape {tuple(images.shape)}; expected (N, "
            f"{', '.join(map(str, input_shape))}) to match the model input"
        )
    if labels.shape[0] != images.shape[0] or labels.dim() != 1:
        raise RankoptError(
            f"{name} labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},)"
        )


def check_labels(model: nn.Module, train_data: Data, val_data: Data) -> int:
    """Every label must index one of the model's outputs; returns the number of outputs."""
    with torch.no_grad():
        out = model(train_data[0][:1])
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the model returns {shape} for one image; rankopt needs logits of shape "
            "(batch, classes)"
        )
    n_outputs = int(out.shape[1])
    for name, (_, labels) in (("training", train_data), ("validation", val_data)):
        if labels.numel() == 0:
            continue
        low, top = int(labels.min()), int(labels.max())
        if low < 0 or top >= n_outputs:
            raise DataError(
                f"{name} labels range over {low}..{top} ({top + 1} classes) but the model "
                f"has {n_outputs} outputs; labels must lie in [0, {n_outputs}): use data with "
                f"at most {n_outputs} classes or a model with {top + 1} outputs (--num-classes)"
            )
    return n_outputs


def prepare_data(
    model: nn.Module, train_data: Data, val_data: Data, n_samples: int, seed: int
) -> TrialData:
    images, labels = train_data
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=gen)[: min(n_samples, images.shape[0])]
    train_x, train_y = images[order].contiguous(), labels[order].contiguous()
    val_x, val_y = val_data
    return TrialData(
        train_images=train_x,
        train_labels=train_y,
        teacher_logits=compute_logits(model, train_x),
        val_images=val_x,
        val_labels=val_y,
        val_teacher_logits=compute_logits(model, val_x),
        calibration_images=train_x[:CALIBRATION_IMAGES],
    )


def measure_latency_table(
    model: nn.Module,
    shape: tuple[int, ...],
    methods: Sequence[str] | None,
    say: Callable[[str], None],
) -> LatencyTable:
    """The per-layer latency table of ``model`` on this machine (from the disk cache when
    it was measured before), for the latency-friendly methods among ``methods``."""
    wanted = [
        m
        for m in (methods if methods is not None else list_methods())
        if m != "keep" and get_method(m).latency_friendly
    ]
    last = [0.0]

    def progress(done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done == total:
            say(f"latency table: {done}/{total} measured ({what})")
            last[0] = now

    say(f"latency table on this machine ({torch.get_num_threads()} threads; cached on disk)")
    return latency_table(model, shape, wanted, progress=progress)
