"""Plans compared by the benchmark: the seed recipe, uniform baselines, greedy, searches.

Everything that decomposes, costs or fine-tunes goes through rankopt (``SearchSpace``,
``apply_plan``, ``count_macs``, ``full_finetune``, ``rankopt.search``); this module only
chooses *which* plan each baseline proposes, scores the greedy baseline's per-layer
candidates, and computes hypervolumes and interleaved latency ratios.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FixedTrial, TrialState
from torch import nn

import rankopt
from rankopt.evaluators import evaluate_accuracy, measure_latency_ms
from rankopt.search import Budget, SearchSpace
from rankopt.search._seeding import seed_trials
from rankopt.search._space import Proposal

Data = tuple[torch.Tensor, torch.Tensor]

GREEDY_RATIOS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75)
UNIFORM_METHODS: tuple[str, ...] = ("tucker2", "cp", "svd", "gkpd")


@dataclass
class PlannedModel:
    """One candidate compressed model of a benchmark row.

    Attributes:
        label: Row label (``vbmf``, ``uniform_cp``, ``greedy``, ``search_tpe``, ...).
        plan: The rankopt plan (None for the peer library's model).
        model: The compressed model (not yet fine-tuned).
        note: Free text shown next to the row (e.g. why a baseline does not fit).
        extra: Numbers the row carries (search hypervolume, val accuracy, ...).
    """

    label: str
    plan: rankopt.CompressionPlan | None
    model: nn.Module | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _layers_from_seed(
    space: SearchSpace, params: Mapping[str, Any], budget: Budget
) -> list[rankopt.LayerPlan] | None:
    """Realise a seed's trial parameters, fitted into ``budget`` by global rank scaling."""
    proposals = space.suggest(FixedTrial(dict(params)))  # type: ignore[arg-type]
    result = space.repair(proposals, budget)
    return None if result is None else list(result.layers)


def seed_plans(
    model: nn.Module, space: SearchSpace, budget: Budget, *, model_name: str
) -> dict[str, rankopt.CompressionPlan]:
    """The package's seed plans (``vbmf``, ``uniform_<method>``) fitted into ``budget``.

    These are exactly the trials that :func:`rankopt.search` enqueues first: the VBMF
    Tucker-2 recipe (Tucker-2 on kxk convs, channel SVD on 1x1 convs, SVD on linear
    layers, input conv and VBMF-rank-1 layers dense) scaled by one global factor until it
    fits, and one method everywhere at the largest uniform rank fraction that fits.
    A baseline that cannot fit the budget is absent from the result.
    """
    plans: dict[str, rankopt.CompressionPlan] = {}
    for seed in seed_trials(space, model, budget):
        layers = _layers_from_seed(space, seed.params, budget)
        if layers is not None:
            plans[seed.name] = space.plan(layers, model_name=model_name)
    return plans


def vbmf_plan_unbudgeted(
    model: nn.Module, space: SearchSpace, *, model_name: str
) -> rankopt.CompressionPlan:
    """The VBMF Tucker-2 recipe at the VBMF ranks themselves (no budget, no scaling)."""
    plans = seed_plans(model, space, Budget(), model_name=model_name)
    return plans["vbmf"]


# ----------------------------------------------------------------------------- greedy
def _layer_proposal(space: SearchSpace, layer: str, ratio: float) -> Proposal:
    """The layer's structure-preserving method with every rank at ``ratio`` of full."""
    offered = space.choices[layer]
    method = next(m for m in ("tucker2", "svd", "linear_svd", *offered) if m in offered)
    m = rankopt.get_method(method)
    info = space.layer(layer)
    options = m.default_options(info)
    full = space.full_ranks(layer, method, options)
    ranks = {k: max(1, round(ratio * v)) for k, v in full.items()}
    return space.proposal_from_ranks(layer, method, ranks, options)


@dataclass(frozen=True)
class GreedyScores:
    """Per-layer scores of the greedy baseline (computed once per model).

    Attributes:
        dense_accuracy: Validation accuracy of the dense model.
        accuracy: ``(layer, ratio) -> val accuracy`` with only that layer decomposed.
        proposals: ``(layer, ratio) -> proposal`` scored.
    """

    dense_accuracy: float
    accuracy: Mapping[tuple[str, float], float]
    proposals: Mapping[tuple[str, float], Proposal]


def greedy_scores(
    model: nn.Module,
    space: SearchSpace,
    val: Data,
    *,
    model_name: str,
    ratios: Sequence[float] = GREEDY_RATIOS,
) -> GreedyScores:
    """Score every searchable layer alone at every candidate ratio (no fine-tune).

    As AIMET's compression-ratio selection does: decompose one layer at a time, keep the
    rest dense, and record the validation accuracy.
    """
    keep_all = {name: Proposal("keep") for name in space.layer_names}
    accuracy: dict[tuple[str, float], float] = {}
    proposals: dict[tuple[str, float], Proposal] = {}
    for name in space.layer_names:
        for ratio in ratios:
            prop = _layer_proposal(space, name, ratio)
            layers = space.realise({**keep_all, name: prop})
            plan = space.plan(layers, model_name=model_name)
            student = rankopt.apply_plan(model, plan)
            accuracy[(name, ratio)] = evaluate_accuracy(student, *val)
            proposals[(name, ratio)] = prop
    return GreedyScores(evaluate_accuracy(model, *val), accuracy, proposals)


def greedy_plan(
    space: SearchSpace, scores: GreedyScores, budget: Budget, *, model_name: str
) -> tuple[rankopt.CompressionPlan, str]:
    """The cheapest-loss combination of per-layer ratios that meets ``budget``.

    For an accuracy-loss threshold ``t`` every layer takes its cheapest (smallest) ratio
    whose single-layer loss is at most ``t`` (dense when none is); the smallest ``t`` whose
    combination meets the budget wins (AIMET's greedy selection). When even the largest
    threshold does not fit, the combination is scaled down by ``SearchSpace.repair``.

    Returns:
        The plan and a note saying which threshold was used (or that repair was needed).
    """
    ratios = sorted({r for (_, r) in scores.accuracy})
    losses = sorted({scores.dense_accuracy - a for a in scores.accuracy.values()})

    def combo(threshold: float) -> dict[str, Proposal]:
        chosen: dict[str, Proposal] = {}
        for name in space.layer_names:
            prop = Proposal("keep")
            for ratio in ratios:  # smallest (cheapest) ratio first
                if scores.dense_accuracy - scores.accuracy[(name, ratio)] <= threshold:
                    prop = scores.proposals[(name, ratio)]
                    break
            chosen[name] = prop
        return chosen

    for threshold in losses:
        props = combo(threshold)
        layers = space.realise(props)
        if budget.fits(*space.cost_of(layers)):
            note = f"loss threshold {threshold:.4f}"
            return space.plan(layers, model_name=model_name), note
    props = combo(math.inf)
    result = space.repair(props, budget)
    if result is None:
        raise rankopt.BudgetError("greedy: no combination fits the budget even after repair")
    note = f"all layers at {ratios[0]}, then global rank scale {result.scale:.3f} (repair)"
    return space.plan(list(result.layers), model_name=model_name), note


# ----------------------------------------------------------------------------- searches
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

    ``random`` runs without the seed trials (pure random search); ``tpe`` and ``nsga2``
    run rankopt's default recipe (VBMF and uniform seeds enqueued first).

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
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("feasible", True) and "accuracy" in t.user_attrs
    ]
    if not trials:
        raise rankopt.RankoptError(f"search {sampler} at {budget_fraction}: no completed trial")
    best = max(trials, key=lambda t: (t.user_attrs["accuracy"], -t.user_attrs["macs"]))
    plan = rankopt.export_plan(study, trial=best.number)
    points = [(t.user_attrs["accuracy"], t.user_attrs["macs_ratio"]) for t in trials]
    return study, plan, hypervolume_2d(points)


