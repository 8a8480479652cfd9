"""Tables computed from a finished study: the Pareto front and every completed trial.

Compute first, render later (as optuna's ``_get_pareto_front_info``): the figures, the
report and the command line all read the :class:`pandas.DataFrame` built here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from rankopt.errors import BudgetError, SelectionError
from rankopt.storage import (
    LATENCY_RATIOS,
    SEED_ATTR,
    TABLE_METRICS,
    StudyRecord,
    is_repeat,
    queued_line,
)

from . import _methods
from ._export import select_trial
from ._trials import _float, completed_trials, dense_metrics, latency_ratios

__all__ = [
    "FRONT_COLUMNS",
    "all_trials_table",
    "layer_summary",
    "pareto_front",
]

#: Columns of :func:`pareto_front` (and the first columns of :func:`all_trials_table`).
FRONT_COLUMNS: tuple[str, ...] = ("trial", *TABLE_METRICS, "layers", "kind")

#: Rank names in the order they are printed (others follow in their stored order).
_RANK_ORDER: tuple[str, ...] = ("r_in", "r_out", "r")


def ordered_ranks(ranks: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Rank items in print order: ``r_in``, ``r_out``, ``r``, then the rest as stored."""
    known = [(k, ranks[k]) for k in _RANK_ORDER if k in ranks]
    rest = [(k, v) for k, v in ranks.items() if k not in _RANK_ORDER]
    return known + rest


def layer_label(entry: Mapping[str, Any]) -> str:
    """Compact label of one plan layer, e.g. ``T2(4,8)``, ``SVD(12)`` or ``keep``."""
    method = str(entry.get("method", "?"))
    short = _methods.abbreviation(method)
    ranks = entry.get("ranks") or {}
    if not ranks:
        return short
    return f"{short}({','.join(str(v) for _, v in ordered_ranks(ranks))})"


def layer_summary(plan: Mapping[str, Any] | None, *, separator: str = " | ") -> str:
    """One-line summary of a plan dict: ``"conv1 T2(4,8) | layer1.0.conv1 SVD(12) | fc keep"``.

    Args:
        plan: A plan dict (``CompressionPlan.to_dict()``) or None.
        separator: Text between layers.

    Returns:
        The summary, or ``""`` when there is no plan.
    """
    if not plan:
        return ""
    layers = plan.get("layers") or []
    parts = [f"{group} pruned to {kept}" for group, kept in pruning_labels(plan)]
    parts += [f"{e.get('layer', '?')} {layer_label(e)}" for e in layers]
    return separator.join(parts)


