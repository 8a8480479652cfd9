"""``rankopt.search``: one Optuna study over per-layer methods and ranks."""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt._device import Device, on_device, resolve_device
from rankopt._storage import is_shared as _is_shared
from rankopt._storage import is_sqlite_locked, open_storage, sqlite_locked_error
from rankopt._storage import sqlite_lock_errors as _sqlite_lock_errors
from rankopt._version import __version__
from rankopt.data import Split, as_split
from rankopt.errors import (
    DataError,
    DecompositionError,
    ModelError,
    RankoptError,
    SettingsError,
    StorageError,
    TrialFailedError,
    UnknownNameError,
)
from rankopt.evaluators import ModelProfile, compute_logits, compute_logits_and_labels, profile
from rankopt.search._budget import Budget, parse_budget
from rankopt.search._objective import (
    OBJECTIVE_DIRECTIONS,
    FinetuneSettings,
    Objective,
    TrialData,
    settings_dict,
)
from rankopt.search._seeding import seed_trials
from rankopt.search._sensitivity import SensitivityProfile, measure_sensitivity
from rankopt.search._space import DEFAULT_MIN_LAYER_SHARE, SearchSpace
from rankopt.spaces import list_methods

__all__ = [
    "SAMPLERS",
    "make_sampler",
    "search",
    "worker_sampler_seed",
]

SAMPLERS = ("tpe", "nsga2", "random")
Data = tuple[torch.Tensor, torch.Tensor]
CALIBRATION_IMAGES = 256
"""Training images that re-estimate BatchNorm statistics and score the sensitivity profile."""


def worker_sampler_seed(
    seed: int, worker_index: int | None, storage: str | BaseStorage | None
) -> int:
    """The sampler seed of one worker: distinct per worker, so workers do not propose alike.

    With the same seed, every worker's sampler would propose the same parameters. With
    ``worker_index`` given the sampler seed is ``seed + worker_index`` (reproducible). Without
    it, a worker on a server storage (PostgreSQL, MySQL: possibly one of many) derives it from
    ``seed``, the host name and the process id; in memory or with SQLite (one process) it is
    ``seed``. Fine-tune seeds do not depend on the worker: trial ``n`` uses ``seed + n``.
    """
    if worker_index is not None:
        return (seed + worker_index) % 2**32
    if not _is_shared(storage):
        return seed
    tag = f"{socket.gethostname()}:{os.getpid()}".encode()
    return (seed + 1 + zlib.crc32(tag)) % 2**32


def make_sampler(
    sampler: str | optuna.samplers.BaseSampler,
    *,
    seed: int | None,
    n_objectives: int,
    constraints: bool,
    n_startup_trials: int = 10,
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a name (``tpe``, ``nsga2``, ``random``) or pass one through."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    constraints_func = _constraints if constraints else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=n_startup_trials,
                constraints_func=constraints_func,
            )
        if sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(
                seed=seed,
                population_size=max(8, n_startup_trials),
                constraints_func=constraints_func,
            )
        if sampler == "random":
            if constraints:
                raise RankoptError(
                    "sampler 'random' cannot take Optuna constraints (repair='constraint'); "
                    "use sampler 'tpe' or 'nsga2', or repair='repair'"
                )
            return optuna.samplers.RandomSampler(seed=seed)
    raise UnknownNameError("sampler", sampler, SAMPLERS)


def _constraints(trial: FrozenTrial) -> Sequence[float]:
    return [float(v) for v in trial.user_attrs.get("constraint", [1.0])]


def _validate_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objs = tuple(objectives)
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
    return objs


def _check_data(name: str, split: Split, input_shape: tuple[int, ...]) -> None:
    images, labels = split.tensors if split.tensors is not None else split.first()
    if images.dim() != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
        raise RankoptError(
            f"{name} images have shape {tuple(images.shape)}; expected (N, "
            f"{', '.join(map(str, input_shape))}) to match the model input"
        )
    if labels.shape[0] != images.shape[0] or labels.dim() != 1:
        raise RankoptError(
            f"{name} labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},)"
        )


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        rule = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingsError(f"{name} = {value!r} must be an integer {rule}")


