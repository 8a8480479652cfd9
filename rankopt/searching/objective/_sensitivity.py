"""Per-layer sensitivity profile: how much the output degrades when one layer is decomposed.

For every searchable layer and every method offered there, a few points of the method's
useful rank path (spaced geometrically in MACs, the cheapest and the costliest included) are
scored one layer at a time. The score is the mean KL divergence (nats per image) from the
dense model's output distribution to the decomposed one on a fixed sample of training images,
by default *predicted* from the layer's own output error and the output's Fisher information
(:mod:`rankopt.searching.objective._fisher`: one capture pass per group of layers, then one
forward of the layer per point), or with ``score="kl"`` *measured* on the whole network with
BatchNorm re-calibrated (two network passes per point; issue 36 measured the cost of that).

Each (layer, method) is one unit of work: its method's basis is computed once and truncated
for each point. With a study, units are claimed through the storage
(:func:`rankopt.storage.claim`), so several workers on one PostgreSQL study measure different
units in parallel; a worker that dies loses only the unit it held (the claim's lease runs
out and another worker takes it). No fine-tune: the profile is a one-off cost per study
(stored in the study, reused on resume and by other workers), and the allocation
(:mod:`rankopt.searching.space._allocation`) interpolates it between the measured points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from rankopt.errors import DecompositionError, SettingsError
from rankopt.evaluators import calibrate_bn, compute_logits
from rankopt.plan import apply_plan
from rankopt.searching.objective._fisher import (
    LayerCapture,
    capture_groups,
    capture_layers,
    local_score,
)
from rankopt.searching.objective._memory import release_free_memory
from rankopt.searching.objective._units import Pair, PairResult, Progress, pairs_of
from rankopt.searching.space._profile import Points, SensitivityProfile
from rankopt.spaces import build_module, get_method
from rankopt.storage import claim, read_results, write_result

if TYPE_CHECKING:
    from rankopt.searching.objective._objective import TrialData
    from rankopt.searching.space._space import SearchSpace

__all__ = [
    "FAILED_SCORE",
    "PAIR_LEASE_S",
    "SCORES",
    "auto_score",
    "kl_score",
    "measure_sensitivity",
    "study_sensitivity",
]

FAILED_SCORE = 1e3
"""Score of a point whose decomposition failed or whose output is not finite (nats)."""
SCORES = ("auto", "fisher", "kl")
"""How points are scored: ``fisher`` predicted from the layer's output, ``kl`` measured on the
network, ``auto`` (default) ``kl`` while its network passes cost at most
:data:`KL_PROFILE_MACS` multiply-accumulates, else ``fisher``."""
KL_PROFILE_MACS = 2e12
"""Largest ``2 * points * images * model MACs`` for which ``auto`` measures the network KL
(about a minute here; the built-in resnet8 on 28x28 images needs 6.4e11, torchvision's
resnet18 on 32x32 images 6.6e12). Deterministic, so every worker of a study picks the same."""
PAIR_LEASE_S = 120.0
"""Seconds after which a (layer, method) claimed by a worker that stored no result is taken
over (one unit takes seconds: its decompositions are bounded, see ``rankopt.spaces``)."""
_RESULT_PREFIX = "profile:"
_CP_COST = 8.0
"""How much more a CP unit costs than a basis method's on the same weight (ALS per point vs
one basis truncated per point; resnet18's profile: 75 s of CP, 35 s of Tucker-2)."""


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


