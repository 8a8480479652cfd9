"""Choosing one trial of a finished study and exporting its compression plan."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rankopt.budget import parse_amount
from rankopt.errors import BudgetError, SelectionError
from rankopt.storage import (
    COUNT_METRICS,
    PLAN_METRICS,
    SEED_ATTR,
    StudyRecord,
    abbreviate,
    best_first,
    trial_accuracy,
)

from ._trials import _float, completed_trials, dense_metrics, latency_ratios

if TYPE_CHECKING:
    from rankopt.plan import CompressionPlan

__all__ = ["export_plan", "select_trial"]


def _selectable(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that carry a plan and finite accuracy and MACs."""
    out = []
    for t in completed_trials(study):
        attrs = t.user_attrs
        if not isinstance(attrs.get("plan"), dict):
            continue
        if math.isfinite(trial_accuracy(t)) and math.isfinite(_float(attrs.get("macs"))):
            out.append(t)
    return out


def _available(trials: list[FrozenTrial]) -> str:
    return abbreviate([str(t.number) for t in trials])


def _best(trials: list[FrozenTrial]) -> FrozenTrial:
    """The first of :func:`rankopt.storage._attrs.best_first` (lowest validation loss)."""
    return best_first(trials)[0]


def _fmt_macs(macs: float, dense_macs: float | None) -> str:
    ratio = f" (ratio {macs / dense_macs:.3f})" if dense_macs else ""
    return f"{macs:,.0f} MACs{ratio}"


def _by_number(study: optuna.Study, number: int, selectable: list[FrozenTrial]) -> FrozenTrial:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    listing = f"complete trials with a plan: {_available(selectable)}"
    found = trials.get(number)
    if found is None:
        raise SelectionError(f"study {study.study_name!r} has no trial {number}; {listing}")
    if found.state != TrialState.COMPLETE:
        reason = found.user_attrs.get("fail_reason")
        why = f" ({reason})" if reason else ""
        raise SelectionError(f"trial {number} is {found.state.name}{why}, not COMPLETE; {listing}")
    if found not in selectable:
        raise SelectionError(
            f"trial {number} has no plan with accuracy and macs in its user_attrs; {listing}"
        )
    return found


