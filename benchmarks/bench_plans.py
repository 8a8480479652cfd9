"""Plans compared by the benchmark: the seed recipe, uniform baselines, greedy, searches.

Everything that decomposes, costs or fine-tunes goes through rankopt (``SearchSpace``,
``apply_plan``, ``calibrate_bn``, ``count_macs``, ``rankopt.search``); this module only
chooses *which* plan each baseline proposes, scores the greedy baseline's per-layer
candidates, and computes hypervolumes, Spearman samples and interleaved latency ratios.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import rankopt
from rankopt.evaluators import evaluate_accuracy
from rankopt.latency import measure_latency_ms
from rankopt.search import Budget, SearchSpace
from rankopt.search.space._allocation import Candidate
from rankopt.storage._attrs import best_first

Data = tuple[torch.Tensor, torch.Tensor]

GREEDY_RATIOS: tuple[float, ...] = (0.03, 0.06, 0.1, 0.2, 0.35, 0.5, 0.75)
"""Per-layer MACs ratios (decomposed / dense layer) the greedy baseline scores."""
UNIFORM_METHODS: tuple[str, ...] = ("tucker2", "cp", "svd", "gkpd", "spatial_svd")


@dataclass
class PlannedModel:
    """One candidate compressed model of a benchmark row.

    Attributes:
        label: Row label (``seed_recipe``, ``uniform_cp``, ``greedy``, ``search_tpe``, ...).
        plan: The rankopt plan (None for the peer library's model).
        model: The compressed model (not yet calibrated nor fine-tuned).
        note: Free text shown next to the row (e.g. why a baseline does not fit).
        extra: Numbers the row carries (search val accuracy, ...).
    """

    label: str
    plan: rankopt.CompressionPlan | None
    model: nn.Module | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def bench_space(model: nn.Module, input_shape: tuple[int, ...], n_outputs: int) -> SearchSpace:
    """The search space :func:`rankopt.search` builds for ``model`` (default settings)."""
    return SearchSpace(rankopt.profile(model, input_shape), n_outputs=n_outputs)


def n_outputs_of(model: nn.Module, images: torch.Tensor) -> int:
    """Number of logits of ``model``."""
    with torch.no_grad():
        return int(model.eval()(images[:1]).shape[1])


# ----------------------------------------------------------------------------- seed recipe
def seed_recipe_plan(
    model: nn.Module, space: SearchSpace, *, model_name: str
) -> rankopt.CompressionPlan:
    """Kim et al. (2016) at the VBMF ranks themselves (no budget).

    Tucker-2 on kxk convs, channel SVD on 1x1 convs, SVD on linear layers (the method of
    the layer that has ``vbmf_seed``), ranks from :func:`rankopt.vbmf_ranks`. The input
    conv (<= 3 input channels) stays dense, as in the paper; so does a layer whose VBMF
    ranks would cost at least its dense MACs or parameters, and every layer the space
    does not search (a negligible share of the model).
    """
    modules = dict(model.named_modules())
    layers = []
    for name, offered in space.choices.items():
        info = space.layer(name)
        # Tucker-2 on kxk convs, channel SVD on 1x1 convs, SVD on linear layers
        method = next((m for m in ("tucker2", "svd", "linear_svd") if m in offered), None)
        if method is None or (info.kind == "conv2d" and info.in_channels <= 3):
            continue
        m = rankopt.get_method(method)
        options = m.default_options(info)
        full = m.rank_space(info, options)
        module = modules[name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
        ranks = {
            k: min(full[k], max(space.min_rank(info), int(v)))
            for k, v in rankopt.vbmf_ranks(module, method).items()
        }
        if m.macs(info, ranks, options) >= info.macs:
            continue
        if m.n_params(info, ranks, options) >= info.n_params:
            continue
        layers.append(space.layer_plan(name, Candidate(method, ranks, options)))
    return space.plan(layers, model_name=model_name)


# ----------------------------------------------------------------------------- uniform
def _fraction(space: SearchSpace, layer: str, c: Candidate) -> float:
    """Rank fraction of a candidate: the mean over its rank names of rank / full rank."""
    full = rankopt.get_method(c.method).rank_space(space.layer(layer), c.options)
    return statistics.fmean(c.ranks[k] / full[k] for k in full)


def uniform_plan(
    space: SearchSpace, method: str, budget: Budget, *, model_name: str
) -> tuple[rankopt.CompressionPlan | None, str]:
    """``method`` on every searchable layer that offers it, all at one rank fraction.

    1x1 convs that do not offer ``method`` take channel SVD, linear layers SVD (both at the
    same fraction); other layers stay dense. Each layer takes the costliest useful point
    (:meth:`SearchSpace.candidates`) whose rank fraction is at most ``f``, or its cheapest
    point when none is; ``f`` is the largest that meets the budget.

    Returns:
        ``(plan or None when even the cheapest points do not fit, note)``.
    """
    paths: dict[str, tuple[Candidate, ...]] = {}
    for name, offered in space.choices.items():
        info = space.layer(name)
        if method in offered:
            chosen = method
        elif info.kind == "linear" and "linear_svd" in offered:
            chosen = "linear_svd"
        elif info.kernel_size == (1, 1) and "svd" in offered:
            chosen = "svd"
        else:
            continue
        paths[name] = space.candidates(name, chosen)
    if not any(space.choices[n] and method in space.choices[n] for n in paths):
        return None, f"{method} is offered on no layer"

    def layers_at(f: float) -> list[rankopt.LayerPlan]:
        out = []
        for name, path in paths.items():
            below = [c for c in path if _fraction(space, name, c) <= f + 1e-12]
            pick = max(below, key=lambda c: c.macs) if below else path[0]
            out.append(space.layer_plan(name, pick))
        return out

    grid = sorted({_fraction(space, n, c) for n, path in paths.items() for c in path})
    best: tuple[float, list[rankopt.LayerPlan]] | None = None
    lo, hi = 0, len(grid) - 1
    while lo <= hi:  # cost grows with f: bisect over the fractions that occur
        mid = (lo + hi) // 2
        layers = layers_at(grid[mid])
        if budget.fits(*space.cost_of(layers)):
            best = (grid[mid], layers)
            lo = mid + 1
        else:
            hi = mid - 1
    if best is None:
        return None, "cannot fit the budget (every layer at its cheapest useful rank)"
    return space.plan(best[1], model_name=model_name), f"rank fraction {best[0]:.3f}"


# ----------------------------------------------------------------------------- greedy
@dataclass(frozen=True)
class GreedyScores:
    """Per-layer scores of the greedy baseline (computed once per model).

    Attributes:
        dense_accuracy: Validation accuracy of the dense model.
        accuracy: ``(layer, ratio) -> val accuracy`` with only that layer decomposed at
            the candidate nearest below ``ratio`` of its MACs, BatchNorm re-calibrated.
        candidates: ``(layer, ratio) -> candidate`` scored.
    """

    dense_accuracy: float
    accuracy: Mapping[tuple[str, float], float]
    candidates: Mapping[tuple[str, float], Candidate]


def _greedy_method(space: SearchSpace, layer: str) -> str:
    offered = space.choices[layer]
    return next(m for m in ("tucker2", "svd", "linear_svd", *offered) if m in offered)


def greedy_scores(
    model: nn.Module,
    space: SearchSpace,
    val: Data,
    calibration_images: torch.Tensor,
    *,
    model_name: str,
    ratios: Sequence[float] = GREEDY_RATIOS,
) -> GreedyScores:
    """Score every searchable layer alone at every MACs ratio (calibrated, no fine-tune).

    As AIMET's greedy compression-ratio selection does: decompose one layer at a time
    (Tucker-2 on kxk convs, SVD on 1x1 convs and linear layers), keep the rest dense,
    re-estimate BatchNorm statistics, record the validation accuracy.
    """
    accuracy: dict[tuple[str, float], float] = {}
    chosen: dict[tuple[str, float], Candidate] = {}
    for name in space.layer_names:
        path = space.candidates(name, _greedy_method(space, name))
        dense_macs = space.layer(name).macs
        for ratio in ratios:
            below = [c for c in path if c.macs <= ratio * dense_macs]
            c = below[-1] if below else path[0]
            plan = space.plan([space.layer_plan(name, c)], model_name=model_name)
            student = rankopt.calibrate_bn(rankopt.apply_plan(model, plan), calibration_images)
            accuracy[(name, ratio)] = evaluate_accuracy(student, *val)
            chosen[(name, ratio)] = c
    return GreedyScores(evaluate_accuracy(model, *val), accuracy, chosen)


def greedy_plan(
    space: SearchSpace, scores: GreedyScores, budget: Budget, *, model_name: str
) -> tuple[rankopt.CompressionPlan | None, str]:
    """The per-layer ratios of the smallest accuracy-loss threshold that meets ``budget``.

    For a threshold ``t`` every layer takes its cheapest ratio whose single-layer loss is
    at most ``t`` (dense when none is); the smallest ``t`` whose combination meets the
    budget wins (AIMET's greedy selection).
    """
    ratios = sorted({r for (_, r) in scores.accuracy})
    losses = sorted({scores.dense_accuracy - a for a in scores.accuracy.values()})
    for threshold in [*losses, math.inf]:
        layers = []
        for name in space.layer_names:
            for ratio in ratios:  # cheapest first
                if scores.dense_accuracy - scores.accuracy[(name, ratio)] <= threshold:
                    layers.append(space.layer_plan(name, scores.candidates[(name, ratio)]))
                    break
        if budget.fits(*space.cost_of(layers)):
            return space.plan(layers, model_name=model_name), f"loss threshold {threshold:.4f}"
    return None, f"cannot fit the budget (every layer at {ratios[0]:.0%} of its MACs)"


# ----------------------------------------------------------------------------- searches
@contextlib.contextmanager
def shared_sensitivity() -> Iterator[None]:
    """Reuse each study's sensitivity profile across studies with the same data.

    The profile is a deterministic function of the model, the space and the calibration
    images (which depend on the search seed only); :func:`rankopt.search` measures it once
    per study. Studies of one benchmark run that share those inputs get the profile
    measured by the first one, exactly as a study resumed from storage would.
    """
    from rankopt.search.objective import _sensitivity as _run

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
    search's ranking (:func:`rankopt.storage._attrs.best_first`; distinct plans only)."""
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


# ----------------------------------------------------------------------------- peer library
def tltorch_model(
    model: nn.Module, space: SearchSpace, budget: Budget, input_shape: tuple[int, ...]
) -> tuple[nn.Module, str]:
    """tensorly-torch Tucker on every searchable kxk conv (the input conv stays dense), one
    rank fraction for all, the largest that fits ``budget`` by fvcore's count.

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