class _Measurer:
    """Scores the points of one (layer, method) at a time; holds one group's capture."""

    def __init__(
        self,
        model: nn.Module,
        space: SearchSpace,
        images: torch.Tensor,
        teacher_logits: torch.Tensor,
        score: str,
    ) -> None:
        if score not in SCORES:
            raise SettingsError(f"profile score {score!r} is not one of {list(SCORES)}")
        if score == "auto":
            score = auto_score(space, int(images.shape[0]))
        self.model, self.space, self.images = model, space, images
        self.teacher_logits, self.score = teacher_logits, score
        self.capture_s = 0.0
        self._captured: dict[str, LayerCapture] = {}
        self._group_of: dict[str, int] = {}
        self._current = -1
        if score == "fisher":
            groups = capture_groups(model, list(space.choices), images)
            self._groups = groups
            self._group_of = {n: i for i, g in enumerate(groups) for n in g}

    def order(self, pair: Pair) -> tuple[int, float]:
        """Claim order: one capture group after another (each is captured once per worker),
        the costliest units of a group first (CP-ALS's work grows with the rank), so that the
        last units several workers finish are short ones."""
        info = self.space.layer(pair.layer)
        numel = float(math.prod(info.weight_shape))
        cost = numel * len(pair.macs) * (_CP_COST if pair.method == "cp" else 1.0)
        return self._group_of.get(pair.layer, 0), -cost

    def _capture_for(self, layer: str) -> LayerCapture | None:
        group = self._group_of.get(layer)
        if group is None:
            return None
        if group != self._current:
            self._captured = {}  # one group in memory at a time
            release_free_memory()
            started = time.perf_counter()
            self._captured = capture_layers(self.model, self._groups[group], self.images)
            self.capture_s += time.perf_counter() - started
            self._current = group
        return self._captured.get(layer)

    def measure(self, pair: Pair) -> PairResult:
        """Score ``pair``'s points (each decomposition once; the basis shared)."""
        capture = self._capture_for(pair.layer) if self.score == "fisher" else None
        module = self.model.get_submodule(pair.layer)
        info = self.space.layer(pair.layer)
        by_macs = {c.macs: c for c in self.space.candidates(pair.layer, pair.method)}
        measured: list[tuple[int, float]] = []
        failed: str | None = None
        decompose_s = forward_s = 0.0
        for macs in pair.macs:
            c = by_macs[macs]
            started = time.perf_counter()
            try:
                built = build_module(module, info, pair.method, c.ranks, c.options)
            except DecompositionError as exc:
                # Scored as catastrophic (the allocation avoids it unless the budget forces
                # it; a trial that uses it then fails with this reason).
                failed = str(exc)
                measured.append((macs, FAILED_SCORE))
                continue
            decompose_s += time.perf_counter() - started
            started = time.perf_counter()
            if capture is not None:
                score = local_score(capture, built)
            else:
                score = self._network_kl(pair, c)
            forward_s += time.perf_counter() - started
            measured.append((macs, score if math.isfinite(score) else FAILED_SCORE))
        # Monotone: a costlier point of the same path never scores worse.
        monotone: list[tuple[int, float]] = []
        floor = 0.0
        for macs, score in sorted(measured, reverse=True):
            floor = max(floor, score)
            monotone.append((macs, floor))
        return PairResult(tuple(sorted(monotone)), failed, decompose_s, forward_s)

    def _network_kl(self, pair: Pair, c: Any) -> float:
        plan = self.space.plan([self.space.layer_plan(pair.layer, c)], model_name="sensitivity")
        student = apply_plan(self.model, plan)
        calibrate_bn(student, self.images)
        score = kl_score(compute_logits(student, self.images), self.teacher_logits)
        del student
        release_free_memory()  # each point's activations, not the whole profile's
        return score


def auto_score(space: SearchSpace, n_images: int, n_points: int = 4) -> str:
    """``"kl"`` when measuring every point on the network is cheap, else ``"fisher"``."""
    points = sum(len(p.macs) for p in pairs_of(space, n_points))
    work = 2.0 * points * n_images * space.profile.macs
    return "kl" if work <= KL_PROFILE_MACS else "fisher"


def _bound_notes(space: SearchSpace, say: Callable[[str], None]) -> None:
    """One line per (layer, method) whose ranks a method's cost bound cut."""
    for layer, methods in space.choices.items():
        for method in methods:
            note = get_method(method).bound_note(space.layer(layer))
            if note:
                say(f"sensitivity profile: {note}")


def _assemble(
    measurer: _Measurer, results: Mapping[str, PairResult], pairs: list[Pair], started: float
) -> SensitivityProfile:
    """The profile from every unit's result, with what measuring it cost (this worker's
    captures; the floor timed now)."""
    space, images = measurer.space, measurer.images
    points: dict[str, dict[str, Points]] = {}
    failed: dict[str, dict[str, str]] = {}
    decompose_s: dict[str, float] = {}
    forward_s = 0.0
    for pair in pairs:
        r = results[pair.key]
        if r.points:
            points.setdefault(pair.layer, {})[pair.method] = r.points
        if r.failed:
            failed.setdefault(pair.layer, {})[pair.method] = r.failed
        decompose_s[pair.method] = decompose_s.get(pair.method, 0.0) + r.decompose_s
        forward_s += r.forward_s
    timing = {
        "score": measurer.score,
        "decompose_s": decompose_s,
        "forward_s": forward_s + measurer.capture_s,
        "capture_s": measurer.capture_s,
        "floor_s": _floor_s(measurer.model, images),
        "n_pairs": len(pairs),
        "n_points": sum(len(results[p.key].points) for p in pairs),
    }
    return SensitivityProfile(
        points=points,
        dense_macs={layer: space.layer(layer).macs for layer in space.choices},
        n_images=int(images.shape[0]),
        wall_time_s=time.perf_counter() - started,
        failed=failed,
        timing=timing,
    )


