"""Seed trials: the VBMF plan, weakened / strengthened variants, uniform baselines."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from rankopt.search._budget import Budget
from rankopt.search._space import Proposal, SearchSpace
from rankopt.spaces import get_method, vbmf_ranks

__all__ = ["Seed", "seed_trials"]


@dataclass(frozen=True)
class Seed:
    """One enqueued trial.

    Attributes:
        name: Label stored in the trial's ``user_attrs["seed"]`` (``"vbmf"``, ...).
        params: Trial parameters (already fitted into the budget).
    """

    name: str
    params: Mapping[str, Any]


def _vbmf_proposals(
    space: SearchSpace, modules: Mapping[str, nn.Module], *, weaken: float, shrink: float
) -> dict[str, Proposal]:
    """Kim et al.'s recipe: Tucker-2 on kxk convs, SVD on 1x1 convs and linear layers, at
    the VBMF ranks (weakened toward full by ``weaken``, multiplied by ``shrink``).

    A layer stays ``keep`` when its decomposition would cost more than dense, when it is
    the input layer (3 or fewer input channels: Kim et al. leave the first conv dense), or
    when VBMF finds no component above the noise level (rank clamped to 1: the matrix is
    too small for VBMF to estimate anything, and rank 1 would cut the network).
    """
    proposals: dict[str, Proposal] = {}
    for name, offered in space.choices.items():
        method = next((m for m in ("tucker2", "svd", "linear_svd") if m in offered), None)
        info = space.layer(name)
        if method is None or (info.kind == "conv2d" and info.in_channels <= 3):
            proposals[name] = Proposal("keep")
            continue
        options = get_method(method).default_options(info)
        module = modules[name]
        assert isinstance(module, nn.Conv2d | nn.Linear)  # eligible layers are
        if any(r <= 1 for r in vbmf_ranks(module, method).values()):
            proposals[name] = Proposal("keep")
            continue
        ranks = vbmf_ranks(module, method, weaken=weaken)
        ranks = {k: max(1, math.ceil(v * shrink)) for k, v in ranks.items()}
        full = space.full_ranks(name, method, options)
        ranks = {k: min(full[k], v) for k, v in ranks.items()}
        if get_method(method).macs(info, ranks, options) >= info.macs:
            proposals[name] = Proposal("keep")
        else:
            proposals[name] = space.proposal_from_ranks(name, method, ranks, options)
    return proposals


def _uniform_proposals(space: SearchSpace, method: str) -> dict[str, Proposal] | None:
    """``method`` at one rank fraction on every layer that offers it (fraction 1 here; the
    budget fit scales it). Layers that do not offer it use the structure-preserving
    fallback (``svd`` on 1x1 convs, ``linear_svd`` on linear layers) or stay dense."""
    proposals: dict[str, Proposal] = {}
    used = False
    for name, offered in space.choices.items():
        chosen = method if method in offered else None
        if chosen is None:
            chosen = next((m for m in ("svd", "linear_svd") if m in offered), None)
        else:
            used = True
        if chosen is None:
            proposals[name] = Proposal("keep")
            continue
        info = space.layer(name)
        m = get_method(chosen)
        options = m.default_options(info)
        full = space.full_ranks(name, chosen, options)
        proposals[name] = space.proposal_from_ranks(name, chosen, full, options)
    return proposals if used else None


def _fit(
    space: SearchSpace, proposals: dict[str, Proposal], budget: Budget, fallback_scale: float
) -> dict[str, Proposal] | None:
    """Proposals whose realisation fits ``budget`` (fractions pre-scaled, so the trial's
    parameters are what is realised), or None when they cannot fit."""
    has_budget = budget.max_macs is not None or budget.max_params is not None
    if not has_budget:
        scale = fallback_scale
    else:
        result = space.repair(proposals, budget)
        if result is None:
            return None
        return {
            lp.layer: space.proposal_from_ranks(lp.layer, lp.method, lp.ranks, lp.options)
            for lp in result.layers
        }
    return {
        name: Proposal(p.method, {k: v * scale for k, v in p.fractions.items()}, p.options)
        for name, p in proposals.items()
    }


def seed_trials(space: SearchSpace, model: nn.Module, budget: Budget) -> list[Seed]:
    """Seeds for a study, in enqueue order (the VBMF plan first).

    ``vbmf``: the VBMF Tucker-2/SVD plan (fitted into the budget by global rank scaling
    when it does not fit); ``vbmf_w0.5``: VBMF ranks weakened halfway toward full rank;
    ``vbmf_x0.5``: VBMF ranks halved; ``uniform_<method>``: one method everywhere at the
    largest uniform rank fraction that fits the budget (0.5 without a budget). Duplicates
    (same parameters) are dropped.
    """
    modules = dict(model.named_modules())
    seeds: list[Seed] = []
    seen: list[dict[str, Any]] = []

    def add(name: str, proposals: dict[str, Proposal] | None, fallback_scale: float) -> None:
        if proposals is None:
            return
        fitted = _fit(space, proposals, budget, fallback_scale)
        if fitted is None:
            return
        params = space.params_of(fitted)
        if params in seen:
            return
        seen.append(params)
        seeds.append(Seed(name, params))

    if not space.choices:
        return seeds
    add("vbmf", _vbmf_proposals(space, modules, weaken=0.0, shrink=1.0), 1.0)
    add("vbmf_w0.5", _vbmf_proposals(space, modules, weaken=0.5, shrink=1.0), 1.0)
    add("vbmf_x0.5", _vbmf_proposals(space, modules, weaken=0.0, shrink=0.5), 1.0)
    offered = {m for methods in space.choices.values() for m in methods}
    for method in ("tucker2", "svd", "cp", "gkpd", "spatial_svd"):
        if method in offered:
            add(f"uniform_{method}", _uniform_proposals(space, method), 0.5)
    return seeds
