"""The proxy fine-tune and its pieces: distillation loss, batch sampling, shift augmentation
(inference: ``_evaluation.py``; epoch training: ``_epochs.py``).

Everything here is deterministic under a seed on CPU: batch order and augmentation come from
a private :class:`torch.Generator`, never from the global random state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rankopt.errors import DataError, SettingsError, TrialFailedError
from rankopt.evaluators._common import check_pair, device_of, model_mode
from rankopt.evaluators._evaluation import Images, evaluate_accuracy, evaluate_accuracy_and_loss

__all__ = ["FinetuneResult", "distillation_loss", "proxy_finetune"]


# ======================================================================= proxy fine-tune pieces
def shift_batch(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Randomly translate each image by up to ``max_shift`` pixels (edge padding)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    offs = torch.randint(0, 2 * s + 1, (n, 2), generator=gen)
    rows = (offs[:, 0:1] + torch.arange(h)).view(n, 1, h, 1)
    cols = (offs[:, 1:2] + torch.arange(w)).view(n, 1, 1, w)
    batch = torch.arange(n).view(n, 1, 1, 1)
    chans = torch.arange(x.shape[1]).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]


class BatchSampler:
    """Endless seeded mini-batches: a fresh permutation per pass, last partial batch kept."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        self.n, self.batch_size, self.gen = n, max(1, min(batch_size, n)), gen
        self._perm = torch.randperm(n, generator=gen)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos >= self.n:
            self._perm = torch.randperm(self.n, generator=self.gen)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    distill_weight: float = 0.5,
) -> torch.Tensor:
    """Hinton knowledge-distillation loss.

    ``(1 - w) * CE(student, labels) + w * T**2 * KL(softmax(teacher / T) || softmax(student / T))``
    (batch mean). Without teacher logits it is plain cross-entropy.

    Args:
        student_logits: (N, K) logits of the model being trained.
        labels: (N,) int64 class indices.
        teacher_logits: (N, K) logits of the dense model, or None.
        temperature: Softmax temperature T (> 0).
        distill_weight: Weight w in [0, 1] of the distillation term.

    Returns:
        A scalar loss tensor.
    """
    ce = F.cross_entropy(student_logits, labels)
    if teacher_logits is None or distill_weight == 0.0:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - distill_weight) * ce + distill_weight * (t * t) * kl


