"""The one-shot plans the benchmarks compare: the seed recipe, uniform ranks, greedy.

Everything that decomposes, costs or fine-tunes goes through rankopt (``SearchSpace``,
``apply_plan``, ``calibrate_bn``); this module only chooses *which* plan each baseline
proposes and scores the greedy baseline's per-layer candidates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

import rankopt
from rankopt.evaluators import evaluate_accuracy
from rankopt.searching import Budget, SearchSpace
from rankopt.searching.space._allocation import Candidate

Data = tuple[torch.Tensor, torch.Tensor]

GREEDY_RATIOS: tuple[float, ...] = (0.03, 0.06, 0.1, 0.2, 0.35, 0.5, 0.75)
"""Per-layer MACs ratios (decomposed / dense layer) the greedy baseline scores."""
UNIFORM_METHODS: tuple[str, ...] = ("tucker2", "cp", "svd", "gkpd", "spatial_svd")


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
