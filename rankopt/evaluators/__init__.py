"""Evaluators: complexity (fvcore + analytic), fine-tunes, accuracy, BN calibration.

Latency lives in :mod:`rankopt.latency`, which builds on the model profile here.
"""

from rankopt.evaluators._calibration import calibrate_bn
from rankopt.evaluators._complexity import Cost, ModelProfile, cost, count_macs, profile
from rankopt.evaluators._device import Device, on_device, resolve_device
from rankopt.evaluators._epochs import DenseTrainResult, full_finetune, train_dense
from rankopt.evaluators._evaluation import (
    accuracy_and_loss,
    compute_logits,
    compute_logits_and_labels,
    evaluate_accuracy,
    evaluate_accuracy_and_loss,
)
from rankopt.evaluators._training import FinetuneResult, distillation_loss, proxy_finetune

__all__ = [
    "Cost",
    "DenseTrainResult",
    "Device",
    "FinetuneResult",
    "ModelProfile",
    "accuracy_and_loss",
    "calibrate_bn",
    "compute_logits",
    "compute_logits_and_labels",
    "cost",
    "count_macs",
    "distillation_loss",
    "evaluate_accuracy",
    "evaluate_accuracy_and_loss",
    "full_finetune",
    "on_device",
    "profile",
    "proxy_finetune",
    "resolve_device",
    "train_dense",
]
