"""The two searches of each budget: rankopt's default (TPE) and random search.

Each study runs :func:`rankopt.search` with its defaults but the trial count (and the
proxy length where the command line says so); ``search_random`` is the same search with
Optuna's random sampler and no seed trials. From each study: the recommended plan
(:func:`rankopt.export_plan`, lowest validation loss within the budget), its best-so-far
curve (the best proxy validation accuracy after each counted trial), the mean trial wall
time and the share of the search's time that the sensitivity profile took.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

import rankopt
from benchmarks.common.harness import Candidate
from benchmarks.fashion.harness import Task
from rankopt.storage import is_repeat

SAMPLERS = ("tpe", "random")


@dataclass(frozen=True)
class SearchRun:
    """What one study measured.

    Attributes:
        sampler: ``tpe`` or ``random``.
        budget: Fraction of dense MACs.
        seed: Search seed.
        candidate: The recommended plan as a benchmark row (None when read back from JSON).
        best_so_far: Best proxy validation accuracy after each counted trial (in order).
        trial_wall_s: Mean wall time of a counted trial, in seconds.
        sensitivity_s: Seconds the study's sensitivity profile took to measure (the run
            measures each profile once and shares it between studies with the same model,
            space and calibration images, as a resumed study would; this is the time of
            that one measurement).
        wall_s: Wall time of the whole study, in seconds.
    """

    sampler: str
    budget: float
    seed: int
    candidate: Candidate | None
    best_so_far: tuple[float, ...]
    trial_wall_s: float
    sensitivity_s: float
    wall_s: float


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that count towards ``n_trials`` (duplicates of a plan do not)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not is_repeat(t)
    ]


def _wall(trial: optuna.trial.FrozenTrial) -> float:
    return float(trial.user_attrs.get("wall_time_s", math.nan))


def best_so_far(study: optuna.Study) -> tuple[float, ...]:
    """Best proxy validation accuracy of the feasible trials after each counted trial."""
    best = -math.inf
    curve = []
    for t in sorted(_counted(study), key=lambda t: t.number):
        if t.user_attrs.get("feasible", True) and "accuracy" in t.user_attrs:
            best = max(best, float(t.user_attrs["accuracy"]))
        curve.append(best if math.isfinite(best) else math.nan)
    return tuple(curve)


def run_study(
    task: Task,
    *,
    sampler: str,
    budget: float,
    seed: int,
    n_trials: int,
    finetune_steps: int,
    progress: Callable[[str], None] | None,
    latency_runtime: str | None = "default",
) -> SearchRun:
    """One study, then its recommended plan and timings (``latency_runtime``: ``"default"``
    keeps :func:`rankopt.search`'s, None searches under the MACs budget alone)."""
    started = time.perf_counter()
    runtime_kw: dict[str, Any] = {}
    if latency_runtime != "default":
        runtime_kw["latency_runtime"] = latency_runtime
    study = rankopt.search(
        task.model,
        task.train,
        task.val,
        max_macs=budget,
        n_trials=n_trials,
        sampler=sampler,
        seed=seed,
        finetune_steps=finetune_steps,
        seed_with_vbmf=sampler != "random",
        model_name=task.model_name,
        data_name=task.data_name,
        study_name=f"{task.model_name}-{sampler}-{budget}-s{seed}",
        progress=progress,
        **runtime_kw,
    )
    wall = time.perf_counter() - started
    plan = rankopt.export_plan(study)
    counted = _counted(study)
    profile: Any = study.user_attrs.get("sensitivity") or {}
    label = "search_tpe" if sampler == "tpe" else "search_random"
    note = (
        "rankopt.search defaults (seed trials, then local moves and TPE)"
        if sampler == "tpe"
        else "random sampler, no seed trials"
    )
    if runtime_kw:
        note += f"; latency runtime {latency_runtime}"
    trial = plan.provenance.get("trial")
    candidate = Candidate(
        label,
        plan,
        None,
        f"{note}; recommended trial {trial}",
        {
            "val_accuracy": float(plan.metrics.get("accuracy", math.nan)),
            "search_wall_s": wall,
        },
    )
    return SearchRun(
        sampler=sampler,
        budget=budget,
        seed=seed,
        candidate=candidate,
        best_so_far=best_so_far(study),
        trial_wall_s=statistics.fmean(_wall(t) for t in counted) if counted else math.nan,
        sensitivity_s=float(profile.get("wall_time_s", 0.0)) if isinstance(profile, dict) else 0.0,
        wall_s=wall,
    )
