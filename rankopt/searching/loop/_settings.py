"""The options of one search, validated in one place (:class:`SearchSettings`).

The fields' defaults are the defaults of :func:`rankopt.search` and of ``rankopt search``
(:func:`setting_defaults`). This module is light (no torch, no optuna at import): the command
line builds ``rankopt --help`` from it; the checks import what they need when they run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from rankopt._defaults import DEFAULT_LATENCY_RUNTIME
from rankopt.errors import RankoptError, SettingsError, UnknownNameError
from rankopt.latency import DEFAULT_LATENCY_THREADS, RUNTIMES, get_runtime
from rankopt.searching.loop import DEFAULT_N_TRIALS
from rankopt.searching.space import DEFAULT_MIN_LAYER_SHARE

if TYPE_CHECKING:
    import optuna

    from rankopt.searching.objective._objective import FinetuneSettings

__all__ = ["DEFAULT_LATENCY_RUNTIME", "SearchSettings", "setting_defaults"]

REPAIR_MODES = ("repair", "constraint")

PLAN_ERROR_LIMIT = 0.15
"""Default ``latency_tolerance``: a search refuses a latency table whose whole-plan
predictions erred by more than this (a fraction of the measured time) before any trial;
``benchmarks/bench_latency_search.py`` holds the table to 15 % on searched plans."""


@dataclass(frozen=True)
class SearchSettings:
    """Every plain option of :func:`rankopt.search` (no model, data or storage), checked.

    Construction validates (``__post_init__``); a bad value raises :class:`SettingsError`
    (out of range), :class:`UnknownNameError` (objective, sampler) or :class:`RankoptError`
    with a message naming the value, the rule and what is allowed. The meaning of each field
    is documented on :func:`rankopt.search`.
    """

    objectives: tuple[str, ...] = ("accuracy", "macs")
    methods: tuple[str, ...] | None = None
    n_trials: int = DEFAULT_N_TRIALS
    timeout: float | None = None
    sampler: str | optuna.samplers.BaseSampler = "tpe"
    seed: int = 0
    repair: str = "repair"
    finetune_steps: int = 120
    finetune_samples: int = 2048
    batch_size: int = 64
    lr: float = 0.01
    distill_weight: float = 0.7
    temperature: float = 4.0
    report_every: int | None = None
    seed_with_vbmf: bool = True
    min_layer_share: float = DEFAULT_MIN_LAYER_SHARE
    rank_multiple: int | None = None
    device: Any = "auto"
    num_workers: int = 0
    measure_latency: bool = False
    latency_runtime: str | None = DEFAULT_LATENCY_RUNTIME
    allow_slower: bool = False
    prune: bool = True
    latency_threads: int = DEFAULT_LATENCY_THREADS
    latency_tolerance: float = PLAN_ERROR_LIMIT
    n_threads: int | None = None
    worker_index: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(self.objectives))
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))
        self.validate()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SearchSettings:
        """Settings from keyword arguments named like the fields.

        Raises:
            UnknownNameError: a name that is not a setting (named, with the closest setting).
        """
        names = [f.name for f in fields(cls)]
        for key in kwargs:
            if key not in names:
                raise UnknownNameError("setting", key, names)
        return cls(**kwargs)

    def validate(self) -> None:
        """Raise the first rule a value breaks (see the class docstring)."""
        from rankopt.latency import check_latency_threads
        from rankopt.searching.loop._sampler import SAMPLERS
        from rankopt.spaces import list_methods

        _check_objectives(self.objectives)
        if self.repair not in REPAIR_MODES:
            raise SettingsError(f"repair = {self.repair!r}; choose 'repair' or 'constraint'")
        if self.methods is not None and len(self.methods) == 0:
            raise SettingsError(
                "methods = []: give at least one method, or None for all of: "
                + ", ".join(list_methods())
            )
        _check_int("n_trials", self.n_trials, 1)
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise SettingsError(f"timeout = {self.timeout!r} must be a positive number of seconds")
        _check_int("finetune_steps", self.finetune_steps, 0)
        _check_int("finetune_samples", self.finetune_samples, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        if self.rank_multiple is not None:
            _check_int("rank_multiple", self.rank_multiple, 1)
        _check_int("num_workers", self.num_workers, 0)
        if self.n_threads is not None:
            _check_int("n_threads", self.n_threads, 1)
        if self.report_every is not None:
            _check_int("report_every", self.report_every, 0)
        for label, number in (("lr", self.lr), ("temperature", self.temperature)):
            if not isinstance(number, int | float) or isinstance(number, bool):
                raise SettingsError(f"{label} = {number!r} must be a positive finite number")
            if not 0.0 < number < math.inf:
                raise SettingsError(f"{label} = {number!r} must be a positive finite number")
        if isinstance(self.distill_weight, bool) or not 0.0 <= self.distill_weight <= 1.0:
            raise SettingsError(f"distill_weight = {self.distill_weight!r} must be in [0, 1]")
        _check_runtime(self)
        check_latency_threads(self.latency_threads)
        tolerance = self.latency_tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
            raise SettingsError(f"latency_tolerance = {tolerance!r} must be a number in (0, 1]")
        if not 0.0 < tolerance <= 1.0:
            raise SettingsError(
                f"latency_tolerance = {tolerance!r} must be in (0, 1]: the largest error "
                "(a fraction of the measured time) the latency table may make on whole plans"
            )
        if self.worker_index is not None:
            _check_int("worker_index", self.worker_index, 0)
        if isinstance(self.sampler, str):
            if self.sampler not in SAMPLERS:
                raise UnknownNameError("sampler", self.sampler, SAMPLERS)
            if self.sampler == "random" and self.repair == "constraint":
                raise RankoptError(
                    "sampler 'random' cannot take Optuna constraints (repair='constraint'); "
                    "use sampler 'tpe' or 'nsga2', or repair='repair'"
                )

    @property
    def single_objective(self) -> bool:
        """Whether the study has one objective (accuracy): pruning and reports on."""
        return len(self.objectives) == 1

    @property
    def ranks_multiple_of(self) -> int:
        """``rank_multiple``, or when None the latency runtime's (on ONNX Runtime its
        channel block on this CPU, 16 with AVX-512; else 1; 1 without a runtime)."""
        if self.rank_multiple is not None:
            return self.rank_multiple
        if self.latency_runtime is None:
            return 1
        return get_runtime(self.latency_runtime).rank_multiple

    @property
    def max_seeds(self) -> int:
        """Seed trials at most: a quarter of the trials (the sampler's start-up set)."""
        return max(1, self.n_trials // 4)

    def finetune(self) -> FinetuneSettings:
        """The proxy fine-tune of every trial."""
        from rankopt.searching.objective._objective import FinetuneSettings

        report_every = self.report_every
        if report_every is None:
            report_every = max(1, self.finetune_steps // 4) if self.single_objective else 0
        return FinetuneSettings(
            steps=self.finetune_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            temperature=self.temperature,
            distill_weight=self.distill_weight,
            report_every=report_every,
        )

    def to_study_attr(self, eligible_layers: Sequence[str]) -> dict[str, Any]:
        """The study's ``settings`` user attribute (JSON)."""
        from rankopt.evaluators import resolve_device
        from rankopt.searching.objective._objective import settings_dict

        sampler = self.sampler
        return {
            "methods": list(self.methods) if self.methods is not None else None,
            "repair": self.repair,
            "seed": self.seed,
            "sampler": sampler if isinstance(sampler, str) else type(sampler).__name__,
            "finetune": settings_dict(self.finetune()),
            "finetune_samples": self.finetune_samples,
            "min_layer_share": self.min_layer_share,
            "rank_multiple": self.ranks_multiple_of,
            "latency_runtime": self.latency_runtime,
            "allow_slower": self.allow_slower,
            "prune": self.prune,
            "latency_threads": self.latency_threads,
            "eligible_layers": list(eligible_layers),
            "device": str(resolve_device(self.device)),
        }


def setting_defaults() -> dict[str, Any]:
    """Each setting's default, by field name: the one place a search's defaults are written
    (:func:`rankopt.search`'s signature and ``rankopt search``'s options read them)."""
    return {f.name: f.default for f in fields(SearchSettings) if f.default is not MISSING}


def _check_runtime(s: SearchSettings) -> None:
    """A known runtime, or None with nothing that needs latency."""
    if not isinstance(s.allow_slower, bool):
        raise SettingsError(f"allow_slower = {s.allow_slower!r} must be True or False")
    if not isinstance(s.prune, bool):
        raise SettingsError(f"prune = {s.prune!r} must be True or False")
    if s.latency_runtime is not None:
        get_runtime(s.latency_runtime)
        return
    needs = [
        what
        for what, wanted in (
            ("measure_latency=True", s.measure_latency),
            ("the latency_ms objective", "latency_ms" in s.objectives),
        )
        if wanted
    ]
    if needs:
        raise SettingsError(
            f"latency_runtime = None (no deployment runtime) but {' and '.join(needs)} needs "
            f"one; choose one of {sorted(RUNTIMES)}"
        )


def _check_objectives(objs: tuple[str, ...]) -> None:
    from rankopt.searching.objective._objective import OBJECTIVE_DIRECTIONS

    if not objs or objs[0] != "accuracy":
        raise RankoptError(
            f"objectives = {list(objs)}: the first objective must be 'accuracy'; "
            f"then any of {sorted(set(OBJECTIVE_DIRECTIONS) - {'accuracy'})}"
        )
    for name in objs:
        if name not in OBJECTIVE_DIRECTIONS:
            raise UnknownNameError("objective", name, OBJECTIVE_DIRECTIONS)
    if len(set(objs)) != len(objs):
        raise RankoptError(f"objectives = {list(objs)} lists one objective twice")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        rule = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingsError(f"{name} = {value!r} must be an integer {rule}")
