"""Compression plans: which channels stay and which method and ranks each layer gets.

A :class:`CompressionPlan` records, for one model (identified by a fingerprint of its
parameter names and shapes), the channel groups pruned (:class:`ChannelPruning`) and one
per-layer choice (:class:`LayerPlan`); :func:`apply_plan` builds the compressed model from
it. Plans are validated on load; every error names the field, the value and the rule.
"""

from rankopt.plan._apply import apply_plan
from rankopt.plan._plan import (
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    ChannelPruning,
    CompressionPlan,
    LayerPlan,
    model_fingerprint,
)

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "ChannelPruning",
    "CompressionPlan",
    "LayerPlan",
    "apply_plan",
    "model_fingerprint",
]
