"""One MNIST benchmark row: the model, a candidate's calibration, final fine-tune and latency."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from torch import nn

import rankopt
from benchmarks.common.harness import Candidate, Data, FinalFinetune, mkldnn_off, n_params, say
from rankopt.latency import measure_latency_ms


@dataclass
class BenchModel:
    """A trained model and its data.

    Attributes:
        name: Name used in tables.
        model: The trained dense model (eval mode).
        train: Training split (final fine-tunes; searches use a subset).
        val: Validation split (searches, greedy scoring).
        test: Test split (every reported accuracy).
    """

    name: str
    model: nn.Module
    train: Data
    val: Data
    test: Data

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image."""
        return tuple(self.train[0].shape[1:])


def builtin_model(name: str, data: str = "mnist5k") -> BenchModel:
    """A built-in pretrained model (trained and cached on first use) with its data."""
    from rankopt.data import load_data
    from rankopt.models import get_pretrained

    splits = load_data(data)
    model, _ = get_pretrained(name, data, progress=say)
    return BenchModel(name, model.eval(), splits.train, splits.val, splits.test)


def macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """fvcore MACs of ``model`` on one image of ``shape``."""
    return rankopt.count_macs(model, shape)


def evaluate_row(
    cand: Candidate,
    bench: BenchModel,
    finetuner: FinalFinetune,
    seed: int,
    dense_macs: int,
    dense_params: int,
    *,
    latency: bool,
    latency_rounds: int,
) -> dict[str, Any]:
    """Calibration, final fine-tune, test accuracy (+ latency) of one candidate."""
    row: dict[str, Any] = {
        "method": cand.label,
        "seed": seed,
        "plan": cand.plan,
        "note": cand.note,
        "val_accuracy": cand.extra.get("val_accuracy", math.nan),
        "test_accuracy": math.nan,
        "accuracy_decomposed": math.nan,
        "macs_ratio": math.nan,
        "params_ratio": math.nan,
        "latency_ratio_b1": math.nan,
        "latency_ratio_b64": math.nan,
    }
    if cand.plan is None and cand.model is None:
        return row
    with mkldnn_off(cand.mkldnn_off):
        student = cand.build(bench.model)
        row["macs_ratio"] = macs(student, bench.input_shape) / dense_macs
        row["params_ratio"] = n_params(student) / dense_params
        row["accuracy_decomposed"] = finetuner.calibrate(student)
        row["test_accuracy"] = finetuner(student, seed)[0]
        if latency:
            for batch in (1, 64):
                _, ratio = latency_ratios(
                    bench.model,
                    student,
                    bench.input_shape,
                    batch_size=batch,
                    rounds=latency_rounds,
                )
                row[f"latency_ratio_b{batch}"] = ratio
    return row


def latency_ratios(
    dense: nn.Module,
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int,
    rounds: int,
    runs_per_round: int = 5,
) -> tuple[float, float]:
    """Median latency (ms) of ``model`` and its ratio to ``dense``, measured interleaved.

    ``rounds`` times: ``rankopt``'s ``measure_latency_ms`` on the dense model, then on the
    compressed one (``runs_per_round`` timed runs each, 1 warm-up); the medians over the
    rounds are compared, so slow phases of a shared machine hit both alike.

    Returns:
        ``(latency_ms of model, latency ratio model / dense)``.
    """
    dense_ms: list[float] = []
    model_ms: list[float] = []
    for _ in range(rounds):
        kw = {"batch_size": batch_size, "n_warmup": 1, "n_runs": runs_per_round}
        dense_ms.append(measure_latency_ms(dense, input_shape, **kw))
        model_ms.append(measure_latency_ms(model, input_shape, **kw))
    med_model = statistics.median(model_ms)
    return med_model, med_model / statistics.median(dense_ms)
