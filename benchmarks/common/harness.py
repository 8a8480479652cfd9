"""What every benchmark row gets: its candidate model and the same final fine-tune.

:class:`Candidate` is one row's compressed model (a rankopt plan or a peer's module);
:class:`FinalFinetune` is BatchNorm calibration, the final fine-tune and test accuracy,
the same for every row of a benchmark (``benchmarks.mnist`` fine-tunes on the whole
training split, ``benchmarks.fashion`` on a fixed sample of it).
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

import rankopt
from rankopt.evaluators import compute_logits, evaluate_accuracy, full_finetune

Data = tuple[torch.Tensor, torch.Tensor]
CALIBRATION_IMAGES = 1024
FINAL_MAX_GRAD_NORM = 10.0
"""Final fine-tune clipping: a guard against divergence only."""


def say(line: str) -> None:
    """Progress on stderr."""
    print(line, file=sys.stderr, flush=True)


class Trained(Protocol):
    """A dense model with its splits (``benchmarks.fashion``'s Task, ``mnist``'s BenchModel).

    Attributes:
        model: The dense model (eval mode), the fine-tune's teacher.
        train: Training split.
        test: Test split (every reported accuracy).
    """

    model: nn.Module
    train: Data
    test: Data


def n_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def mkldnn_off(off: bool) -> Iterator[None]:
    """oneDNN convolutions off while the block runs (AIMET's models crash its backward)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = not off and before
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


class FinalFinetune:
    """What every compared model gets: BatchNorm calibration on 1,024 training images,
    then the same fine-tune (distillation from dense, SGD + cosine from ``lr``, clipping
    only at norm 10) on the same training images for ``epochs`` passes, then test accuracy.

    Args:
        task: The dense model (the teacher) and its splits.
        n_images: Fine-tune on a fixed seeded sample of this many training images; None:
            the whole training split, in its order.
        epochs: Passes over the fine-tune images (0: calibration only).
        lr: Initial learning rate.
    """

    def __init__(
        self, task: Trained, *, n_images: int | None = None, epochs: int, lr: float = 0.01
    ) -> None:
        images, labels = task.train
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        self.calibration = images[order[:CALIBRATION_IMAGES]].contiguous()
        if n_images is None:
            self.train = (images.contiguous(), labels.contiguous())
        else:
            pick = order[: min(n_images, len(labels))]
            self.train = (images[pick].contiguous(), labels[pick].contiguous())
        self.teacher = compute_logits(task.model, self.train[0])
        self.whole_split = n_images is None
        self.epochs = epochs
        self.lr = lr
        self.task = task

    def describe(self) -> str:
        """One line for the report."""
        steps = math.ceil(len(self.train[1]) / 64) * self.epochs
        over = "all" if self.whole_split else "a fixed sample of"
        return (
            f"calibrate_bn on {CALIBRATION_IMAGES} training images, then full_finetune "
            f"{self.epochs} epoch(s) over {over} {len(self.train[1])} training "
            f"images ({steps} steps of 64), lr {self.lr}, SGD + cosine, distillation from "
            f"dense (weight 0.5, T 4), gradient clipping at norm {FINAL_MAX_GRAD_NORM:g}; "
            "the same for every row"
        )

    def calibrate(self, student: nn.Module) -> float:
        """Re-estimate BatchNorm statistics in place; test accuracy right after."""
        rankopt.calibrate_bn(student, self.calibration)
        return evaluate_accuracy(student, *self.task.test)

    def __call__(self, student: nn.Module, seed: int) -> tuple[float, float]:
        """Fine-tune in place; ``(test accuracy, seconds)`` (NaN when the loss diverged)."""
        started = time.perf_counter()
        if self.epochs > 0:
            try:
                full_finetune(
                    student,
                    self.teacher,
                    self.train,
                    epochs=self.epochs,
                    seed=seed,
                    lr=self.lr,
                    max_grad_norm=FINAL_MAX_GRAD_NORM,
                )
            except rankopt.TrialFailedError:
                return math.nan, time.perf_counter() - started
        return evaluate_accuracy(student, *self.task.test), time.perf_counter() - started

    def plan_accuracy(self, model: nn.Module, plan: rankopt.CompressionPlan, seed: int) -> float:
        """Apply ``plan`` to ``model``, calibrate, fine-tune; test accuracy."""
        student = rankopt.apply_plan(model, plan)
        self.calibrate(student)
        return self(student, seed)[0]


@dataclass
class Candidate:
    """One row's compressed model before calibration and fine-tune.

    Attributes:
        label: Row label (``uniform_cp``, ``torch_pruning (peer)``, ``search_tpe``, ...).
        plan: The rankopt plan, or None for a peer's model.
        model: The peer's compressed model (copied for every seed), or None for a plan.
        note: Shown next to the row (what the row is, why it misses the budget, ...).
        extra: Numbers the row carries (search val accuracy, wall time, ...).
        mkldnn_off: Evaluate with oneDNN off (AIMET's models).
    """

    label: str
    plan: rankopt.CompressionPlan | None
    model: nn.Module | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    mkldnn_off: bool = False

    def build(self, dense: nn.Module) -> nn.Module:
        """A fresh copy of the compressed model."""
        if self.plan is not None:
            return rankopt.apply_plan(dense, self.plan)
        assert self.model is not None
        return copy.deepcopy(self.model)
