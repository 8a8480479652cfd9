"""The sensitivity profile's units of work: (layer, method) pairs, their stored results, and
the progress line with the time left (used by :mod:`._sensitivity`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rankopt.searching.space._profile import Points
from rankopt.spaces import geometric_picks

if TYPE_CHECKING:
    from rankopt.searching.space._space import SearchSpace

__all__ = ["MEASURED_SHARE", "Pair", "PairResult", "Progress", "pairs_of"]

MEASURED_SHARE = 0.6
"""Measured points lie at or below this fraction of the dense layer's MACs."""
PROGRESS_EVERY_S = 10.0
"""Seconds between two progress lines."""


@dataclass(frozen=True)
class Pair:
    layer: str
    method: str
    macs: tuple[int, ...]  # of the points to measure
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.layer}|{self.method}")


@dataclass(frozen=True)
class PairResult:
    """One (layer, method)'s measured points and what they cost (JSON in the storage)."""

    points: Points
    failed: str | None
    decompose_s: float
    forward_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points],
            "failed": self.failed,
            "decompose_s": self.decompose_s,
            "forward_s": self.forward_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairResult:
        return cls(
            points=tuple((int(m), float(s)) for m, s in data["points"]),
            failed=data.get("failed"),
            decompose_s=float(data.get("decompose_s", 0.0)),
            forward_s=float(data.get("forward_s", 0.0)),
        )


def pairs_of(space: SearchSpace, n_points: int) -> list[Pair]:
    """The units of the profile, in layer order, with the MACs of their points."""
    out = []
    for layer, methods in space.choices.items():
        dense_macs = space.layer(layer).macs
        for method in methods:
            # Points up to MEASURED_SHARE of the dense layer's MACs: above it the score is
            # interpolated toward 0 at dense.
            cands = [c for c in space.candidates(layer, method)]
            low = [c for c in cands if c.macs <= MEASURED_SHARE * dense_macs] or cands[:1]
            chosen = geometric_picks([c.macs for c in low], n_points)
            out.append(Pair(layer, method, tuple(low[i].macs for i in chosen)))
    return out


class Progress:
    """``sensitivity profile: 37/412 points, 2 min 10 s left`` every few seconds."""

    def __init__(self, say: Callable[[str], None], n_points: int) -> None:
        self.say, self.n_points = say, n_points
        self.started = self.last = time.perf_counter()
        self.done_at_start: int | None = None

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if self.done_at_start is None:
            self.done_at_start = done
        if not final and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        elapsed = now - self.started
        if final:
            self.say(f"sensitivity profile: {done}/{self.n_points} points ({elapsed:.0f} s)")
            return
        rate = (done - self.done_at_start) / elapsed if elapsed > 0 else 0.0
        left = (self.n_points - done) / rate if rate > 0 else float("nan")
        self.say(f"sensitivity profile: {done}/{self.n_points} points, {_duration(left)} left")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "? s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
