"""The names of the per-trial numbers, one list for every reader.

``search`` stores them in each trial's ``user_attrs`` (see DEVELOPERS.md, Contracts);
``studies`` turns them into table columns and copies them into exported plans; the command
line prints them. Kept free of heavy imports so that any module may read it.
"""

from __future__ import annotations

__all__ = ["COUNT_METRICS", "PLAN_METRICS", "TABLE_METRICS"]

#: Per-trial numbers shown in the Pareto-front table, in column order: accuracies are
#: fractions in [0, 1], ``macs`` multiply-accumulates per image, ``n_params`` parameters,
#: ``*_ratio`` cost / dense cost, ``latency_ms`` median CPU latency at batch 1.
TABLE_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_before_finetune",
    "macs",
    "macs_ratio",
    "n_params",
    "params_ratio",
    "latency_ms",
)

#: Numbers copied from a trial into an exported plan's ``metrics``: the table's, plus the
#: relative L2 error of the logits vs the dense model.
PLAN_METRICS: tuple[str, ...] = (*TABLE_METRICS, "reconstruction_error")

#: Metrics that are whole counts (printed and stored as integers).
COUNT_METRICS: tuple[str, ...] = ("macs", "n_params")
