"""The searches the benchmarks run, and what is read from their studies.

:func:`run_search` runs one ``rankopt.search`` study; :func:`shared_sensitivity` lets the
studies of one run share their sensitivity profiles; :func:`spearman_sample`,
:func:`study_points` and :func:`hypervolume_2d` read a finished study.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import rankopt
from rankopt.storage import best_first

Data = tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def shared_sensitivity() -> Iterator[None]:
    """Reuse each study's sensitivity profile across studies with the same data.

    The profile is a deterministic function of the model, the space and the calibration
    images (which depend on the search seed only); :func:`rankopt.search` measures it once
    per study. Studies of one benchmark run that share those inputs get the profile
    measured by the first one, exactly as a study resumed from storage would.
    """
    from rankopt.searching.objective import _sensitivity as _run

    original = _run.measure_sensitivity
    cache: dict[tuple[int, int, tuple[str, ...]], Any] = {}

    def cached(model: nn.Module, space: Any, images: torch.Tensor, *args: Any, **kw: Any) -> Any:
        key = (id(model), hash(images.numpy().tobytes()), tuple(space.choices))
        if key not in cache:
            cache[key] = original(model, space, images, *args, **kw)
        return cache[key]

    _run.measure_sensitivity = cached  # type: ignore[assignment]
    try:
        yield
    finally:
        _run.measure_sensitivity = original  # type: ignore[assignment]


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials with a proxy accuracy, within the budget."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("feasible", True) and "accuracy" in t.user_attrs
    ]


def run_search(
    model: nn.Module,
    train: Data,
    val: Data,
    *,
    budget_fraction: float,
    sampler: str,
    n_trials: int,
    seed: int,
    finetune_steps: int,
    finetune_samples: int,
    model_name: str,
    progress: Callable[[str], None] | None,
) -> tuple[optuna.Study, rankopt.CompressionPlan, float]:
    """One ``rankopt.search`` study; its best plan within the budget and its hypervolume.

    ``random`` runs pure random search (``sampler='random'``, no seed trials); ``tpe`` is
    rankopt's default (seed trials first, then TPE). Everything else is left at
    :func:`rankopt.search`'s defaults except the proxy length and the trial count.

    Returns:
        ``(study, best plan by validation accuracy within the budget, hypervolume)``.
    """
    study = rankopt.search(
        model,
        train,
        val,
        max_macs=budget_fraction,
        n_trials=n_trials,
        sampler=sampler,
        seed=seed,
        finetune_steps=finetune_steps,
        finetune_samples=finetune_samples,
        seed_with_vbmf=sampler != "random",
        model_name=model_name,
        study_name=f"{model_name}-{sampler}-{budget_fraction}-s{seed}",
        progress=progress,
    )
    trials = completed(study)
    if not trials:
        raise rankopt.RankoptError(f"search {sampler} at {budget_fraction}: no completed trial")
    best = best_first(trials)[0]  # the search's recommendation (export_plan's choice)
    plan = rankopt.export_plan(study, trial=best.number)
    return study, plan, hypervolume_2d(study_points(study))


def spearman_sample(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """``k`` completed trials: the recommended one and the rest spread evenly over the
    search's ranking (:func:`rankopt.storage.best_first`; distinct plans only)."""
    seen: set[str] = set()
    trials = []
    for t in best_first(completed(study)):
        key = repr(t.user_attrs["plan"]["layers"])
        if key not in seen:
            seen.add(key)
            trials.append(t)
    if len(trials) <= k:
        return trials
    idx = sorted({round(i * (len(trials) - 1) / (k - 1)) for i in range(k)})
    return [trials[i] for i in idx]


def study_points(study: optuna.Study) -> list[tuple[float, float]]:
    """``(val accuracy, macs ratio)`` of every completed feasible trial."""
    return [
        (float(t.user_attrs["accuracy"]), float(t.user_attrs["macs_ratio"]))
        for t in completed(study)
    ]


def hypervolume_2d(points: Sequence[tuple[float, float]]) -> float:
    """Area dominated by ``(accuracy, macs_ratio)`` points, reference (accuracy 0, ratio 1).

    Accuracy is maximised and the MACs ratio minimised; points with ratio >= 1 or accuracy
    <= 0 add nothing. Sweep over the points sorted by ratio, adding the strip each one
    dominates beyond the best accuracy seen at a smaller ratio.
    """
    pts = sorted((r, a) for a, r in points if r < 1.0 and a > 0.0)
    area = 0.0
    best_acc = 0.0
    for i, (ratio, acc) in enumerate(pts):
        best_acc = max(best_acc, acc)
        next_ratio = pts[i + 1][0] if i + 1 < len(pts) else 1.0
        area += best_acc * (next_ratio - ratio)
    return area