def _floor_s(model: nn.Module, images: torch.Tensor) -> float:
    """Seconds of one no-grad forward of the dense model over ``images`` (the profile's
    unavoidable forward work: the teacher's logits)."""
    started = time.perf_counter()
    compute_logits(model, images)
    return time.perf_counter() - started


def measure_sensitivity(
    model: nn.Module,
    space: SearchSpace,
    images: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    n_points: int = 4,
    score: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> SensitivityProfile:
    """Measure the sensitivity profile of ``space``'s layers and methods in this process.

    Args:
        model: The dense model (left untouched).
        space: The :class:`~rankopt.searching.space._space.SearchSpace`.
        images: Training images used for scoring (and BatchNorm calibration with ``"kl"``).
        teacher_logits: The dense model's logits on ``images``.
        n_points: Measured points per (layer, method).
        score: ``"fisher"`` (predicted from each layer's output), ``"kl"`` (measured on
            the network, BatchNorm re-calibrated) or ``"auto"`` (:func:`auto_score`).
        progress: Called with a line now and then.

    Returns:
        The profile. A point whose decomposition fails (CP-ALS divergence) scores
        :data:`FAILED_SCORE`; the reason is in ``failed``.
    """
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    pairs = pairs_of(space, n_points)
    measurer = _Measurer(model, space, images, teacher_logits, score)
    _bound_notes(space, say)
    meter = Progress(say, sum(len(p.macs) for p in pairs))
    results: dict[str, PairResult] = {}
    done = 0
    for pair in pairs:
        results[pair.key] = measurer.measure(pair)
        done += len(pair.macs)
        _say_failed(pair, results[pair.key], say)
        meter.update(done)
    meter.update(done, final=True)
    return _assemble(measurer, results, pairs, started)


def _say_failed(pair: Pair, result: PairResult, say: Callable[[str], None]) -> None:
    if result.failed:
        say(f"sensitivity profile: {pair.method} on {pair.layer} failed: {result.failed}")


def study_sensitivity(
    study: optuna.Study,
    model: nn.Module,
    space: SearchSpace,
    data: TrialData,
    say: Callable[[str], None],
    *,
    worker: str = "",
    n_points: int = 4,
    score: str = "auto",
    poll_s: float = 0.5,
) -> SensitivityProfile:
    """The study's sensitivity profile: read from the study, else measured and stored.

    Every worker that finds no stored profile takes part: it claims (layer, method) units
    one by one through the storage, measures each it wins and stores its points as a study
    system attribute; when every unit has a result, the profile is assembled (every worker
    assembles the same numbers) and stored in ``user_attrs["sensitivity"]``. A unit whose
    worker died is taken over after :data:`PAIR_LEASE_S`.
    """
    stored = study.user_attrs.get("sensitivity")
    if isinstance(stored, dict):
        loaded = SensitivityProfile.from_dict(stored)
        if loaded is not None and loaded.covers(space.choices):
            return loaded
    started = time.perf_counter()
    images = data.calibration_images
    n = images.shape[0]
    say(
        f"measuring the sensitivity profile of {len(space.choices)} layers on {n} training "
        "images (once per study)"
    )
    pairs = pairs_of(space, n_points)
    measurer = _Measurer(model, space, images, data.teacher_logits[:n], score)
    _bound_notes(space, say)
    n_total = sum(len(p.macs) for p in pairs)
    meter = Progress(say, n_total)
    while True:
        results = {
            k: PairResult.from_json(v) for k, v in read_results(study, _RESULT_PREFIX).items()
        }
        todo = [p for p in pairs if p.key not in results]
        meter.update(sum(len(p.macs) for p in pairs if p.key in results))
        if not todo:
            break
        measured_one = False
        for pair in sorted(todo, key=measurer.order):
            if not claim(study, _RESULT_PREFIX + pair.key, worker, lease_s=PAIR_LEASE_S):
                continue
            result = measurer.measure(pair)
            write_result(study, _RESULT_PREFIX + pair.key, result.to_json())
            _say_failed(pair, result, say)
            measured_one = True
            break  # re-read: other workers may have finished units meanwhile
        if not measured_one:
            time.sleep(poll_s)  # the rest is held by other workers
    meter.update(n_total, final=True)
    profile = _assemble(measurer, results, pairs, started)
    study.set_user_attr("sensitivity", profile.to_dict())
    return profile
