"""What the studies know about a decomposition method: only what its class says.

Labels, abbreviations, colours and full ranks come from the method registry
(:func:`rankopt.spaces.get_method`) or from the plan itself (``full_ranks``, recorded when
the plan is made), never from a copy of a method's rules here. A method that is not
registered in this process (a study written with a user's own method) is shown by its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rankopt.errors import RankoptError

if TYPE_CHECKING:
    from rankopt.spaces import DecompositionMethod

__all__ = ["abbreviation", "color", "full_ranks", "label", "rank_fraction"]

#: Colours for methods whose class sets none (plotly's qualitative "Dark2").
_FALLBACK_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")


def _method(name: str) -> DecompositionMethod | None:
    from rankopt.spaces import get_method

    try:
        return get_method(name)
    except RankoptError:
        return None


def label(name: str) -> str:
    """The method's label (legends, reports), e.g. ``"Tucker-2"``; its name when unknown."""
    method = _method(name)
    return method.label if method is not None and method.label else name


def abbreviation(name: str) -> str:
    """The method's short name (``"T2"``) for per-layer summaries; its name when unknown."""
    method = _method(name)
    return method.abbreviation if method is not None and method.abbreviation else name


def color(name: str, index: int = 0) -> str:
    """The method's colour; a fallback colour (by ``index``) when its class sets none."""
    method = _method(name)
    if method is not None and method.color:
        return method.color
    return _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)]


def full_ranks(entry: Mapping[str, Any]) -> dict[str, int]:
    """Full rank per rank name of one plan layer (a ``LayerPlan.to_dict()``).

    The plan's ``full_ranks`` when it records them; otherwise the registered method's
    ``rank_space`` for the layer's weight shape and options; empty when neither is known.
    """
    recorded = entry.get("full_ranks")
    if isinstance(recorded, Mapping) and recorded:
        return {str(k): int(v) for k, v in recorded.items()}
    method = _method(str(entry.get("method", "")))
    shape = [int(v) for v in entry.get("weight_shape") or []]
    if method is None or len(shape) not in (2, 4):
        return {}
    from rankopt.spaces import LayerInfo

    if len(shape) == 4:
        layer = LayerInfo(
            name=str(entry.get("layer", "")),
            kind="conv2d",
            out_channels=shape[0],
            in_channels=shape[1],
            kernel_size=(shape[2], shape[3]),
        )
    else:
        layer = LayerInfo(
            name=str(entry.get("layer", "")),
            kind="linear",
            out_channels=shape[0],
            in_channels=shape[1],
        )
    try:
        options = method.resolve_options(layer, entry.get("options") or {})
        return dict(method.rank_space(layer, options))
    except (RankoptError, ValueError, KeyError, ZeroDivisionError):
        return {}


def rank_fraction(entry: Mapping[str, Any]) -> float:
    """Mean of rank / full rank over a plan layer's ranks.

    1.0 for a layer without ranks (kept dense); NaN when the full ranks are unknown.
    """
    ranks = entry.get("ranks") or {}
    if not ranks:
        return 1.0
    full = full_ranks(entry)
    fractions = [float(v) / full[k] for k, v in ranks.items() if full.get(k)]
    return sum(fractions) / len(fractions) if fractions else math.nan