def study_points(study: optuna.Study) -> list[tuple[float, float]]:
    """``(val accuracy, macs ratio)`` of every completed feasible trial."""
    return [
        (float(t.user_attrs["accuracy"]), float(t.user_attrs["macs_ratio"]))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("feasible", True) and "accuracy" in t.user_attrs
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


# ----------------------------------------------------------------------------- peer library
def tltorch_model(
    model: nn.Module, space: SearchSpace, budget: Budget, input_shape: tuple[int, ...]
) -> tuple[nn.Module, str]:
    """tensorly-torch Tucker on every kxk conv (the input conv stays dense), one rank
    fraction for all, the largest that fits ``budget`` by fvcore's count.

    ``tltorch.FactorizedConv.from_conv(conv, rank=f, factorization="tucker",
    implementation="factorized", decompose_weights=True)``: full Tucker over all four modes,
    ``f`` is tltorch's fraction of the dense parameter count; bisection on ``f``.

    Raises:
        ImportError: tltorch is not installed.
        BudgetError: even the smallest fraction tried does not fit.
    """
    import tltorch  # optional peer library

    targets = [
        name
        for name in space.layer_names
        if space.layer(name).kind == "conv2d"
        and space.layer(name).kernel_size != (1, 1)
        and space.layer(name).in_channels > 3
    ]

    def build(fraction: float) -> nn.Module:
        new = copy.deepcopy(model)
        for name in targets:
            parent_name, _, attr = name.rpartition(".")
            parent = new.get_submodule(parent_name) if parent_name else new
            conv = getattr(parent, attr)
            setattr(
                parent,
                attr,
                tltorch.FactorizedConv.from_conv(
                    conv,
                    rank=fraction,
                    factorization="tucker",
                    implementation="factorized",
                    decompose_weights=True,
                ),
            )
        return new.eval()

    assert budget.max_macs is not None
    lo, hi = 0.0, 1.0
    best: nn.Module | None = None
    best_f = 0.0
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        with torch.no_grad():
            candidate = build(mid)
        if rankopt.count_macs(candidate, input_shape) <= budget.max_macs:
            lo, best, best_f = mid, candidate, mid
        else:
            hi = mid
    if best is None:
        raise rankopt.BudgetError("tltorch: no rank fraction in (0, 1) fits the budget")
    return best, f"tltorch Tucker, rank fraction {best_f:.3f} of params on {len(targets)} convs"


# ----------------------------------------------------------------------------- latency
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
