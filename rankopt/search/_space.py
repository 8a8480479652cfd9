"""The search space: per eligible layer a method, its rank fractions and its options.

Parameter names are stable (plans, plots and resumed studies rely on them):
``"<layer>/method"`` (categorical), ``"<layer>/<method>/<rank>"`` (rank as a fraction of
full rank, uniform in [1/full, 1]) and ``"<layer>/<method>/<option>"`` (categorical).

The fractions are uniform, not log-uniform as design.md first had it: under a budget the
repair scales every fraction by one factor, so what matters is their ratio across layers,
and a log-uniform prior put most sampled layers at rank 1-2 (a crushed network whose
accuracy no proxy fine-tune recovers; seen on resnet8/mnist5k: 0.22 vs 0.97).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from rankopt.errors import BudgetError, UnknownNameError
from rankopt.evaluators import ModelProfile
from rankopt.plan import CompressionPlan, LayerPlan
from rankopt.search._budget import Budget
from rankopt.spaces import LayerInfo, get_method, list_methods

__all__ = ["Proposal", "RepairResult", "SearchSpace", "default_methods_for"]

_CONV_METHODS = ("tucker2", "cp", "svd", "spatial_svd", "gkpd")


@dataclass(frozen=True)
class Proposal:
    """A sampled choice for one layer, before repair.

    Attributes:
        method: Method name.
        fractions: Rank name -> fraction of full rank in (0, 1].
        options: Method options (e.g. GKPD factor shape).
    """

    method: str
    fractions: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RepairResult:
    """Outcome of fitting proposals into the budget.

    Attributes:
        layers: The realised per-layer plans (ranks are integers).
        scale: Global factor applied to every rank fraction (1.0 when nothing was scaled).
        macs: Analytic multiply-accumulates per image of the realised plan.
        n_params: Analytic parameter count of the realised plan.
        converted: Layers switched from ``keep`` to a compressing method to fit.
    """

    layers: tuple[LayerPlan, ...]
    scale: float
    macs: int
    n_params: int
    converted: tuple[str, ...] = ()


def default_methods_for(layer: LayerInfo, allowed: Sequence[str]) -> tuple[str, ...]:
    """Methods the search offers for ``layer`` (``keep`` always first).

    A 1x1 conv is a matrix product: every conv method reduces to the same matrix
    factorisation there, so only ``svd`` is offered. Linear layers get ``linear_svd``.
    """
    if not layer.eligible:
        return ("keep",)
    if layer.kind == "linear":
        candidates: tuple[str, ...] = ("linear_svd",)
    elif layer.kernel_size == (1, 1):
        candidates = ("svd",)
    else:
        candidates = _CONV_METHODS
    chosen = [m for m in candidates if m in allowed and get_method(m).supports(layer)]
    return ("keep", *chosen)


class SearchSpace:
    """Search space over the eligible layers of a profiled model.

    Args:
        profile: The dense model's profile.
        methods: Methods to offer (``keep`` is always offered); None means all registered.
    """

    def __init__(self, profile: ModelProfile, methods: Sequence[str] | None = None) -> None:
        registered = list_methods()
        allowed = list(registered if methods is None else methods)
        for name in allowed:
            if name not in registered:
                raise UnknownNameError("method", name, registered)
        self.profile = profile
        self.choices: dict[str, tuple[str, ...]] = {}
        for layer in profile.eligible_layers:
            offered = default_methods_for(layer, allowed)
            if len(offered) > 1:
                self.choices[layer.name] = offered
        self._layers = {layer.name: layer for layer in profile.eligible_layers}
        self._full_cache: dict[tuple[str, str, tuple[tuple[str, Any], ...]], dict[str, int]] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the searchable layers, in model order."""
        return tuple(self.choices)

    def layer(self, name: str) -> LayerInfo:
        """The profiled layer called ``name``."""
        return self._layers[name]

    def full_ranks(self, layer: str, method: str, options: Mapping[str, Any]) -> dict[str, int]:
        """Full rank of each rank name for ``method`` on ``layer`` with ``options``."""
        key = (layer, method, tuple(sorted(options.items())))
        if key not in self._full_cache:
            self._full_cache[key] = get_method(method).rank_space(self._layers[layer], options)
        return self._full_cache[key]

    def _max_full_ranks(self, layer: str, method: str) -> dict[str, int]:
        """Largest full rank over all option values (fixes the fraction's lower bound)."""
        info = self._layers[layer]
        m = get_method(method)
        space = m.option_space(info)
        combos: list[dict[str, Any]] = [{}]
        for key, values in space.items():
            combos = [{**c, key: v} for c in combos for v in values]
        best: dict[str, int] = {}
        for combo in combos:
            for rank_name, full in self.full_ranks(layer, method, combo).items():
                best[rank_name] = max(best.get(rank_name, 1), full)
        return best

    @staticmethod
    def param_name(layer: str, *parts: str) -> str:
        """Stable parameter name, e.g. ``"layer1.0.conv1/tucker2/r_in"``."""
        return "/".join((layer, *parts))

    # ------------------------------------------------------------------ sampling
    def suggest(self, trial: optuna.Trial) -> dict[str, Proposal]:
        """Sample one proposal per searchable layer from ``trial``."""
        proposals: dict[str, Proposal] = {}
        for name, offered in self.choices.items():
            method = str(trial.suggest_categorical(self.param_name(name, "method"), offered))
            if method == "keep":
                proposals[name] = Proposal("keep")
                continue
            info = self._layers[name]
            m = get_method(method)
            options = {
                key: trial.suggest_categorical(self.param_name(name, method, key), values)
                for key, values in m.option_space(info).items()
            }
            fractions = {
                rank_name: trial.suggest_float(
                    self.param_name(name, method, rank_name), 1.0 / full, 1.0
                )
                for rank_name, full in self._max_full_ranks(name, method).items()
            }
            proposals[name] = Proposal(method, fractions, options)
        return proposals

    def params_of(self, proposals: Mapping[str, Proposal]) -> dict[str, Any]:
        """Trial parameters that make :meth:`suggest` return ``proposals`` (for seeding)."""
        params: dict[str, Any] = {}
        for name, prop in proposals.items():
            if name not in self.choices:
                continue
            params[self.param_name(name, "method")] = prop.method
            for key, value in prop.options.items():
                params[self.param_name(name, prop.method, key)] = value
            if prop.method == "keep":
                continue
            lows = self._max_full_ranks(name, prop.method)
            for rank_name, frac in prop.fractions.items():
                params[self.param_name(name, prop.method, rank_name)] = min(
                    1.0, max(1.0 / lows[rank_name], float(frac))
                )
        return params

    def proposal_from_ranks(
        self, layer: str, method: str, ranks: Mapping[str, int], options: Mapping[str, Any]
    ) -> Proposal:
        """The proposal whose realisation at scale 1 gives exactly ``ranks``."""
        if method == "keep":
            return Proposal("keep")
        full = self.full_ranks(layer, method, options)
        maxf = self._max_full_ranks(layer, method)
        # fraction is relative to the largest full rank over options, see realise().
        fractions = {k: min(1.0, ranks[k] / maxf[k]) for k in full}
        return Proposal(method, fractions, dict(options))

    # ------------------------------------------------------------------ realising
    def _ranks(self, layer: str, prop: Proposal, scale: float) -> dict[str, int]:
        full = self.full_ranks(layer, prop.method, prop.options)
        maxf = self._max_full_ranks(layer, prop.method)
        ranks = {}
        for rank_name, f in prop.fractions.items():
            value = round(scale * f * maxf[rank_name])
            ranks[rank_name] = int(min(full[rank_name], max(1, value)))
        return ranks

    def realise(self, proposals: Mapping[str, Proposal], scale: float = 1.0) -> list[LayerPlan]:
        """Integer-rank layer plans for ``proposals`` with every fraction times ``scale``."""
        layers = []
        for name, prop in proposals.items():
            info = self._layers[name]
            ranks = {} if prop.method == "keep" else self._ranks(name, prop, scale)
            layers.append(
                LayerPlan(
                    layer=name,
                    method=prop.method,
                    ranks=ranks,
                    options=dict(prop.options),
                    weight_shape=info.weight_shape,
                )
            )
        return layers

    def cost_of(self, layers: Sequence[LayerPlan]) -> tuple[int, int]:
        """Analytic ``(macs, n_params)`` of the model with ``layers`` applied."""
        macs = self.profile.macs
        n_params = self.profile.n_params
        for lp in layers:
            if lp.method == "keep":
                continue
            info = self._layers[lp.layer]
            m = get_method(lp.method)
            macs += m.macs(info, lp.ranks, lp.options) - info.macs
            n_params += m.n_params(info, lp.ranks, lp.options) - info.n_params
        return macs, n_params

    def min_cost(self) -> tuple[int, int]:
        """Smallest reachable ``(macs, n_params)``: each layer at its cheapest choice.

        Layers are independent, so the minimum of the sum is the sum of the minima (taken
        separately for macs and for params).
        """
        macs = self.profile.macs
        n_params = self.profile.n_params
        for name, offered in self.choices.items():
            info = self._layers[name]
            best_macs, best_params = info.macs, info.n_params
            for method in offered:
                if method == "keep":
                    continue
                m = get_method(method)
                space = m.option_space(info)
                combos: list[dict[str, Any]] = [{}]
                for key, values in space.items():
                    combos = [{**c, key: v} for c in combos for v in values]
                for options in combos:
                    ones = dict.fromkeys(self.full_ranks(name, method, options), 1)
                    best_macs = min(best_macs, m.macs(info, ones, options))
                    best_params = min(best_params, m.n_params(info, ones, options))
            macs += best_macs - info.macs
            n_params += best_params - info.n_params
        return macs, n_params

    def check_budget(self, budget: Budget) -> None:
        """Reject a budget below the smallest reachable cost, with both numbers.

        Raises:
            BudgetError: no configuration of this space meets ``budget``.
        """
        min_macs, min_params = self.min_cost()
        if not self.choices and (budget.max_macs is not None or budget.max_params is not None):
            dense_fits = budget.fits(self.profile.macs, self.profile.n_params)
            if not dense_fits:
                raise BudgetError(
                    "the model has no layer that can be decomposed (every Conv2d/Linear is "
                    "ineligible), so only the dense model "
                    f"({self.profile.macs} macs, {self.profile.n_params} params) is reachable, "
                    f"and it does not meet the budget"
                )
        if budget.max_macs is not None and budget.max_macs < min_macs:
            raise BudgetError(
                f"max_macs = {budget.max_macs} is below the smallest reachable cost of "
                f"{min_macs} macs ({100 * min_macs / self.profile.macs:.1f}% of dense "
                f"{self.profile.macs}); raise the budget to at least {min_macs}"
            )
        if budget.max_params is not None and budget.max_params < min_params:
            raise BudgetError(
                f"max_params = {budget.max_params} is below the smallest reachable "
                f"{min_params} parameters ({100 * min_params / self.profile.n_params:.1f}% of "
                f"dense {self.profile.n_params}); raise the budget to at least {min_params}"
            )

    def repair(self, proposals: Mapping[str, Proposal], budget: Budget) -> RepairResult | None:
        """Fit ``proposals`` into ``budget`` by one global factor on every rank fraction.

        The factor is found by bisection on the analytic cost. When even rank 1 everywhere
        does not fit (too many ``keep`` layers), ``keep`` layers are switched, largest MACs
        first, to their cheapest-structure method (``tucker2`` for kxk convs, ``svd`` for
        1x1 convs, ``linear_svd`` for linear; else the first method offered, e.g. ``cp``
        when only ``cp`` is allowed) at fraction 1 and the bisection is repeated.

        Returns:
            The realised plan, or None when nothing fits (only possible when the budget is
            below :meth:`min_cost`).
        """
        props = dict(proposals)
        converted: list[str] = []
        keeps = sorted(
            (n for n, p in props.items() if p.method == "keep"),
            key=lambda n: -self._layers[n].macs,
        )
        while True:
            layers = self.realise(props, 1.0)
            macs, n_params = self.cost_of(layers)
            if budget.fits(macs, n_params):
                return RepairResult(tuple(layers), 1.0, macs, n_params, tuple(converted))
            low_layers = self.realise(props, 0.0)
            if budget.fits(*self.cost_of(low_layers)):
                return self._bisect(props, budget, converted)
            if not keeps:
                return None
            name = keeps.pop(0)
            offered = [m for m in self.choices.get(name, ()) if m != "keep"]
            preferred = [m for m in ("tucker2", "svd", "linear_svd") if m in offered]
            fallback = (preferred or offered or [None])[0]
            if fallback is None:
                continue
            full = self._max_full_ranks(name, fallback)
            props[name] = Proposal(
                fallback,
                dict.fromkeys(full, 1.0),
                get_method(fallback).default_options(self._layers[name]),
            )
            converted.append(name)

    def _bisect(
        self, props: Mapping[str, Proposal], budget: Budget, converted: list[str]
    ) -> RepairResult:
        lo, hi = 0.0, 1.0  # cost(lo) fits, cost(hi) does not
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if budget.fits(*self.cost_of(self.realise(props, mid))):
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-6:
                break
        layers = self.realise(props, lo)
        macs, n_params = self.cost_of(layers)
        return RepairResult(tuple(layers), lo, macs, n_params, tuple(converted))

    def plan(
        self,
        layers: Sequence[LayerPlan],
        *,
        model_name: str,
        metrics: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> CompressionPlan:
        """A :class:`CompressionPlan` for this model holding ``layers`` (model order)."""
        return CompressionPlan(
            model_name=model_name,
            fingerprint=self.profile.fingerprint,
            input_shape=tuple(self.profile.input_shape),
            layers=tuple(layers),
            metrics=dict(metrics or {}),
            provenance=dict(provenance or {}),
        )
