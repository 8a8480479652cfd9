"""The task and one row's measurement (the final fine-tune: :mod:`benchmarks.common.harness`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

import rankopt
from benchmarks.common.harness import (
    Candidate,
    Data,
    FinalFinetune,
    mkldnn_off,
    n_params,
    say,
)
from rankopt.evaluators import evaluate_accuracy
from rankopt.latency import compare_latency_ms


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


def latency_ratios(
    dense: nn.Module, student: nn.Module, shape: tuple[int, ...], *, min_timed_s: float
) -> dict[str, float]:
    """Latency of ``student`` / dense at 1 thread, batch 1 and 64, on ONNX Runtime and
    eager PyTorch, timed side by side (:func:`rankopt.latency.compare_latency_ms`, which
    sets and restores the thread count). A runtime that cannot run the model gives NaN."""
    out: dict[str, float] = {}
    for runtime, key in (("onnxruntime", "ort"), ("torch", "torch")):
        try:
            ms = compare_latency_ms(
                [dense, student], shape, runtime=runtime, min_timed_s=min_timed_s, n_threads=1
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
        if cand.plan is not None and budget is None:  # the seed recipe's table has it
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
