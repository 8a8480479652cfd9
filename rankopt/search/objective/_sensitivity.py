"""Per-layer sensitivity profile: how much the output degrades when one layer is decomposed.

For every searchable layer and every method offered there, a few points of the method's
useful rank path (spaced geometrically in MACs, the cheapest and the costliest included) are
applied to the dense model one layer at a time, BatchNorm is re-calibrated, and the score is
the mean KL divergence (nats per image) from the dense model's output distribution to the
decomposed one on a fixed sample of training images. No fine-tune: the profile is a one-off
cost per study (stored in the study, reused on resume and by other workers), and the
allocation (:mod:`rankopt.search.space._allocation`) interpolates it between the measured points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from rankopt.errors import DecompositionError
from rankopt.evaluators import calibrate_bn, compute_logits
from rankopt.plan import apply_plan
from rankopt.search.objective._memory import release_free_memory
from rankopt.search.space._profile import Points, SensitivityProfile
from rankopt.spaces._rounding import geometric_picks

if TYPE_CHECKING:
    from rankopt.search.objective._objective import TrialData
    from rankopt.search.space._space import SearchSpace

__all__ = ["FAILED_SCORE", "kl_score", "measure_sensitivity", "study_sensitivity"]

FAILED_SCORE = 1e3
"""Score of a point whose decomposition failed or whose output is not finite (nats)."""
MEASURED_SHARE = 0.6
"""Measured points lie at or below this fraction of the dense layer's MACs."""


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
        space: The :class:`~rankopt.search.space._space.SearchSpace`.
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
