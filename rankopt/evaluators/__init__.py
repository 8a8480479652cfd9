"""Evaluators: complexity (fvcore + analytic), fine-tunes, accuracy, latency."""

from rankopt.evaluators._calibration import calibrate_bn
from rankopt.evaluators._complexity import Cost, ModelProfile, cost, count_macs, profile
from rankopt.evaluators._epochs import DenseTrainResult, full_finetune, train_dense
from rankopt.evaluators._evaluation import (
    accuracy_and_loss,
    compute_logits,
    compute_logits_and_labels,
    evaluate_accuracy,
    evaluate_accuracy_and_loss,
)
from rankopt.evaluators._latency import (
    DEFAULT_LATENCY_THREADS,
    check_latency_threads,
    compare_latency_ms,
    measure_latency_ms,
    timing_threads,
    usable_cores,
)
from rankopt.evaluators._latency_table import (
    LATENCY_SCHEMA_VERSION,
    LatencyTable,
    latency_table,
    machine_signature,
    rank_grid,
    time_interleaved_ms,
)
from rankopt.evaluators._training import FinetuneResult, distillation_loss, proxy_finetune

__all__ = [
    "DEFAULT_LATENCY_THREADS",
    "LATENCY_SCHEMA_VERSION",
    "Cost",
    "DenseTrainResult",
    "FinetuneResult",
    "LatencyTable",
    "ModelProfile",
    "accuracy_and_loss",
    "calibrate_bn",
    "check_latency_threads",
    "compare_latency_ms",
    "compute_logits",
    "compute_logits_and_labels",
    "cost",
    "count_macs",
    "distillation_loss",
    "evaluate_accuracy",
    "evaluate_accuracy_and_loss",
    "full_finetune",
    "latency_table",
    "machine_signature",
    "measure_latency_ms",
    "profile",
    "proxy_finetune",
    "rank_grid",
    "time_interleaved_ms",
    "timing_threads",
    "train_dense",
    "usable_cores",
]
