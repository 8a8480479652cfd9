"""Per-layer sensitivity profile: how much the output degrades when one layer is decomposed.

For every searchable layer and every method offered there, a few points of the method's
useful rank path (spaced geometrically in MACs, the cheapest and the costliest included) are
applied to the dense model one layer at a time, BatchNorm is re-calibrated, and the score is
the mean KL divergence (nats per image) from the dense model's output distribution to the
decomposed one on a fixed sample of training images. No fine-tune: the profile is a one-off
cost per study (stored in the study, reused on resume and by other workers), and the
allocation (:mod:`rankopt.search._allocation`) interpolates it between the measured points.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from rankopt._geometric import geometric_picks
from rankopt._memory import release_free_memory
from rankopt.errors import DecompositionError
from rankopt.evaluators import calibrate_bn, compute_logits
from rankopt.plan import apply_plan

if TYPE_CHECKING:
    from rankopt.search._objective import TrialData
    from rankopt.search._space import SearchSpace

__all__ = ["SCHEMA_VERSION", "SensitivityProfile", "measure_sensitivity", "study_sensitivity"]

SCHEMA_VERSION = 1
FAILED_SCORE = 1e3
"""Score of a point whose decomposition failed or whose output is not finite (nats)."""
MEASURED_SHARE = 0.6
"""Measured points lie at or below this fraction of the dense layer's MACs."""
Points = tuple[tuple[int, float], ...]


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
            score :data:`FAILED_SCORE`).
    """

    points: Mapping[str, Mapping[str, Points]]
    dense_macs: Mapping[str, int]
    n_images: int = 0
    wall_time_s: float = 0.0
    failed: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

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
        )

    def covers(self, choices: Mapping[str, Any]) -> bool:
        """Whether every (layer, method) of ``choices`` has measured points."""
        return all(
            layer in self.points and all(m in self.points[layer] for m in methods)
            for layer, methods in choices.items()
        )


def kl_score(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(teacher || student) of the softmax outputs, nats per image."""
    return float(
        F.kl_div(
            F.log_softmax(student_logits.double(), dim=1),
            F.log_softmax(teacher_logits.double(), dim=1),
            log_target=True,
            reduction="batchmean",
        )
    )


def measure_sensitivity(
    model: nn.Module,
    space: SearchSpace,
    images: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    n_points: int = 4,
    progress: Callable[[str], None] | None = None,
) -> SensitivityProfile:
    """Measure the sensitivity profile of ``space``'s layers and methods.

    Args:
        model: The dense model (left untouched).
        space: The :class:`~rankopt.search._space.SearchSpace`.
        images: Training images used for BatchNorm calibration and scoring.
        teacher_logits: The dense model's logits on ``images``.
        n_points: Measured points per (layer, method).
        progress: Called with a line now and then.

    Returns:
        The profile. A point whose decomposition fails (CP-ALS divergence) gets the score of
        the cheapest point of its method, or is left out when that fails too.
    """
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    points: dict[str, dict[str, Points]] = {}
    failed: dict[str, dict[str, str]] = {}
    jobs = [(layer, m) for layer, methods in space.choices.items() for m in methods]
    last_note = started
    for done, (layer, method) in enumerate(jobs):
        # Points up to MEASURED_SHARE of the dense layer's MACs: above it the score is
        # interpolated toward 0 at dense (and CP-ALS at near-full ranks costs the most).
        dense_macs = space.layer(layer).macs
        cands = [
            c for c in space.candidates(layer, method) if c.macs <= MEASURED_SHARE * dense_macs
        ]
        cands = cands or list(space.candidates(layer, method))[:1]
        chosen = geometric_picks([c.macs for c in cands], n_points)
        measured: list[tuple[int, float]] = []
        for i in chosen:
            c = cands[i]
            plan = space.plan([space.layer_plan(layer, c)], model_name="sensitivity")
            try:
                student = apply_plan(model, plan)
            except DecompositionError as exc:
                # Scored as catastrophic (the allocation avoids it unless the budget forces
                # it; a trial that uses it then fails with this reason).
                failed.setdefault(layer, {})[method] = str(exc)
                measured.append((c.macs, FAILED_SCORE))
                continue
            calibrate_bn(student, images)
            score = kl_score(compute_logits(student, images), teacher_logits)
            measured.append((c.macs, score if math.isfinite(score) else FAILED_SCORE))
            del student
            release_free_memory()  # each point's activations, not the whole profile's
        if measured:
            # Monotone: a costlier point of the same path never scores worse.
            monotone: list[tuple[int, float]] = []
            floor = 0.0
            for macs, score in sorted(measured, reverse=True):
                floor = max(floor, score)
                monotone.append((macs, floor))
            points.setdefault(layer, {})[method] = tuple(sorted(monotone))
        now = time.perf_counter()
        if method in failed.get(layer, {}):
            say(f"sensitivity profile: {method} on {layer} failed: {failed[layer][method]}")
        if now - last_note > 10 or done + 1 == len(jobs):
            say(
                f"sensitivity profile: {done + 1}/{len(jobs)} (layer, method) pairs "
                f"measured ({now - started:.0f} s)"
            )
            last_note = now
    dense = {layer: space.layer(layer).macs for layer in space.choices}
    return SensitivityProfile(
        points=points,
        dense_macs=dense,
        n_images=int(images.shape[0]),
        wall_time_s=time.perf_counter() - started,
        failed=failed,
    )


def study_sensitivity(
    study: optuna.Study,
    model: nn.Module,
    space: SearchSpace,
    data: TrialData,
    say: Callable[[str], None],
) -> SensitivityProfile:
    """The study's sensitivity profile: read from the study, else measured and stored.

    Measuring is deterministic, so workers that start together and each measure it store
    the same numbers.
    """
    stored = study.user_attrs.get("sensitivity")
    if isinstance(stored, dict):
        loaded = SensitivityProfile.from_dict(stored)
        if loaded is not None and loaded.covers(space.choices):
            return loaded
    n = data.calibration_images.shape[0]
    say(
        f"measuring the sensitivity profile of {len(space.choices)} layers on {n} training "
        "images (once per study)"
    )
    measured = measure_sensitivity(
        model, space, data.calibration_images, data.teacher_logits[:n], progress=say
    )
    study.set_user_attr("sensitivity", measured.to_dict())
    return measured
