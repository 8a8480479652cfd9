"""The study's sensitivity profile as a table and as a layer x method heat map.

The profile (``study.user_attrs["sensitivity"]``, written once per study by the search)
scores each (layer, method) at a few points of its rank path, one layer decomposed at a
time: the KL divergence of the model's output from the dense model's, in nats per image.
Here it is read into a table (compute first), then drawn: one row per (layer, method), one
column per share of the layer's dense MACs, the colour the damage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go

from . import _methods

__all__ = ["PROFILE_SHARES", "plot_sensitivity", "sensitivity_table"]

#: Shares of a layer's dense MACs the heat map's columns show (the profile measures up to
#: 60 %, geometric in MACs).
PROFILE_SHARES: tuple[float, ...] = (0.6, 0.4, 0.25, 0.15, 0.1, 0.05, 0.025)

#: Scores at or above this (nats per image) mark a decomposition that failed.
_FAILED_SCORE = 1e3


def sensitivity_table(study: optuna.Study) -> pd.DataFrame:
    """The measured points of the study's sensitivity profile, one row each.

    Args:
        study: A loaded study (with or without a profile).

    Returns:
        DataFrame with columns ``layer``, ``method``, ``macs`` (MACs of the decomposed
        layer per image), ``macs_share`` (of the layer's dense MACs) and ``score`` (KL
        divergence from the dense model's output, nats per image), in the profile's layer
        order; empty when the study has no profile.
    """
    profile = study.user_attrs.get("sensitivity")
    rows = []
    if isinstance(profile, dict):
        dense = profile.get("dense_macs") or {}
        for layer, methods in (profile.get("points") or {}).items():
            layer_macs = float(dense.get(layer) or math.nan)
            for method, points in (methods or {}).items():
                for macs, score in points:
                    rows.append(
                        {
                            "layer": str(layer),
                            "method": str(method),
                            "macs": float(macs),
                            "macs_share": float(macs) / layer_macs,
                            "score": float(score),
                        }
                    )
    return pd.DataFrame(rows, columns=["layer", "method", "macs", "macs_share", "score"])


def _at_shares(points: pd.DataFrame, shares: Sequence[float]) -> list[float]:
    """Scores at ``shares`` of the layer's MACs: linear in log MACs between the measured
    points and the dense layer (score 0 at share 1); NaN below the cheapest point."""
    pts = points.sort_values("macs_share")
    xs = np.log([*pts["macs_share"], 1.0])
    ys = np.array([*pts["score"], 0.0])
    return [float(np.interp(math.log(s), xs, ys, left=math.nan)) for s in shares]


def plot_sensitivity(study: optuna.Study) -> go.Figure:
    """Heat map of the sensitivity profile: rows (layer, method), columns MACs shares.

    Each cell is the damage of decomposing that one layer with that method down to that
    share of its dense MACs (the KL divergence of the output from the dense model's, nats
    per image, interpolated between the measured points as the search does; blank below the
    cheapest point measured). Colour: log10 of the score; darker is more harmful.

    Args:
        study: A loaded study.

    Returns:
        The plotly figure (one heat map; no data when the study has no profile).
    """
    table = sensitivity_table(study)
    rows: list[str] = []
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    profile = study.user_attrs.get("sensitivity")
    failed = profile.get("failed") if isinstance(profile, dict) else None
    failed = failed if isinstance(failed, dict) else {}
    for (layer, method), points in table.groupby(["layer", "method"], sort=False):
        rows.append(f"{layer} · {_methods.label(str(method))}")
        scores = _at_shares(points, PROFILE_SHARES)
        if method in (failed.get(layer) or {}):  # its points score the failure constant
            scores = [_FAILED_SCORE if math.isfinite(s) else s for s in scores]
        z.append([math.log10(max(s, 1e-4)) if math.isfinite(s) else None for s in scores])
        text.append(
            [
                "failed" if s >= _FAILED_SCORE else (f"{s:.3g}" if math.isfinite(s) else "")
                for s in scores
            ]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{s:.1%}" for s in PROFILE_SHARES],
            y=rows,
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{y}<br>at %{x} of the layer's MACs: KL %{text} nats/image"
            "<extra></extra>",
            colorscale="Reds",
            zmin=-4,
            zmax=1,
            xgap=1,
            ygap=1,
            name="sensitivity",
            colorbar={
                "title": {"text": "KL (nats)"},
                "tickvals": [-4, -3, -2, -1, 0, 1],
                "ticktext": ["1e-4", "0.001", "0.01", "0.1", "1", "10"],
            },
        )
    )
    n_images = profile.get("n_images") if isinstance(profile, dict) else None
    fig.update_layout(
        title="Sensitivity profile: damage of decomposing one layer at a time "
        f"(KL divergence from the dense output{f' on {n_images} images' if n_images else ''}; "
        "lower is safer)",
        xaxis_title="the layer's MACs after decomposition, % of its dense MACs",
        yaxis_title="layer · method",
        yaxis_autorange="reversed",
        template="plotly_white",
        height=max(320, 120 + 22 * len(rows)),
    )
    return fig
