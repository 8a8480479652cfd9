"""Evaluators: complexity (fvcore + analytic), fine-tunes, accuracy, latency."""

from rankopt.evaluators._calibration import calibrate_bn
from rankopt.evaluators._complexity import Cost, ModelProfile, cost, count_macs, profile
from rankopt.evaluators._latency import measure_latency_ms
from rankopt.evaluators._training import (
    DenseTrainResult,
    FinetuneResult,
    compute_logits,
    distillation_loss,
    evaluate_accuracy,
    full_finetune,
    proxy_finetune,
    train_dense,
)

__all__ = [
    "Cost",
    "DenseTrainResult",
    "FinetuneResult",
    "ModelProfile",
    "calibrate_bn",
    "compute_logits",
    "cost",
    "count_macs",
    "distillation_loss",
    "evaluate_accuracy",
    "full_finetune",
    "measure_latency_ms",
    "profile",
    "proxy_finetune",
    "train_dense",
]
