"""Structured channel pruning: coupled channel groups (torch-pruning) and pruned copies.

A search with ``prune=True`` chooses per group how many channels stay
(:meth:`ChannelGroup.counts`); a plan stores the kept indices (:class:`ChannelPruning`) and
:func:`rankopt.apply_plan` prunes before it decomposes.
"""

from rankopt.pruning._groups import (
    KEEP_FRACTIONS,
    ChannelGroup,
    ChannelPruner,
    ChannelPruning,
    prune_model,
)

__all__ = ["KEEP_FRACTIONS", "ChannelGroup", "ChannelPruner", "ChannelPruning", "prune_model"]
