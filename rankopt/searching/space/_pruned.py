"""Channel pruning in the search space: the channel counts offered and the pruned profiles.

A trial that prunes samples, per channel group, how many channels stay; its ranks are then
allocated on the *pruned* model (a view of the space over that model's profile: its layers'
shapes, fvcore's count of its MACs, the latency table scaled to its layers). A pruned layer's
decomposition is scored by the dense layer's sensitivity at the same share of the layer's
MACs. The pruned model's own time is measured once per configuration (a pruned conv is not
faster in proportion to its MACs). Pruning keeps a layer's op count and shrinks both its
neighbours, so it is the cheap way to run faster; decomposition keeps more accuracy per MAC.
The sampler learns the mix.
"""

from __future__ import annotations

from collections.abc import Mapping

from rankopt.errors import RankoptError, TrialFailedError
from rankopt.evaluators import ModelProfile, profile
from rankopt.latency import LatencyTable, pruned_table
from rankopt.pruning import ChannelPruner, ChannelPruning

__all__ = ["MAX_VIEWS", "channels_key", "offered_counts", "pruned_profile"]

MAX_VIEWS = 64
"""Pruned views a space keeps (least recently used dropped first)."""


def offered_counts(pruner: ChannelPruner, multiple: int) -> dict[str, tuple[int, ...]]:
    """Group -> channel counts a trial may keep (dense first), for groups with a choice."""
    out = {}
    for name, group in pruner.groups.items():
        counts = group.counts(multiple)
        if len(counts) > 1:
            out[name] = counts
    return out


def channels_key(
    channels: Mapping[str, int], offered: Mapping[str, tuple[int, ...]]
) -> tuple[tuple[str, int], ...]:
    """The pruned groups of ``channels`` (those below their dense count), sorted."""
    return tuple(
        sorted((g, int(n)) for g, n in channels.items() if g in offered and n != offered[g][0])
    )


def pruned_profile(
    pruner: ChannelPruner, key: tuple[tuple[str, int], ...], latency: LatencyTable | None
) -> tuple[ModelProfile, tuple[ChannelPruning, ...], LatencyTable | None]:
    """The profile of the model pruned to ``key`` (one fvcore trace), its plan entries, and
    its latency table (the pruned model timed once: :func:`rankopt.latency.pruned_table`)."""
    channels = dict(key)
    model = pruner.prune(channels)
    try:
        pruned = profile(model, pruner.input_shape)
    except RankoptError as exc:  # a model torch-pruning broke: this trial fails, not the study
        raise TrialFailedError(f"channel pruning {dict(key)} failed: {exc}") from exc
    table = None
    if latency is not None:
        layers = {i.name: i for i in pruned.eligible_layers}
        table = pruned_table(latency, pruner.model, model, layers, pruner.input_shape)
    return pruned, pruner.entries(channels), table
