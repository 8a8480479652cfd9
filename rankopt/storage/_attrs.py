"""Names of trial user attributes and per-trial metrics: the search writes them, the studies
and the command line read them (see DEVELOPERS.md, Contracts). Light: no torch, no optuna."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = [
    "COUNT_METRICS",
    "DUPLICATE_ATTR",
    "LATENCY_RATIOS",
    "PLAN_KEY_ATTR",
    "PLAN_METRICS",
    "SEED_ATTR",
    "TABLE_METRICS",
    "VAL_LOSS_ATTR",
    "best_first",
    "is_repeat",
    "trial_accuracy",
]

#: Predicted latency / dense latency at batch 1 and 64 (the latency table's batch sizes),
#: shown beside the MACs.
LATENCY_RATIOS: tuple[str, ...] = ("latency_ratio_batch1", "latency_ratio_batch64")

#: Per-trial numbers shown in the Pareto-front table, in column order: accuracies are
#: fractions in [0, 1], ``macs`` multiply-accumulates per image, ``n_params`` parameters,
#: ``*_ratio`` cost / dense cost (``latency_ratio_batch<b>``: the latency table's predicted
#: whole-model time at batch b / dense's, on the study's runtime), ``latency_ms`` median CPU
#: latency at batch 1.
TABLE_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_before_finetune",
    "macs",
    "macs_ratio",
    *LATENCY_RATIOS,
    "n_params",
    "params_ratio",
    "latency_ms",
)

#: Numbers copied from a trial into an exported plan's ``metrics``: the table's, plus the
#: relative L2 error of the logits vs the dense model.
PLAN_METRICS: tuple[str, ...] = (*TABLE_METRICS, "reconstruction_error")

#: Metrics that are whole counts (printed and stored as integers).
COUNT_METRICS: tuple[str, ...] = ("macs", "n_params")

DUPLICATE_ATTR = "duplicate_of"
"""User attribute of a trial that realised an already evaluated plan and took that trial's
results instead of evaluating it again: that trial's number."""

PLAN_KEY_ATTR = "plan_key"
"""User attribute: a digest of the trial's realised layers (method, ranks, options)."""

SEED_ATTR = "seed"
"""User attribute of an enqueued seed trial: the seed's name (``"sensitivity"``, ``"vbmf"``,
``"uniform_tucker2"``, ...)."""

VAL_LOSS_ATTR = "val_loss"
"""User attribute: validation cross-entropy (nats per image) after the proxy fine-tune (before
it when there is none); the score :func:`best_first` ranks trials by."""


def is_repeat(trial: FrozenTrial) -> bool:
    """Whether ``trial`` took an earlier trial's results instead of evaluating its plan
    (such trials do not count towards ``n_trials`` and are left off the Pareto front)."""
    return DUPLICATE_ATTR in trial.user_attrs


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def trial_accuracy(trial: FrozenTrial) -> float:
    """The trial's validation accuracy (its ``accuracy`` user attribute, else its first
    objective value); NaN when it has none."""
    values = trial.values or []
    return _number(trial.user_attrs.get("accuracy", values[0] if values else None))


def best_first(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` ordered the way rankopt recommends them, best first.

    Lowest validation loss (:data:`VAL_LOSS_ATTR`) first when every trial has a finite one;
    otherwise (studies written before the loss was recorded) highest validation accuracy
    first. Ties go to the higher accuracy, then fewer MACs, then the lower trial number.

    Why the loss: on a few hundred validation images the accuracy moves in steps of
    ``1 / N`` and the better plans of a study sit within a few images of each other; the
    loss is continuous and ranked them closer to their accuracy after the full fine-tune
    (resnet8 / mnist5k, one default study at each of 10 / 7 / 5 % of the MACs, every plan
    fine-tuned with 2 seeds, ``benchmarks/BENCHMARKS_CEILING.md``: Spearman's rho over the
    better half 0.33 / 0.59 / 0.26 for the loss, 0.06 / 0.33 / 0.59 for the accuracy; the
    plan picked by the loss ended at 0.973 / 0.964 / 0.915, by the accuracy at 0.974 /
    0.953 / 0.915, the study's best plan at 0.977 / 0.964 / 0.930).
    """
    by_loss = bool(trials) and all(
        math.isfinite(_number(t.user_attrs.get(VAL_LOSS_ATTR))) for t in trials
    )

    def key(t: FrozenTrial) -> tuple[float, ...]:
        accuracy = trial_accuracy(t)
        loss = _number(t.user_attrs.get(VAL_LOSS_ATTR)) if by_loss else 0.0
        macs = _number(t.user_attrs.get("macs"))
        return (
            loss,
            -accuracy if math.isfinite(accuracy) else math.inf,
            macs if math.isfinite(macs) else math.inf,
            float(t.number),
        )

    return sorted(trials, key=key)
