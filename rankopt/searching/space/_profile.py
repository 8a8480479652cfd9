"""The sensitivity profile as data: per layer and method, scores at a few MACs.

Measured by :mod:`rankopt.searching.objective._sensitivity` (one layer decomposed at a time);
the allocation (:mod:`rankopt.searching.space._allocation`) interpolates it between the
measured points, and the study stores it as JSON.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "Points", "SensitivityProfile"]

SCHEMA_VERSION = 1
"""Version of the profile's JSON (``SensitivityProfile.to_dict``)."""
Points = tuple[tuple[int, float], ...]
"""``((macs, score), ...)`` of one (layer, method), sorted by MACs."""


@dataclass(frozen=True)
class SensitivityProfile:
    """Measured sensitivity per layer and method.

    Attributes:
        points: ``layer -> method -> ((macs, score), ...)`` sorted by MACs; scores are mean
            KL divergences in nats per image, made non-increasing in MACs.
        dense_macs: ``layer -> dense MACs`` (the score there is 0).
        n_images: Images the scores were measured on.
        wall_time_s: Time the measurement took.
        failed: ``layer -> method -> reason`` where a decomposition failed (those points
            score :data:`rankopt.searching.objective._sensitivity.FAILED_SCORE`).
        timing: What the measurement cost: ``decompose_s`` (method -> seconds),
            ``forward_s`` (captures and scoring passes), ``capture_s``, ``floor_s`` (one
            dense forward over the images), ``n_pairs``, ``n_points``; empty for profiles
            stored before issue 36.
    """

    points: Mapping[str, Mapping[str, Points]]
    dense_macs: Mapping[str, int]
    n_images: int = 0
    wall_time_s: float = 0.0
    failed: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    timing: Mapping[str, Any] = field(default_factory=dict)

    def score(self, layer: str, method: str, macs: int) -> float:
        """Interpolated score of ``method`` on ``layer`` at ``macs`` (linear in log MACs).

        Between the costliest measured point and the dense layer the score falls linearly
        (in log MACs) to 0; below the cheapest measured point it is that point's score.
        """
        if method == "keep":
            return 0.0
        pts = list(self.points[layer][method])
        dense = self.dense_macs[layer]
        if macs >= dense:
            return 0.0
        pts.append((dense, 0.0))
        if macs <= pts[0][0]:
            return pts[0][1]
        for (m0, s0), (m1, s1) in itertools.pairwise(pts):
            if m0 <= macs <= m1:
                if m1 == m0:
                    return min(s0, s1)
                t = (math.log(macs) - math.log(m0)) / (math.log(m1) - math.log(m0))
                return s0 + t * (s1 - s0)
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the study's ``user_attrs["sensitivity"]``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "points": {
                layer: {m: [list(p) for p in pts] for m, pts in methods.items()}
                for layer, methods in self.points.items()
            },
            "dense_macs": dict(self.dense_macs),
            "n_images": self.n_images,
            "wall_time_s": self.wall_time_s,
            "failed": {layer: dict(m) for layer, m in self.failed.items()},
            "timing": dict(self.timing),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityProfile | None:
        """Read :meth:`to_dict`'s form; None when it is from another schema version."""
        if data.get("schema_version") != SCHEMA_VERSION:
            return None
        return cls(
            points={
                layer: {m: tuple((int(a), float(b)) for a, b in pts) for m, pts in methods.items()}
                for layer, methods in data["points"].items()
            },
            dense_macs={k: int(v) for k, v in data["dense_macs"].items()},
            n_images=int(data.get("n_images", 0)),
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            failed={k: dict(v) for k, v in data.get("failed", {}).items()},
            timing=dict(data.get("timing", {})),
        )

    def covers(self, choices: Mapping[str, Any]) -> bool:
        """Whether every (layer, method) of ``choices`` has measured points."""
        return all(
            layer in self.points and all(m in self.points[layer] for m in methods)
            for layer, methods in choices.items()
        )
