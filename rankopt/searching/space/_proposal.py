"""What a trial samples (:class:`Proposal`) and what it realises (:class:`Realised`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rankopt.plan import ChannelPruning, LayerPlan

__all__ = ["ALLOCATIONS", "WEIGHT_RANGE", "Proposal", "Realised"]

WEIGHT_RANGE = (0.25, 4.0)
ALLOCATIONS = ("sensitivity", "uniform")
"""How a trial's ranks are set (the ``allocation`` parameter)."""


@dataclass(frozen=True)
class Proposal:
    """The sampled parameters of one trial.

    Attributes:
        methods: Layer -> method to allocate ranks for (the allocation may still keep it).
        weights: Layer -> factor on its sensitivity (> 0).
        target: Fraction of dense to allocate (None: the budget).
        allocation: ``"sensitivity"`` (least weighted sensitivity within the budget) or
            ``"uniform"`` (one rank fraction times each layer's weight, the largest that
            fits).
        channels: Channel group -> channels kept (groups not named keep all).
    """

    methods: Mapping[str, str]
    weights: Mapping[str, float] = field(default_factory=dict)
    target: float | None = None
    allocation: str = "sensitivity"
    channels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Realised:
    """A proposal's realised plan.

    Attributes:
        layers: The per-layer plans (model order, integer ranks; the pruned layers' shapes).
        macs: Analytic multiply-accumulates per image of the model.
        n_params: Analytic parameter count of the model.
        pruning: Channel groups pruned before the decompositions.
        latency_ms: Batch size -> predicted latency of the model (empty without a table).
    """

    layers: tuple[LayerPlan, ...]
    macs: int
    n_params: int
    pruning: tuple[ChannelPruning, ...] = ()
    latency_ms: Mapping[int, float] = field(default_factory=dict)
