"""Names of trial user attributes that both the search (writer) and the studies (reader) use."""

from __future__ import annotations

__all__ = ["DUPLICATE_ATTR", "PLAN_KEY_ATTR"]

DUPLICATE_ATTR = "duplicate_of"
"""User attribute of a trial that realised an already evaluated plan and took that trial's
results instead of evaluating it again: that trial's number."""

PLAN_KEY_ATTR = "plan_key"
"""User attribute: a digest of the trial's realised layers (method, ranks, options)."""