def pruning_labels(plan: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(group, "24/32")`` for each channel group a plan dict prunes (kept / dense)."""
    return [
        (str(e.get("group", "?")), f"{len(e.get('kept') or [])}/{e.get('n_channels', '?')}")
        for e in (plan or {}).get("pruning") or []
    ]


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether the study has more than one objective."""
    return len(study.directions) > 1


def cost_column(study: optuna.Study) -> str:
    """The table column of the study's cost objective (``macs`` unless asked otherwise).

    Single-objective studies and studies whose second objective is MACs use ``macs``;
    ``params`` / ``n_params`` map to ``n_params`` and ``latency`` / ``latency_ms`` to
    ``latency_ms``.
    """
    objectives = StudyRecord.of(study).objectives
    if is_multi_objective(study) and len(objectives) >= 2:
        second = str(objectives[1])
        if second in ("params", "n_params"):
            return "n_params"
        if second in ("latency", "latency_ms"):
            return "latency_ms"
    return "macs"


def _is_feasible(trial: FrozenTrial) -> bool:
    """False for trials marked infeasible (optuna constraints > 0 or ``feasible: False``)."""
    if trial.user_attrs.get("feasible") is False:
        return False
    constraints = trial.system_attrs.get("constraints")
    if constraints is None:
        return True
    return all(c <= 0.0 for c in constraints)


def _row(trial: FrozenTrial, dense: Mapping[str, float], kind: str) -> dict[str, Any]:
    attrs = trial.user_attrs
    values = trial.values or []
    accuracy = _float(attrs.get("accuracy", values[0] if values else None))
    macs = _float(attrs.get("macs"))
    n_params = _float(attrs.get("n_params"))
    macs_ratio = _float(attrs.get("macs_ratio"))
    if math.isnan(macs_ratio) and dense.get("macs"):
        macs_ratio = macs / dense["macs"]
    params_ratio = _float(attrs.get("params_ratio"))
    if math.isnan(params_ratio) and dense.get("n_params"):
        params_ratio = n_params / dense["n_params"]
    return {
        "trial": trial.number,
        "accuracy": accuracy,
        "accuracy_before_finetune": _float(attrs.get("accuracy_before_finetune")),
        "macs": macs,
        "macs_ratio": macs_ratio,
        "n_params": n_params,
        "params_ratio": params_ratio,
        **latency_ratios(attrs, dense),
        "latency_ms": _float(attrs.get("latency_ms")),
        "layers": layer_summary(attrs.get("plan")),
        "kind": kind,
    }


def _dense_row(dense: Mapping[str, float]) -> dict[str, Any]:
    return {
        "trial": None,
        "accuracy": dense.get("accuracy", math.nan),
        "accuracy_before_finetune": dense.get("accuracy", math.nan),
        "macs": dense.get("macs", math.nan),
        "macs_ratio": 1.0,
        "n_params": dense.get("n_params", math.nan),
        "params_ratio": 1.0,
        **{col: 1.0 for col in LATENCY_RATIOS if dense.get(f"latency_ms_{col[14:]}")},
        "latency_ms": dense.get("latency_ms", math.nan),
        "layers": "dense (no layer decomposed)",
        "kind": "dense",
    }


def _frame(rows: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> pd.DataFrame:
    columns = [*FRONT_COLUMNS, *extra]
    df = pd.DataFrame(list(rows), columns=columns)
    df["trial"] = df["trial"].astype("Int64")
    for col in TABLE_METRICS:
        df[col] = df[col].astype(float)
    df["layers"] = df["layers"].astype(str)
    df["kind"] = df["kind"].astype(str)
    return df.reset_index(drop=True)


def _accuracy_macs_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Non-dominated trials for (accuracy up, macs down), optuna's dominance definition.

    ``a`` dominates ``b`` when ``a`` is no worse in both and strictly better in one; trials
    with identical values are all kept (as ``study.best_trials`` does). Trials without a
    finite accuracy and macs cannot be placed and are left out.
    """
    points = []
    for t in trials:
        row = _row(t, {}, "trial")
        if math.isfinite(row["accuracy"]) and math.isfinite(row["macs"]):
            points.append((t, -row["accuracy"], row["macs"]))
    # Sort by loss (−accuracy, macs); a point is on the front when its macs is below the
    # minimum macs of every point with strictly better −accuracy, or equal to the best.
    points.sort(key=lambda p: (p[1], p[2]))
    front: list[FrozenTrial] = []
    best_macs = math.inf  # min macs over points with strictly smaller loss0
    i = 0
    while i < len(points):
        j = i
        while j < len(points) and points[j][1] == points[i][1]:
            j += 1
        group_min = points[i][2]  # sorted, so the group's first has the smallest macs
        if group_min < best_macs:
            front.extend(p[0] for p in points[i:j] if p[2] == group_min)
        best_macs = min(best_macs, group_min)
        i = j
    return front


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated COMPLETE trials, by trial number.

    Multi-objective studies use ``study.best_trials`` (feasible trials only when the study
    is constrained). Single-objective (accuracy) studies get the accuracy-vs-MACs front of
    the completed (feasible) trials, computed from their user_attrs. Trials that reused an
    earlier trial's result (same plan, same values) are left out: that trial stands for
    them.
    """
    if is_multi_objective(study):
        trials = list(study.best_trials)
    else:
        feasible = [t for t in completed_trials(study) if _is_feasible(t)]
        trials = _accuracy_macs_front(feasible)
    return sorted((t for t in trials if not is_repeat(t)), key=lambda t: t.number)


def vbmf_seed_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial enqueued as the VBMF seed (``user_attrs["seed"] == "vbmf"``)."""
    for t in completed_trials(study):
        if t.user_attrs.get(SEED_ATTR) == "vbmf":
            return t
    return None


def pareto_front(study: optuna.Study, *, include_reference: bool = True) -> pd.DataFrame:
    """The Pareto front of a finished study, one row per non-dominated COMPLETE trial.

    Multi-objective studies use optuna's ``study.best_trials``; single-objective (accuracy)
    studies get the accuracy-vs-MACs front of their completed trials. Ties follow optuna:
    trials with identical objective values are all on the front.

    Args:
        study: A loaded study written by ``rankopt search``.
        include_reference: Append the reference rows: the dense model (``kind == "dense"``,
            ``trial`` is ``<NA>``, ratios 1.0) when the study records it, the VBMF seed
            trial (``kind == "vbmf_seed"``) when it completed, and the recommended trial
            (``kind == "recommended"``: the one ``rankopt export`` exports, the lowest
            validation loss within the study budget, which need not be on the accuracy
            front) when the study has one. Reference rows are not front rows (a front
            trial may also appear as one); select front rows with
            ``df[df.kind == "trial"]``.

    Returns:
        DataFrame with columns :data:`FRONT_COLUMNS`: ``trial`` (Int64), ``accuracy``,
        ``accuracy_before_finetune`` (fractions in [0, 1]), ``macs``, ``macs_ratio``,
        ``n_params``, ``params_ratio``, ``latency_ms`` (NaN where not measured), ``layers``
        (per-layer summary such as ``"conv1 T2(4,8) | fc keep"``) and ``kind``. Front rows
        come first, sorted by ``macs`` ascending (then trial number), reference rows after.
    """
    dense = dense_metrics(study)
    rows = [_row(t, dense, "trial") for t in front_trials(study)]
    rows.sort(key=lambda r: (r["macs"], r["trial"]))
    if include_reference:
        if dense:
            rows.append(_dense_row(dense))
        seed = vbmf_seed_trial(study)
        if seed is not None:
            rows.append(_row(seed, dense, "vbmf_seed"))
        recommended = recommended_trial(study)
        if recommended is not None:
            rows.append(_row(recommended, dense, "recommended"))
    return _frame(rows)


def recommended_trial(study: optuna.Study) -> FrozenTrial | None:
    """The trial :func:`rankopt.studies.select_trial` picks with no argument, or None when
    the study has none (no selectable trial, or none within its budget)."""
    try:
        return select_trial(study)
    except (BudgetError, SelectionError):
        return None


def queued_trials_line(study: optuna.Study) -> str:
    """One line about the study's WAITING trials (seeds, retries) or ``""`` when none.

    They were left when the study's total was reached, and run first when it is resumed
    with a larger ``--n-trials``: ``2 trials queued (seed vbmf, retry of trial 5): they run
    first when the study is resumed with a larger --n-trials``.
    """
    return queued_line(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def all_trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every COMPLETE trial, by trial number (the cloud behind the front, and the history).

    Args:
        study: A loaded study.

    Returns:
        DataFrame with the :func:`pareto_front` columns (``kind`` is ``"trial"``) plus
        ``on_front`` (bool: the trial is a front row) and ``seed`` (the seed name of
        enqueued seed trials, ``""`` otherwise).
    """
    dense = dense_metrics(study)
    on_front = {t.number for t in front_trials(study)}
    rows = []
    for t in completed_trials(study):
        row = _row(t, dense, "trial")
        row["on_front"] = t.number in on_front
        row["seed"] = str(t.user_attrs.get(SEED_ATTR) or "")
        rows.append(row)
    df = _frame(rows, extra=("on_front", "seed"))
    df["on_front"] = df["on_front"].astype(bool)
    df["seed"] = df["seed"].astype(str)
    return df