def select_trial(
    study: optuna.Study,
    *,
    trial: int | None = None,
    max_macs: float | int | str | None = None,
) -> FrozenTrial:
    """Pick one COMPLETE trial (with a plan) of a finished study.

    With neither argument, the recommended trial: the best trial within the study's own
    budget (``user_attrs["budget"]``: ``max_macs`` / ``max_params``, absolute; predicted
    latency within ``max_latency_ms`` and ``latency_cap_ms``, the default cap that keeps
    the recommended plan no slower than dense). The best
    trial is the one with the lowest validation loss after the proxy fine-tune (studies
    without the loss: the highest validation accuracy); ties go to the higher accuracy, then
    to fewer MACs, then to the lower trial number (:func:`rankopt.storage._attrs.best_first`).

    Args:
        study: A loaded study.
        trial: A trial number; it must be COMPLETE and carry a plan.
        max_macs: Pick the best trial among those with ``macs <= max_macs``, in the
            budget grammar of ``rankopt search`` (:func:`rankopt.parse_budget`): a value
            in (0, 1] or a percentage (``"25%"``) is a fraction of the dense model's MACs,
            a value above 1 or a string like ``"4M"`` / ``"800k"`` an absolute MAC count
            per image.

    Returns:
        The chosen frozen trial.

    Raises:
        SelectionError: both arguments given, the study has no selectable trial, or
            ``trial`` is missing, not COMPLETE or has no plan; the message lists the
            complete trial numbers (abbreviated when many).
        BudgetError: ``max_macs`` is not a positive number, or no trial fits (the message gives the
            smallest MACs available) — also when the study's own budget fits no trial.
    """
    if trial is not None and max_macs is not None:
        raise SelectionError("give either trial or max_macs, not both")
    selectable = _selectable(study)
    if trial is not None:
        try:
            number = int(trial)
        except (TypeError, ValueError):
            number = -1
        if number < 0 or number != trial:
            raise SelectionError(
                f"trial must be a trial number, got {trial!r} (reference rows of pareto_front "
                f"have none); complete trials with a plan: {_available(selectable)}"
            )
        return _by_number(study, number, selectable)
    if not selectable:
        states: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            states[t.state.name] = states.get(t.state.name, 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        raise SelectionError(
            f"study {study.study_name!r} has no COMPLETE trial with a plan ({counts})"
        )
    dense_macs = dense_metrics(study).get("macs")
    dense_macs = dense_macs if dense_macs and math.isfinite(dense_macs) else None
    smallest = min(selectable, key=lambda t: (_float(t.user_attrs["macs"]), t.number))
    smallest_text = (
        f"the smallest is {_fmt_macs(_float(smallest.user_attrs['macs']), dense_macs)} "
        f"(trial {smallest.number})"
    )
    if max_macs is not None:
        amount = parse_amount(max_macs, what="macs")
        if amount.fraction is not None:
            limit = amount.fraction
            if dense_macs is not None:
                fits = [t for t in selectable if _float(t.user_attrs["macs"]) <= limit * dense_macs]
            else:
                fits = [t for t in selectable if _float(t.user_attrs.get("macs_ratio")) <= limit]
            asked = f"max_macs={limit:g} (fraction of dense MACs)"
        else:
            assert amount.absolute is not None
            limit = amount.absolute
            fits = [t for t in selectable if _float(t.user_attrs["macs"]) <= limit]
            asked = f"max_macs={limit:,.0f}"
        fits = _within_latency(study, fits)
        if not fits:
            raise BudgetError(f"no complete trial fits {asked}; {smallest_text}")
        return _best(fits)
    record = StudyRecord.of(study)
    fits = selectable
    for bound, attr in ((record.max_macs, "macs"), (record.max_params, "n_params")):
        if bound is not None:
            fits = [t for t in fits if _float(t.user_attrs.get(attr)) <= float(bound)]
    fits = _within_latency(study, fits, "max_latency_ms")
    if not fits:
        raise BudgetError(
            f"no complete trial fits the study budget {record.budget_json()}; {smallest_text}"
        )
    return _best(fits)


def _within_latency(
    study: optuna.Study, trials: list[FrozenTrial], *keys: str
) -> list[FrozenTrial]:
    """``trials`` whose predicted latency meets the study's ``latency_cap_ms`` (no plan slower
    than dense, issue 37) and the budget's other ``keys`` (``max_latency_ms``)."""
    budget = study.user_attrs.get("budget")
    if not isinstance(budget, dict):
        return trials
    for key in ("latency_cap_ms", *keys):
        for batch, ms in budget.get(key) or []:
            attr = f"latency_ms_batch{batch}"
            trials = [
                t for t in trials if not _float(t.user_attrs.get(attr)) > float(ms) * 1.000001
            ]
    return trials


def plan_dict(study: optuna.Study, frozen: FrozenTrial) -> dict[str, Any]:
    """The trial's plan dict with ``metrics`` and ``provenance`` filled in."""
    plan: dict[str, Any] = copy.deepcopy(frozen.user_attrs["plan"])
    metrics = dict(plan.get("metrics") or {})
    ratios = latency_ratios(frozen.user_attrs, dense_metrics(study))
    for key in PLAN_METRICS:
        value = ratios.get(key, _float(frozen.user_attrs.get(key)))
        if math.isfinite(value):
            metrics[key] = int(value) if key in COUNT_METRICS else value
    plan["metrics"] = metrics
    provenance = dict(plan.get("provenance") or {})
    provenance["study"] = study.study_name
    provenance["trial"] = frozen.number
    if "rankopt_version" not in provenance:
        version = StudyRecord.of(study).rankopt_version
        if version is None:
            from rankopt._version import __version__ as version
        provenance["rankopt_version"] = version
    if frozen.user_attrs.get(SEED_ATTR):
        provenance["seed"] = frozen.user_attrs[SEED_ATTR]
    runtime = StudyRecord.of(study).settings.get("latency_runtime")
    if runtime:
        provenance.setdefault("latency_runtime", runtime)
    plan["provenance"] = provenance
    return plan


def export_plan(
    study: optuna.Study,
    *,
    trial: int | None = None,
    max_macs: float | int | str | None = None,
) -> CompressionPlan:
    """The compression plan of one trial, ready to save and apply.

    The trial is chosen by :func:`select_trial` (same arguments); its plan gets
    ``metrics`` (accuracy, MACs, parameters, ratios, latency, ... from the trial) and
    ``provenance`` (study name, trial number, rankopt version, seed name for seed trials).

    Args:
        study: A loaded study.
        trial: A trial number (see :func:`select_trial`).
        max_macs: MAC budget, as :func:`select_trial` reads it (``0.5``, ``"50%"``,
            ``4e6``, ``"4M"``).

    Returns:
        The validated :class:`rankopt.plan.CompressionPlan`.

    Raises:
        SelectionError: see :func:`select_trial`.
        BudgetError: see :func:`select_trial`.
        InvalidPlanError: the stored plan does not validate.
    """
    from rankopt.plan import CompressionPlan

    chosen = select_trial(study, trial=trial, max_macs=max_macs)
    return CompressionPlan.from_dict(plan_dict(study, chosen))