def _check_labels(model: nn.Module, train_data: Split, val_data: Split) -> int:
    """Every label must index one of the model's outputs; returns the number of outputs.

    Labels of a ``Dataset`` without ``targets`` are checked when first streamed.
    """
    with torch.no_grad():
        out = model(train_data.first()[0])
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the model returns {shape} for one image; rankopt needs logits of shape "
            "(batch, classes)"
        )
    n_outputs = int(out.shape[1])
    for split in (train_data, val_data):
        _check_label_range(split.name, split.known_labels(), n_outputs)
    return n_outputs


def _check_label_range(name: str, labels: torch.Tensor | None, n_outputs: int) -> None:
    if labels is not None and labels.numel() > 0:
        low, top = int(labels.min()), int(labels.max())
        if low < 0 or top >= n_outputs:
            raise DataError(
                f"{name} labels range over {low}..{top} ({top + 1} classes) but the model "
                f"has {n_outputs} outputs; labels must lie in [0, {n_outputs}): use data with "
                f"at most {n_outputs} classes or a model with {top + 1} outputs (--num-classes)"
            )


def search(
    model: nn.Module,
    train_data: Data | Dataset[Any] | DataLoader[Any],
    val_data: Data | Dataset[Any] | DataLoader[Any],
    *,
    max_macs: float | int | str | None = None,
    max_params: float | int | str | None = None,
    objectives: Sequence[str] = ("accuracy", "macs"),
    methods: Sequence[str] | None = None,
    n_trials: int = 30,
    timeout: float | None = None,
    sampler: str | optuna.samplers.BaseSampler = "tpe",
    pruner: optuna.pruners.BasePruner | None = None,
    storage: str | BaseStorage | None = None,
    study_name: str | None = None,
    seed: int = 0,
    repair: str = "repair",
    finetune_steps: int = 120,
    finetune_samples: int = 2048,
    batch_size: int = 64,
    lr: float = 0.01,
    distill_weight: float = 0.7,
    temperature: float = 4.0,
    report_every: int | None = None,
    seed_with_vbmf: bool = True,
    min_layer_share: float = DEFAULT_MIN_LAYER_SHARE,
    rank_multiple: int = 1,
    measure_latency: bool = False,
    model_name: str = "model",
    data_name: str = "data",
    input_shape: Sequence[int] | None = None,
    n_threads: int | None = None,
    heartbeat_interval: int | None = None,
    worker_index: int | None = None,
    progress: Callable[[str], None] | bool | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    device: Device | None = "auto",
    num_workers: int = 0,
) -> optuna.Study:
    """Search per-layer decomposition methods and ranks under a budget.

    Each trial samples for every eligible layer a method (``keep`` included) and its ranks
    as fractions of full rank, fits the result into the budget (``repair``: one global
    factor on every fraction, by bisection on the analytic cost; ``constraint``: Optuna's
    constraints instead), builds the compressed model, scores it before and after a short
    fine-tune with distillation from the dense model, and stores plan and numbers in the
    trial's ``user_attrs`` (see DEVELOPERS.md). The VBMF plan and uniform baselines are
    enqueued first, once per study.

    Args:
        model: The trained dense model (left untouched).
        train_data: ``(images, labels)`` tensors, a ``Dataset`` of ``(image, label)`` items
            or a ``DataLoader``, for the proxy fine-tune: only its seeded sample of
            ``finetune_samples`` images is read and held in memory.
        val_data: The same forms, scoring every trial (not the final test split); streamed
            in batches (its labels and the dense model's logits are kept).
        max_macs: MACs budget: a fraction of dense (``0.5``, ``"50%"``) or absolute
            (``4e6``, ``"4M"``).
        max_params: Parameter budget, same forms.
        objectives: ``("accuracy",)`` (single objective, pruning) or accuracy plus any of
            ``"macs"``, ``"n_params"``, ``"latency_ms"`` (Pareto front).
        methods: Methods to offer (default all registered); ``keep`` is always offered.
        n_trials: Total finished (complete or pruned) trials the study should hold; a
            resumed study runs only the rest, and several workers share this total.
        timeout: Stop starting new trials after this many seconds.
        sampler: ``"tpe"`` (multivariate), ``"nsga2"``, ``"random"`` or any Optuna sampler.
        pruner: Optuna pruner for single-objective studies (default median pruner).
        storage: Optuna storage URL (``sqlite:///run/study.db``, ``postgresql://...``) or
            object; None keeps the study in memory.
        study_name: Name of the study in the storage; the same name resumes it.
        seed: Seed of the sampler and of every fine-tune (trial n uses ``seed + n``);
            each worker's sampler gets its own seed (:func:`worker_sampler_seed`).
        repair: ``"repair"`` or ``"constraint"``.
        finetune_steps: Optimiser steps of each proxy fine-tune (0 disables it).
        finetune_samples: Training images used by the proxy fine-tune.
        batch_size: Images per fine-tune step.
        lr: Fine-tune learning rate.
        distill_weight: Weight of the distillation loss (rest: cross-entropy).
        temperature: Distillation temperature.
        report_every: Steps between intermediate reports (default: a quarter of the
            steps for single-objective studies, none otherwise).
        seed_with_vbmf: Enqueue the VBMF and uniform seed trials.
        measure_latency: Store batch-1 CPU latency on every trial.
        model_name: Name stored in plans and the study.
        data_name: Name stored in the study.
        input_shape: Shape of one image; default the training images' shape.
        n_threads: torch CPU threads for this process.
        heartbeat_interval: Seconds between heartbeats for non-SQLite RDB storages
            (default 10; 0 off). A trial without a heartbeat for 3 intervals is failed and
            retried by another worker.
        worker_index: Index of this worker among several on one study (0, 1, ...): its
            sampler seed is ``seed + worker_index``. None: ``seed`` for in-memory and
            SQLite storages, one derived from host and process id for server storages.
        progress: Called with one line per finished trial; True prints to stderr.
        callbacks: Extra Optuna callbacks.
        device: Where the dense model, every trial and every fine-tune run: ``"auto"``
            (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``. Decompositions are
            computed in float64 on the CPU either way; ``latency_ms`` is always CPU latency.
        num_workers: ``DataLoader`` workers when rankopt batches a ``Dataset`` itself.

    Returns:
        The study (also in ``storage`` when given).

    Raises:
        BudgetError: the budget is malformed or below the smallest reachable cost.
        SettingsError: an option is out of range (n_trials, lr, seed, methods, ...).
        DataError: a label does not index one of the model's outputs.
        RankoptError: other bad input (objectives, data shapes, sampler).
        StorageError: the storage cannot be opened, or the named study was made for
            another model or budget.
    """
    objs = _validate_objectives(objectives)
    if repair not in ("repair", "constraint"):
        raise SettingsError(f"repair = {repair!r}; choose 'repair' or 'constraint'")
    if methods is not None and len(methods) == 0:
        raise SettingsError(
            "methods = []: give at least one method, or None for all of: "
            + ", ".join(list_methods())
        )
    _check_int("n_trials", n_trials, 1)
    if timeout is not None and not 0 < timeout < math.inf:
        raise SettingsError(f"timeout = {timeout!r} must be a positive number of seconds")
    _check_int("finetune_steps", finetune_steps, 0)
    _check_int("finetune_samples", finetune_samples, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0, 2**32 - 1)
    if n_threads is not None:
        _check_int("n_threads", n_threads, 1)
    for label, number in (("lr", lr), ("temperature", temperature)):
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise SettingsError(f"{label} = {number!r} must be a positive finite number")
        if not 0.0 < number < math.inf:
            raise SettingsError(f"{label} = {number!r} must be a positive finite number")
    if isinstance(distill_weight, bool) or not 0.0 <= distill_weight <= 1.0:
        raise SettingsError(f"distill_weight = {distill_weight!r} must be in [0, 1]")
    if worker_index is not None and (
        isinstance(worker_index, bool) or not isinstance(worker_index, int) or worker_index < 0
    ):
        raise RankoptError(f"worker_index = {worker_index!r} must be an integer >= 0")
    dev = resolve_device(device)
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    say = _progress_printer(progress)

    _check_int("num_workers", num_workers, 0)
    train = as_split(train_data, "training", num_workers=num_workers)
    val = as_split(val_data, "validation", num_workers=num_workers)
    shape = tuple(input_shape) if input_shape is not None else tuple(train.first()[0].shape[1:])
    _check_data("training", train, shape)
    _check_data("validation", val, shape)
    model.eval()
    prof = profile(model, shape)
    n_outputs = _check_labels(model, train, val)
    model = on_device(model, dev)  # a copy when elsewhere: the caller's model stays put
    budget = Budget(
        max_macs=parse_budget(max_macs, prof.macs, what="macs"),
        max_params=parse_budget(max_params, prof.n_params, what="params"),
    )
    space = SearchSpace(
        prof,
        methods,
        n_outputs=n_outputs,
        min_layer_share=min_layer_share,
        rank_multiple=rank_multiple,
    )
    space.check_budget(budget)

    name = study_name or f"{model_name}-{data_name}"
    directions = [OBJECTIVE_DIRECTIONS[o] for o in objs]
    opened = open_storage(storage, heartbeat_interval=heartbeat_interval)
    single = len(objs) == 1
    sampler_seed = worker_sampler_seed(seed, worker_index, opened)
    # Seeds are at most a quarter of the trials, and they are the sampler's start-up set:
    # the model-based sampler runs for the other three quarters.
    max_seeds = max(1, n_trials // 4)
    opt_sampler = make_sampler(
        sampler,
        seed=sampler_seed,
        n_objectives=len(objs),
        constraints=repair == "constraint",
        n_startup_trials=max_seeds,
    )
    # No pruning before half of the proxy steps: earlier, accuracy mostly says how fast the
    # BatchNorm statistics recover, not how good the compressed network is.
    opt_pruner = (
        pruner
        if pruner is not None
        else (
            optuna.pruners.MedianPruner(
                n_startup_trials=5, n_warmup_steps=max(1, finetune_steps // 2)
            )
            if single
            else optuna.pruners.NopPruner()
        )
    )
    study, created = _create_or_load(name, opened, directions, opt_sampler, opt_pruner)

    data = _prepare_data(model, train, val, finetune_samples, seed, n_outputs)
    dense_val_acc = float((data.val_teacher_logits.argmax(dim=1) == data.val_labels).float().mean())
    finetune = FinetuneSettings(
        steps=finetune_steps,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        distill_weight=distill_weight,
        report_every=(max(1, finetune_steps // 4) if single else 0)
        if report_every is None
        else report_every,
    )
    attrs = {
        "rankopt_version": __version__,
        "model": model_name,
        "data": data_name,
        "fingerprint": prof.fingerprint,
        "input_shape": list(shape),
        "dense": {"accuracy": dense_val_acc, "macs": prof.macs, "n_params": prof.n_params},
        "budget": {"max_macs": budget.max_macs, "max_params": budget.max_params},
        "objectives": list(objs),
        "settings": {
            "methods": list(methods) if methods is not None else None,
            "repair": repair,
            "seed": seed,
            "sampler": sampler if isinstance(sampler, str) else type(sampler).__name__,
            "finetune": settings_dict(finetune),
            "finetune_samples": finetune_samples,
            "min_layer_share": min_layer_share,
            "rank_multiple": rank_multiple,
            "eligible_layers": list(space.layer_names),
            "device": str(dev),
        },
    }
    if created:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    else:
        _check_compatible(study, attrs, name)

    sensitivity = _sensitivity(study, model, space, data, say)
    # Only the worker that created the study seeds it: creation is atomic, so seeds are
    # enqueued exactly once however many workers start together (a worker that loads the
    # study before its creator has enqueued them simply starts with sampled trials).
    if seed_with_vbmf and created:
        seeds = seed_trials(
            space,
            model,
            budget,
            sensitivity,
            with_target=space.needs_target(budget, repair),
            max_seeds=max_seeds,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in seeds:
                study.enqueue_trial(
                    dict(s.params), user_attrs={"seed": s.name}, skip_if_exists=True
                )
        study.set_user_attr("seeded", [s.name for s in seeds])
        say(f"enqueued {len(seeds)} seed trials: {', '.join(s.name for s in seeds)}")
    elif seed_with_vbmf:
        _requeue_interrupted_seeds(study, say)

    objective: Callable[[optuna.Trial], Any] = Objective(
        model,
        space,
        budget,
        data,
        sensitivity,
        objectives=objs,
        repair=repair,
        finetune=finetune,
        seed=seed,
        model_name=model_name,
        study_name=name,
        measure_latency=measure_latency,
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    objective = _TaggedObjective(objective, worker)
    done_states = (TrialState.COMPLETE, TrialState.PRUNED)
    finished = len(study.get_trials(deepcopy=False, states=done_states))
    remaining = n_trials - finished
    if _is_shared(opened):
        say(
            f"worker {worker}"
            + (f" (index {worker_index})" if worker_index is not None else "")
            + f": sampler seed {sampler_seed}; the study's total is {n_trials} finished trials"
        )
    say(
        f"study {name!r}: {finished} finished trials, {max(0, remaining)} to run; "
        f"dense: val accuracy {dense_val_acc:.4f}, {prof.macs} macs, {prof.n_params} params; "
        f"budget: {budget.describe(prof.macs, prof.n_params)}; "
        f"{len(space.layer_names)} searchable layers"
    )
    if remaining <= 0:
        return study
    reporter = _TrialReporter(say, budget, prof, objs)
    stopper = optuna.study.MaxTrialsCallback(n_trials, states=done_states)
    with warnings.catch_warnings(), _sqlite_lock_errors(opened):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective,
            n_trials=remaining + max(5, remaining),  # room for failed trials
            timeout=timeout,
            catch=(TrialFailedError, DecompositionError),
            callbacks=[reporter, stopper, *callbacks],
            gc_after_trial=False,
        )
    return study


def _requeue_interrupted_seeds(study: optuna.Study, say: Callable[[str], None]) -> None:
    """Enqueue again the seed trials a Ctrl-C failed, so a resumed study loses no seed."""
    trials = study.get_trials(deepcopy=False)
    alive = {t.user_attrs.get("seed") for t in trials if t.state != TrialState.FAIL}
    again = []
    for t in trials:
        seed_name = t.user_attrs.get("seed")
        reason = str(t.user_attrs.get("fail_reason", ""))
        if t.state != TrialState.FAIL or not seed_name or seed_name in alive:
            continue
        if not reason.startswith("interrupted"):
            continue
        params = dict(t.system_attrs.get("fixed_params", t.params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(params, user_attrs={"seed": seed_name})
        alive.add(seed_name)
        again.append(str(seed_name))
    if again:
        say(f"enqueued again the seed trials interrupted before: {', '.join(again)}")


def _create_or_load(
    name: str,
    storage: BaseStorage | None,
    directions: list[Literal["minimize", "maximize"]],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, bool]:
    """Create the study; when it exists (same command again, or another worker), load it.

    Creation is atomic in the storage, so among workers that start together exactly one
    creates the study (and seeds it).
    """
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=False,
        )
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    except Exception as exc:
        url = getattr(storage, "url", "")
        if isinstance(url, str) and is_sqlite_locked(exc):
            raise sqlite_locked_error(url) from None
        raise StorageError(f"cannot create study {name!r}: {_first_line(exc)}") from None
    if storage is None:  # in memory: nothing to load, so creation cannot have collided
        raise StorageError(f"study {name!r} could not be created in memory")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if [d.name.lower() for d in study.directions] != directions:
        raise StorageError(
            f"study {name!r} exists with directions "
            f"{[d.name.lower() for d in study.directions]}, not {directions}; "
            "use another --study-name for other objectives"
        )
    return study, False


class _TaggedObjective:
    """Records which worker (``host:pid``) runs a trial in ``user_attrs["worker"]``."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], worker: str) -> None:
        self.objective = objective
        self.worker = worker

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr("worker", self.worker)
        return self.objective(trial)


def _check_compatible(study: optuna.Study, attrs: dict[str, Any], name: str) -> None:
    for key in ("fingerprint", "budget", "objectives"):
        old = study.user_attrs.get(key)
        if old is not None and old != attrs[key]:
            raise StorageError(
                f"study {name!r} in this storage was made with {key} = {old}, but this run "
                f"has {key} = {attrs[key]}; resume with the same settings or choose another "
                "--study-name"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _prepare_data(
    model: nn.Module, train_data: Split, val_data: Split, n_samples: int, seed: int, n_out: int
) -> TrialData:
    """The fine-tune sample in memory; the validation split streamed (labels and logits kept)."""
    train_x, train_y = train_data.sample(n_samples, seed)
    _check_label_range("training", train_y, n_out)
    val_x = val_data.tensors[0] if val_data.tensors is not None else val_data.batches()
    val_logits, val_y = compute_logits_and_labels(model, val_x)
    if val_data.tensors is not None:
        val_y = val_data.tensors[1]
    if val_y is None:
        raise DataError(f"validation {val_data.kind} yields no labels")
    _check_label_range("validation", val_y, n_out)
    return TrialData(
        train_images=train_x,
        train_labels=train_y,
        teacher_logits=compute_logits(model, train_x),
        val_images=val_x,
        val_labels=val_y,
        val_teacher_logits=val_logits,
        calibration_images=train_x[:CALIBRATION_IMAGES],
    )


def _sensitivity(
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


def _progress_printer(progress: Callable[[str], None] | bool | None) -> Callable[[str], None]:
    if progress is True:
        return lambda line: print(line, file=sys.stderr, flush=True)
    if callable(progress):
        return progress
    return lambda line: None


class _TrialReporter:
    """Optuna callback printing one line per finished trial."""

    def __init__(
        self,
        say: Callable[[str], None],
        budget: Budget,
        prof: ModelProfile,
        objectives: tuple[str, ...],
    ) -> None:
        self.say = say
        self.budget = budget
        self.prof = prof
        self.objectives = objectives
        self.started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        label = f" [{attrs['seed']}]" if "seed" in attrs else ""
        if trial.state == TrialState.COMPLETE:
            best = _best_feasible(study, self.budget)
            best_txt = f"best {best[0]:.4f} (trial {best[1]})" if best else "best -"
            self.say(
                f"trial {trial.number:>3}{label}: accuracy {attrs.get('accuracy', math.nan):.4f} "
                f"(before fine-tune {attrs.get('accuracy_before_finetune', math.nan):.4f}), "
                f"macs {100 * attrs.get('macs_ratio', math.nan):.1f}%, "
                f"params {100 * attrs.get('params_ratio', math.nan):.1f}%, "
                f"{attrs.get('wall_time_s', math.nan):.1f}s | {best_txt}"
            )
        else:
            reason = attrs.get("fail_reason", "")
            self.say(
                f"trial {trial.number:>3}{label}: {trial.state.name.lower()} {reason}".rstrip()
            )


def _best_feasible(study: optuna.Study, budget: Budget) -> tuple[float, int] | None:
    best: tuple[float, int] | None = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = t.user_attrs
        if "accuracy" not in attrs or not attrs.get("feasible", True):
            continue
        if not budget.fits(int(attrs.get("macs", 0)), int(attrs.get("n_params", 0))):
            continue
        if best is None or attrs["accuracy"] > best[0]:
            best = (float(attrs["accuracy"]), t.number)
    return best