def sgd_update(
    params: Iterable[torch.Tensor],
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float | None,
) -> None:
    """Backward, the gradients of ``params`` clipped to ``max_grad_norm`` (None: not
    clipped), one optimizer step: every fine-tune's update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()


def raise_non_finite(loss: torch.Tensor, step: int, steps: int | None, lr: float) -> None:
    total = f" of {steps}" if steps is not None else ""
    raise TrialFailedError(
        f"non-finite loss ({loss.item()}) at step {step}{total} (lr={lr:g}); the model "
        f"diverged: lower the learning rate or keep more rank"
    )


# ============================================================================ proxy fine-tune
@dataclass(frozen=True)
class FinetuneResult:
    """Outcome of :func:`proxy_finetune`.

    Attributes:
        accuracy: Validation accuracy after the fine-tune, in [0, 1] (NaN without val data).
        val_loss: Validation cross-entropy after the fine-tune, nats per image (NaN
            without val data).
        steps_done: Optimiser steps taken.
        final_loss: Mean training loss over the last ``min(20, steps)`` steps.
        wall_time_s: Wall time of the fine-tune, including intermediate evaluations (s).
    """

    accuracy: float
    steps_done: int
    final_loss: float
    wall_time_s: float
    val_loss: float = math.nan


def proxy_finetune(
    student: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    temperature: float,
    distill_weight: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    val_images: Images | None = None,
    val_labels: torch.Tensor | None = None,
    report_every: int = 0,
    report: Callable[[int, float], None] | None = None,
    max_grad_norm: float | None = 2.0,
) -> FinetuneResult:
    """Fine-tune a compressed model for a few hundred steps with knowledge distillation.

    SGD (Nesterov momentum) with a cosine learning-rate decay from ``lr`` to 0 over
    ``steps``; loss :func:`distillation_loss`; BatchNorm layers in train mode; batches drawn
    from ``(train_images, train_labels)`` (the caller's fixed subset) in an order fixed by
    ``seed``. The student is modified in place; its training mode is restored at the end.

    Every ``report_every`` steps (when > 0) the validation accuracy is computed and
    ``report(step, accuracy)`` is called; exceptions it raises (e.g. ``optuna.TrialPruned``)
    propagate.

    Args:
        student: The model to fine-tune (in place).
        train_images: (N, C, H, W) float tensor.
        train_labels: (N,) int64 tensor.
        teacher_logits: (N, K) logits of the dense model on ``train_images`` (row-aligned),
            or None for plain cross-entropy.
        steps: Optimiser steps (>= 0).
        batch_size: Images per step.
        lr: Initial learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        temperature: Distillation temperature T.
        distill_weight: Weight w of the distillation term, in [0, 1].
        seed: Seed of the batch order.
        val_images: Validation images for the final and intermediate accuracies (a
            tensor or an iterable of batches, streamed each time).
        val_labels: Validation labels.
        report_every: Report the validation accuracy every this many steps (0: never).
        report: Callback ``report(step, accuracy)``.
        max_grad_norm: Clip the global gradient norm to this (None: no clipping). A freshly
            decomposed chain of low-rank factors can have a few very large gradients in
            its first steps; clipping keeps one such step from wrecking the model.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        TrialFailedError: the loss became NaN or infinite (message: "non-finite loss ...").
        DataError: mismatched tensors, or reports asked for without validation data.
    """
    check_pair(train_images, train_labels, "proxy_finetune train data")
    if teacher_logits is not None and teacher_logits.shape[0] != train_images.shape[0]:
        raise DataError(
            f"proxy_finetune: teacher_logits has {teacher_logits.shape[0]} rows "
            f"for {train_images.shape[0]} training images; they must be row-aligned"
        )
    has_val = val_images is not None and val_labels is not None
    if report_every > 0 and report is not None and not has_val:
        raise DataError("proxy_finetune: report_every > 0 needs val_images and val_labels")
    if not 0.0 <= distill_weight <= 1.0 or not temperature > 0:
        raise SettingsError(
            f"distill_weight={distill_weight} must be in [0, 1] and temperature={temperature} > 0"
        )
    start = time.perf_counter()
    device = device_of(student)
    gen = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(train_images.shape[0], batch_size, gen)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )
    recent: list[float] = []
    with model_mode(student, True):
        for step in range(1, steps + 1):
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps))
            idx = sampler.next()
            x = train_images[idx].to(device)
            y = train_labels[idx].to(device)
            t = teacher_logits[idx].to(device) if teacher_logits is not None else None
            loss = distillation_loss(
                student(x), y, t, temperature=temperature, distill_weight=distill_weight
            )
            if not torch.isfinite(loss):
                raise_non_finite(loss, step, steps, lr)
            sgd_update(params, opt, loss, max_grad_norm)
            recent.append(float(loss.item()))
            del recent[:-20]
            if report_every > 0 and report is not None and step % report_every == 0:
                assert val_images is not None and val_labels is not None
                report(step, evaluate_accuracy(student, val_images, val_labels))
    accuracy, val_loss = (
        evaluate_accuracy_and_loss(student, val_images, val_labels)
        if val_images is not None and val_labels is not None
        else (math.nan, math.nan)
    )
    return FinetuneResult(
        accuracy=accuracy,
        val_loss=val_loss,
        steps_done=steps,
        final_loss=sum(recent) / len(recent) if recent else float("nan"),
        wall_time_s=time.perf_counter() - start,
    )
