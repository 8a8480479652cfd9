"""The search space: per searchable layer a method and a weight; an allocation sets the ranks.

Parameters (names are stable: plans, plots and resumed studies rely on them):

- ``"<layer>/method"``: categorical over the compressing methods that can save something on
  the layer (a method none of whose ranks is cheaper than the dense layer is not offered).
- ``"<layer>/weight"``: log-uniform in [1/4, 4], the factor on the layer's sensitivity in the
  allocation (a layer that matters more than its calibrated, un-fine-tuned score says gets
  more rank).
- ``"target"``: only without a budget, or with ``repair="constraint"``: the MACs (or, with a
  parameter budget only, the parameters) to allocate, as a fraction of dense.
- ``"allocation"``: ``"sensitivity"`` or ``"uniform"``, how the ranks are set.
- ``"<group>/channels"``: only with a ``pruner``: categorical over the channel counts a
  coupled channel group may keep (:mod:`rankopt.searching.space._pruned`); the ranks are then
  allocated on the pruned model.

The realised ranks are not sampled. With ``"sensitivity"``,
:func:`~rankopt.searching.space._allocation.allocate` chooses for every layer ``keep`` or a point of
the sampled method's useful rank path, so that the model meets the budget (up to one rank
step) with the least weighted sensitivity; with ``"uniform"``,
:func:`~rankopt.searching.space._allocation.allocate_uniform` gives every layer one rank fraction
times its weight, the largest that fits (at low budgets crushing a few layers to rank 1-2
can fine-tune worse than keeping every layer at a moderate rank; the sampler learns which
wins). The plan is a deterministic function of the parameters.

Where the space differs from design.md's first picture: ranks are no longer fractions
repaired by one global scale (that crushed sampled plans to rank 1-2 and hid the realised
ranks from the sampler); GKPD uses its default factor shape.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rankopt.budget import Budget
from rankopt.errors import UnknownNameError
from rankopt.evaluators import ModelProfile
from rankopt.latency import LatencyTable
from rankopt.plan import ChannelPruning, CompressionPlan, LayerPlan
from rankopt.pruning import ChannelPruner
from rankopt.searching.space import DEFAULT_MIN_LAYER_SHARE
from rankopt.searching.space._allocation import Candidate, allocate, allocate_uniform, resource
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._proposal import Proposal, Realised
from rankopt.searching.space._pruned import (
    MAX_VIEWS,
    channels_key,
    offered_counts,
    pruned_profile,
)
from rankopt.searching.space._sampling import Sampling
from rankopt.spaces import LayerInfo, get_method, list_methods, round_ranks

__all__ = ["Proposal", "Realised", "SearchSpace"]


class SearchSpace(Sampling):
    """Search space over the searchable layers of a profiled model.

    Args:
        profile: The dense model's profile.
        methods: Methods to offer (``keep`` is always possible); None means all registered.
        n_outputs: The model's number of outputs: a layer that produces them (the
            classifier) is never factorised below that rank.
        min_layer_share: Layers whose MACs and parameters are both below this fraction of
            the model's stay dense (0 searches every eligible layer).
        rank_multiple: Round ranks to multiples of this (hardware-friendly shapes; 1: off).
        latency: Measured per-layer latency table: candidates then carry their predicted
            latency (a latency budget or objective), and methods whose latency does not
            follow their MACs on the table's runtime (``latency_friendly_on(runtime)``
            False) are not offered.
        pruner: The dense model's channel groups: trials also choose how many channels of
            each group stay (None: no channel pruning).
        only: Search these layers only (a pruned view searches its parent's layers).
    """

    def __init__(
        self,
        profile: ModelProfile,
        methods: Sequence[str] | None = None,
        *,
        n_outputs: int | None = None,
        min_layer_share: float = DEFAULT_MIN_LAYER_SHARE,
        rank_multiple: int = 1,
        latency: LatencyTable | None = None,
        pruner: ChannelPruner | None = None,
        only: Sequence[str] | None = None,
    ) -> None:
        registered = list_methods()
        allowed = list(registered if methods is None else methods)
        for name in allowed:
            if name not in registered:
                raise UnknownNameError("method", name, registered)
        self.profile = profile
        self.n_outputs = n_outputs
        self.rank_multiple = rank_multiple
        self.latency = latency
        self.methods = tuple(allowed)
        self.pruner = pruner
        self.channel_choices = offered_counts(pruner, rank_multiple) if pruner else {}
        self.root: SearchSpace = self
        self.pruning: tuple[ChannelPruning, ...] = ()
        self._views: OrderedDict[tuple[tuple[str, int], ...], SearchSpace] = OrderedDict()
        self._layers = {layer.name: layer for layer in profile.eligible_layers}
        self._candidates: dict[tuple[str, str], tuple[Candidate, ...]] = {}
        self.choices: dict[str, tuple[str, ...]] = {}
        for layer in profile.eligible_layers:
            share = max(
                layer.macs / max(1, profile.macs), layer.n_params / max(1, profile.n_params)
            )
            if (share < min_layer_share) if only is None else (layer.name not in only):
                continue
            offered = tuple(
                m
                for m in allowed
                if m != "keep"
                and (latency is None or get_method(m).latency_friendly_on(latency.runtime))
                and get_method(m).supports(layer)
                and get_method(m).offered_for(layer)
                and self.candidates(layer.name, m)
            )
            if offered:
                self.choices[layer.name] = offered

    # ------------------------------------------------------------------ pruning
    def pruned(self, channels: Mapping[str, int]) -> SearchSpace:
        """The space over the model whose groups keep ``channels`` (self when nothing is
        pruned): the same layers and methods, the pruned shapes and costs."""
        key = channels_key(channels, self.root.channel_choices)
        root = self.root
        if not key:
            return root
        if key in root._views:
            root._views.move_to_end(key)
            return root._views[key]
        assert root.pruner is not None  # channel_choices is empty without one
        pruned_prof, entries, latency = pruned_profile(root.pruner, key, root.latency)
        view = SearchSpace(
            pruned_prof,
            root.methods,
            n_outputs=root.n_outputs,
            rank_multiple=root.rank_multiple,
            latency=latency,
            only=tuple(root.choices),
        )
        view.root, view.pruning = root, entries
        root._views[key] = view
        while len(root._views) > MAX_VIEWS:
            root._views.popitem(last=False)
        return view

    def most_pruned(self) -> SearchSpace:
        """The view with every group at its fewest offered channels (self without pruning)."""
        return self.pruned({g: counts[-1] for g, counts in self.root.channel_choices.items()})

    # ------------------------------------------------------------------ helpers
    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the searchable layers, in model order."""
        return tuple(self.choices)

    def layer(self, name: str) -> LayerInfo:
        """The profiled layer called ``name``."""
        return self._layers[name]

    def min_rank(self, layer: LayerInfo) -> int:
        """Smallest rank allowed on ``layer``: the class count for the classifier, else 1."""
        if self.n_outputs is not None and layer.out_channels == self.n_outputs:
            last = self.profile.eligible_layers[-1].name if self.profile.eligible_layers else ""
            if layer.kind == "linear" or layer.name == last:
                return self.n_outputs
        return 1

    def candidates(self, layer: str, method: str) -> tuple[Candidate, ...]:
        """The useful points of ``method`` on ``layer`` (cheaper than dense), by MACs.

        Scores are 0 here; :meth:`realise` fills them from the sensitivity profile.
        """
        key = (layer, method)
        if key not in self._candidates:
            info = self._layers[layer]
            m = get_method(method)
            options = m.default_options(info)
            full = m.rank_space(info, options)
            seen: set[tuple[tuple[str, int], ...]] = set()
            out = []
            for ranks in m.useful_ranks(info, options, min_rank=self.min_rank(info)):
                ranks = round_ranks(ranks, self.rank_multiple, full)
                frozen = tuple(sorted(ranks.items()))
                macs = m.macs(info, ranks, options)
                n_params = m.n_params(info, ranks, options)
                if frozen in seen or macs >= info.macs or n_params >= info.n_params:
                    continue
                seen.add(frozen)
                latency_ms = self._latency_ms(layer, method, ranks, options)
                fraction = max((r / full[k] for k, r in ranks.items()), default=1.0)
                out.append(
                    Candidate(method, ranks, options, macs, n_params, 0.0, latency_ms, fraction)
                )
            self._candidates[key] = tuple(sorted(out, key=lambda c: (c.macs, c.n_params)))
        return self._candidates[key]

    def _latency_ms(
        self, layer: str, method: str, ranks: Mapping[str, int], options: Mapping[str, Any]
    ) -> dict[int, float]:
        """Predicted latency of the layer built so, per measured batch size (empty without a
        latency table)."""
        table = self.latency
        if table is None:
            return {}
        if method == "keep":
            return {b: table.dense_layer_ms(layer, b) for b in table.batch_sizes}
        return {
            b: table.predict_layer_ms(layer, method, ranks, options, b) for b in table.batch_sizes
        }

    def predicted_latency_ms(self, layers: Sequence[LayerPlan]) -> dict[int, float]:
        """Predicted whole-model latency per batch size of a plan (empty without a table)."""
        table = self.latency
        if table is None:
            return {}
        return {b: table.predict_model_ms(layers, b) for b in table.batch_sizes}

    def layer_plan(self, layer: str, c: Candidate) -> LayerPlan:
        """The :class:`LayerPlan` of candidate ``c`` on ``layer`` (with its full ranks, so that
        readers of the plan need not know the method's rank rule)."""
        info = self._layers[layer]
        return LayerPlan(
            layer=layer,
            method=c.method,
            ranks=dict(c.ranks),
            options=dict(c.options),
            weight_shape=info.weight_shape,
            full_ranks=get_method(c.method).rank_space(info, c.options) if c.ranks else {},
        )

    def keep(self, layer: str) -> Candidate:
        """The ``keep`` candidate of ``layer`` (dense cost, score 0)."""
        info = self._layers[layer]
        latency_ms = self._latency_ms(layer, "keep", {}, {})
        return Candidate("keep", {}, {}, info.macs, info.n_params, 0.0, latency_ms)

    # ------------------------------------------------------------------ realising
    def scored(
        self, layer: str, methods: Sequence[str], sensitivity: SensitivityProfile
    ) -> list[Candidate]:
        """``keep`` plus the candidates of ``methods`` on ``layer``, scored by ``sensitivity``."""
        out = [self.keep(layer)]
        for method in methods:
            if method not in sensitivity.points.get(layer, {}):
                continue  # not in the profile (a study resumed with other methods is re-profiled)
            # a pruned layer's point is scored where the dense layer has its share of MACs
            scale = self.root.layer(layer).macs / max(1, self.layer(layer).macs)
            for c in self.candidates(layer, method):
                score = sensitivity.score(layer, method, round(c.macs * scale))
                out.append(replace(c, score=score))
        return out

    def allocate_methods(
        self,
        methods: Mapping[str, Sequence[str]],
        weights: Mapping[str, float],
        budget: Budget,
        sensitivity: SensitivityProfile,
        allocation: str = "sensitivity",
    ) -> Realised | None:
        """Allocate ranks over per-layer method sets within ``budget`` (``allocation``:
        ``"sensitivity"`` or ``"uniform"``); None if none fits."""
        names = list(self.choices)
        limits = budget.limits()
        keeps = [self.keep(n) for n in names]
        dense = self.dense_costs()
        fixed = {k: dense[k] - sum(resource(c, k) for c in keeps) for k in limits}
        how = allocate_uniform if allocation == "uniform" else allocate
        if not names:  # nothing to decompose (a pruned model may still meet the budget)
            if any(fixed[k] > limit for k, limit in limits.items()):
                return None
            return Realised((), *self.cost_of(()), self.pruning, self.predicted_latency_ms(()))
        chosen = how(
            [self.scored(n, methods[n], sensitivity) for n in names],
            [float(weights.get(n, 1.0)) for n in names],
            limits,
            fixed,
        )
        if chosen is None:
            return None
        layers = tuple(self.layer_plan(n, c) for n, c in zip(names, chosen, strict=True))
        macs, n_params = self.cost_of(layers)
        latency_ms = self.predicted_latency_ms(layers)
        return Realised(layers, macs, n_params, self.pruning, latency_ms)

    def dense_costs(self) -> dict[str, float]:
        """The dense model's cost per resource (``macs``, ``n_params``,
        ``latency_ms@<batch>`` when a latency table is at hand)."""
        out = {"macs": float(self.profile.macs), "n_params": float(self.profile.n_params)}
        if self.latency is not None:
            for b, ms in self.latency.model_ms.items():
                out[f"latency_ms@{b}"] = float(ms)
        return out

    def target_budget(self, proposal: Proposal, budget: Budget) -> Budget:
        """The budget a proposal is allocated to: its ``target`` fraction, else ``budget``."""
        if proposal.target is None:
            return budget
        return budget.scaled(proposal.target, self.dense_costs())

    def realise(
        self, proposal: Proposal, budget: Budget, sensitivity: SensitivityProfile
    ) -> Realised | None:
        """The plan of ``proposal``: each layer ``keep`` or its method at the allocated rank.

        When the sampled methods cannot meet the budget at all, every layer may use any of
        its offered methods. None only when the budget is below the cheapest reachable
        cost (:func:`~rankopt.searching.space._reach.min_cost`).
        """
        target = self.target_budget(proposal, budget)
        space = self.pruned(proposal.channels)
        methods = {
            n: [m for m in (proposal.methods.get(n),) if m in offered]
            for n, offered in space.choices.items()
        }
        realised = space.allocate_methods(
            methods, proposal.weights, target, sensitivity, proposal.allocation
        )
        if realised is None:
            # The sampled methods cannot reach the budget (their cheapest points are too
            # costly): let every layer use any offered method, keeping the weights. Still a
            # function of the parameters.
            realised = space.allocate_methods(space.choices, proposal.weights, target, sensitivity)
        return realised

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

    def plan(
        self,
        layers: Sequence[LayerPlan],
        *,
        model_name: str,
        metrics: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        pruning: Sequence[ChannelPruning] = (),
    ) -> CompressionPlan:
        """A :class:`CompressionPlan` for the dense model holding ``layers`` (model order)
        after ``pruning``."""
        return CompressionPlan(
            model_name=model_name,
            fingerprint=self.root.profile.fingerprint,
            input_shape=tuple(self.root.profile.input_shape),
            layers=tuple(layers),
            metrics=dict(metrics or {}),
            provenance=dict(provenance or {}),
            pruning=tuple(pruning),
        )
