"""The task, the final fine-tune every row gets, and one row's measurement."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import rankopt
from rankopt.evaluators import compare_latency_ms, compute_logits, evaluate_accuracy, full_finetune

Data = tuple[torch.Tensor, torch.Tensor]
CALIBRATION_IMAGES = 1024
FINAL_MAX_GRAD_NORM = 10.0
"""Final fine-tune clipping: a guard against divergence only."""


def say(line: str) -> None:
    """Progress on stderr."""
    print(line, file=sys.stderr, flush=True)


@dataclass
class Task:
    """A trained dense model and its data.

    Attributes:
        model_name: Built-in model name.
        data_name: Built-in data set name.
        model: The dense model (eval mode).
        train: Training split.
        val: Validation split (searches and greedy scoring).
        test: Test split (every reported accuracy).
        dense_test_accuracy: Test accuracy of the dense model.
    """

    model_name: str
    data_name: str
    model: nn.Module
    train: Data
    val: Data
    test: Data
    dense_test_accuracy: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image."""
        c, h, w = self.train[0].shape[1:]
        return int(c), int(h), int(w)

    @property
    def dense_macs(self) -> int:
        """fvcore MACs of the dense model."""
        return rankopt.count_macs(self.model, self.input_shape)

    @property
    def dense_params(self) -> int:
        """Parameters of the dense model."""
        return n_params(self.model)


def load_task(model_name: str, data_name: str) -> Task:
    """The built-in model (trained and cached on first use) with its data."""
    from rankopt.data import load_data
    from rankopt.models import get_pretrained

    splits = load_data(data_name)
    model, acc = get_pretrained(model_name, data_name, progress=say)
    return Task(model_name, data_name, model.eval(), splits.train, splits.val, splits.test, acc)


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


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` while the block runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FinalFinetune:
    """What every compared model gets: BatchNorm calibration on 1,024 training images,
    then the same fine-tune (distillation from dense, SGD + cosine from ``lr``, clipping
    only at norm 10) on the same seeded sample of ``n_images`` training images for
    ``epochs`` passes, then test accuracy."""

    def __init__(self, task: Task, *, n_images: int, epochs: int, lr: float = 0.01) -> None:
        images, labels = task.train
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        self.calibration = images[order[:CALIBRATION_IMAGES]].contiguous()
        pick = order[: min(n_images, len(labels))]
        self.train = (images[pick].contiguous(), labels[pick].contiguous())
        self.teacher = compute_logits(task.model, self.train[0])
        self.epochs = epochs
        self.lr = lr
        self.task = task

    def describe(self) -> str:
        """One line for the report."""
        steps = math.ceil(len(self.train[1]) / 64) * self.epochs
        return (
            f"calibrate_bn on {CALIBRATION_IMAGES} training images, then full_finetune "
            f"{self.epochs} epoch(s) over a fixed sample of {len(self.train[1])} training "
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


def latency_ratios(
    dense: nn.Module, student: nn.Module, shape: tuple[int, ...], *, min_timed_s: float
) -> dict[str, float]:
    """Latency of ``student`` / dense at 1 thread, batch 1 and 64, on ONNX Runtime and
    eager PyTorch, timed side by side (:func:`rankopt.evaluators.compare_latency_ms`).
    A runtime that cannot run the model gives NaN."""
    out: dict[str, float] = {}
    with threads(1):
        for runtime, key in (("onnxruntime", "ort"), ("torch", "torch")):
            try:
                ms = compare_latency_ms(
                    [dense, student], shape, runtime=runtime, min_timed_s=min_timed_s
                )
            except Exception as exc:  # a peer's module ONNX cannot export, say
                say(f"    latency on {runtime}: {type(exc).__name__}: {str(exc)[:120]}")
                ms = {1: [math.nan, math.nan], 64: [math.nan, math.nan]}
            for batch, (d, s) in ms.items():
                out[f"latency_{key}_b{batch}"] = s / d if d > 0 else math.nan
    return out


def measure_row(
    cand: Candidate,
    task: Task,
    finetune: FinalFinetune,
    *,
    seed: int,
    budget: float | None,
    latency: bool,
    min_timed_s: float,
    progress: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Build, calibrate, fine-tune and measure one candidate for one seed."""
    dense = task.model
    shape = task.input_shape
    row: dict[str, Any] = {
        "label": cand.label,
        "budget": budget,
        "seed": seed,
        "note": cand.note,
        **cand.extra,
    }
    if cand.plan is None and cand.model is None:
        row.update(macs_ratio=math.nan, params_ratio=math.nan, test_accuracy=math.nan)
        row["accuracy_calibrated"] = math.nan
        return row
    with mkldnn_off(cand.mkldnn_off):
        student = cand.build(dense).eval()
        row["macs_ratio"] = rankopt.count_macs(student, shape) / task.dense_macs
        row["params_ratio"] = n_params(student) / task.dense_params
        row["accuracy_decomposed"] = evaluate_accuracy(student, *task.test)
        row["accuracy_calibrated"] = finetune.calibrate(student)
        row["test_accuracy"], row["finetune_s"] = finetune(student, seed)
        if latency:
            row.update(latency_ratios(dense, student.eval(), shape, min_timed_s=min_timed_s))
    if budget is not None and row["macs_ratio"] > budget + 1e-9:
        row["note"] = f"{row['note']}; over the budget ({row['macs_ratio']:.3f}), not compared"
        row["over_budget"] = True
    progress(
        f"  {cand.label} seed {seed}: test {row['test_accuracy']:.4f} (calibrated "
        f"{row['accuracy_calibrated']:.4f}), macs {row['macs_ratio']:.3f}"
    )
    return row
