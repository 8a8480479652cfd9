"""``rankopt.search``: the study loop (settings, sampler and progress live next door)."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt._signals import ctrl_c_interrupts
from rankopt._version import __version__
from rankopt.budget._budget import Budget, parse_budget
from rankopt.data import as_split
from rankopt.errors import DecompositionError, TrialFailedError
from rankopt.evaluators import profile
from rankopt.evaluators._device import Device, on_device, resolve_device
from rankopt.search.loop._inputs import (
    Data,
    check_data,
    check_labels,
    prepare_data,
    study_latency,
)
from rankopt.search.loop._progress import TrialReporter, progress_printer
from rankopt.search.loop._sampler import default_pruner, make_sampler, worker_sampler_seed
from rankopt.search.loop._settings import SearchSettings, setting_defaults
from rankopt.search.objective._duplicates import (
    DistinctTrialsStopper,
    max_attempts,
    n_distinct_finished,
)
from rankopt.search.objective._objective import OBJECTIVE_DIRECTIONS, Objective
from rankopt.search.objective._sensitivity import study_sensitivity
from rankopt.search.seeding._enqueue import enqueue_seeds_once
from rankopt.search.seeding._seeding import seed_trials
from rankopt.search.space._reach import check_budget
from rankopt.search.space._space import SearchSpace
from rankopt.storage._heartbeat import fail_lost_trials
from rankopt.storage._open import is_shared, open_storage
from rankopt.storage._open import sqlite_lock_errors as _sqlite_lock_errors
from rankopt.storage._queue import queued_line
from rankopt.storage._study import check_compatible, create_or_load, quiet_optuna

__all__ = ["search"]

_D = SearchSettings  # its fields' defaults are search()'s (class attributes of the dataclass)


def search(
    model: nn.Module,
    train_data: Data | Dataset[Any] | DataLoader[Any],
    val_data: Data | Dataset[Any] | DataLoader[Any],
    *,
    max_macs: float | int | str | None = None,
    max_params: float | int | str | None = None,
    max_latency: float | str | None = None,
    objectives: Sequence[str] = _D.objectives,
    methods: Sequence[str] | None = _D.methods,
    n_trials: int = _D.n_trials,
    timeout: float | None = _D.timeout,
    sampler: str | optuna.samplers.BaseSampler = _D.sampler,
    pruner: optuna.pruners.BasePruner | None = None,
    storage: str | BaseStorage | None = None,
    study_name: str | None = None,
    seed: int = _D.seed,
    repair: str = _D.repair,
    finetune_steps: int = _D.finetune_steps,
    finetune_samples: int = _D.finetune_samples,
    batch_size: int = _D.batch_size,
    lr: float = _D.lr,
    distill_weight: float = _D.distill_weight,
    temperature: float = _D.temperature,
    report_every: int | None = _D.report_every,
    seed_with_vbmf: bool = _D.seed_with_vbmf,
    min_layer_share: float = _D.min_layer_share,
    rank_multiple: int | None = _D.rank_multiple,
    measure_latency: bool = _D.measure_latency,
    latency_runtime: str | None = _D.latency_runtime,
    allow_slower: bool = _D.allow_slower,
    latency_threads: int = _D.latency_threads,
    latency_tolerance: float = _D.latency_tolerance,
    model_name: str = "model",
    data_name: str = "data",
    input_shape: Sequence[int] | None = None,
    n_threads: int | None = _D.n_threads,
    heartbeat_interval: int | None = None,
    worker_index: int | None = _D.worker_index,
    progress: Callable[[str], None] | bool | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    device: Device | None = _D.device,
    num_workers: int = _D.num_workers,
) -> optuna.Study:
    """Search per-layer decomposition methods and ranks under a budget.

    First, once per study, a sensitivity profile: each eligible layer decomposed alone by
    each offered method at a few ranks, BatchNorm calibrated, scored by the KL divergence of
    the output from dense (no fine-tune). Each trial then samples for every eligible layer a
    method and a weight; a deterministic allocation over the profile sets the ranks so that
    the model meets the budget (``repair``; ``constraint``: it meets a sampled target and
    the budget is an Optuna constraint). The trial builds the compressed model, calibrates
    BatchNorm, scores it before and after a short fine-tune with distillation from the
    dense model (validation accuracy and cross-entropy), and stores plan and numbers in the
    trial's ``user_attrs`` (see DEVELOPERS.md). Seed trials (at most a quarter of
    ``n_trials``, :func:`~rankopt.search.seeding._seeding.seed_trials`) are enqueued first, once per
    study. The recommended plan (:func:`rankopt.export_plan`): the lowest validation loss.

    Args:
        model: The trained dense model (left untouched).
        train_data: ``(images, labels)`` for the proxy fine-tune.
        val_data: ``(images, labels)`` scoring every trial (not the final test split).
        max_macs: MACs budget: a fraction of dense (``0.5``, ``"50%"``) or absolute
            (``4e6``, ``"4M"``).
        max_params: Parameter budget, same forms.
        max_latency: Latency budget from this machine's per-layer latency table (cached):
            ``0.5`` / ``"50%"`` of dense at batch 1 and 64, or ``"2.5ms"`` at batch 1.
        objectives: ``("accuracy",)`` (single objective, pruning) or accuracy plus any of
            ``"macs"``, ``"n_params"``, ``"latency_ms"`` (Pareto front).
        methods: Methods to offer (default all registered); ``keep`` is always offered.
        n_trials: Total finished (complete or pruned) trials the study should hold, not
            counting trials that realised an already evaluated plan (they reuse its result); a
            resumed study runs only the rest, and several workers share this total.
        timeout: Stop starting new trials after this many seconds.
        sampler: ``"tpe"`` (multivariate TPE, three trials in four local moves around
            the two trials with the lowest validation loss), ``"nsga2"``, ``"random"`` or
            any Optuna sampler.
        pruner: Optuna pruner for single-objective studies (default median pruner).
        storage: Optuna storage URL (``sqlite:///run/study.db``, ``postgresql://...``) or
            object; None keeps the study in memory.
        study_name: Name of the study in the storage; the same name resumes it.
        seed: Seed of the sampler and of every proxy fine-tune (the same for every trial:
            same batches); each worker's sampler its own (:func:`worker_sampler_seed`).
        repair: ``"repair"`` or ``"constraint"``.
        finetune_steps: Optimiser steps of each proxy fine-tune (0 disables it).
        finetune_samples: Training images used by the proxy fine-tune.
        batch_size: Images per fine-tune step.
        lr: Fine-tune learning rate.
        distill_weight: Weight of the distillation loss (rest: cross-entropy).
        temperature: Distillation temperature.
        report_every: Steps between intermediate reports (default: a quarter of the
            steps for single-objective studies, none otherwise).
        seed_with_vbmf: Enqueue the seed trials (sensitivity, one-method, uniform, VBMF).
        min_layer_share: Layers below this share of the model's MACs and params stay
            dense (0 searches every layer).
        rank_multiple: Round every rank to a multiple of this; None: the latency runtime's
            (ONNX Runtime: its channel block on this CPU, 16 with AVX-512, 8 with AVX2), or 1.
        measure_latency: Store batch-1 CPU latency on every trial, measured end to end.
        latency_runtime: Where the plans will run: ``"onnxruntime"`` (exported as ``rankopt
            apply --out x.onnx`` does) or ``"torch"`` (eager). Its per-layer table (cached)
            predicts every trial's latency; None: no table, no latency.
        allow_slower: Let plans be slower than dense (by default every plan's predicted
            latency at batch 1 and 64 is at most dense's).
        latency_threads: Threads latency is timed at (default 1, whatever ``n_threads``).
        latency_tolerance: A latency table erring more on whole plans is refused (0.15).
        model_name: Name stored in plans and the study.
        data_name: Name stored in the study.
        input_shape: Shape of one image; default the training images' shape.
        n_threads: torch CPU threads for this process.
        heartbeat_interval: Seconds between heartbeats for non-SQLite RDB storages
            (default 10; 0 off). A trial without a heartbeat for 3 intervals is failed
            (``fail_reason`` "worker lost: ...") and retried; a worker about to exit fails
            such trials first, so none stays RUNNING.
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
    given = locals()
    settings = SearchSettings.from_kwargs(**{k: given[k] for k in setting_defaults()})
    with quiet_optuna(), ctrl_c_interrupts():
        return _search(
            model,
            train_data,
            val_data,
            settings,
            max_macs=max_macs,
            max_params=max_params,
            max_latency=max_latency,
            pruner=pruner,
            storage=storage,
            study_name=study_name,
            model_name=model_name,
            data_name=data_name,
            input_shape=input_shape,
            heartbeat_interval=heartbeat_interval,
            progress=progress,
            callbacks=callbacks,
        )


def _search(
    model: nn.Module,
    train_data: Data | Dataset[Any] | DataLoader[Any],
    val_data: Data | Dataset[Any] | DataLoader[Any],
    s: SearchSettings,
    *,
    max_macs: float | int | str | None,
    max_params: float | int | str | None,
    max_latency: float | str | None,
    pruner: optuna.pruners.BasePruner | None,
    storage: str | BaseStorage | None,
    study_name: str | None,
    model_name: str,
    data_name: str,
    input_shape: Sequence[int] | None,
    heartbeat_interval: int | None,
    progress: Callable[[str], None] | bool | None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
) -> optuna.Study:
    """:func:`search` once its settings are checked."""
    if s.n_threads is not None:
        torch.set_num_threads(s.n_threads)
    say = progress_printer(progress)

    dev = resolve_device(s.device)
    train = as_split(train_data, "training", num_workers=s.num_workers)
    val = as_split(val_data, "validation", num_workers=s.num_workers)
    shape = tuple(input_shape) if input_shape is not None else tuple(train.first()[0].shape[1:])
    check_data("training", train, shape)
    check_data("validation", val, shape)
    model.eval()
    prof = profile(model, shape)
    n_outputs = check_labels(model, train, val)
    table, latency_limits = study_latency(model, prof, s, say, max_latency)
    budget = Budget(
        max_macs=parse_budget(max_macs, prof.macs, what="macs"),
        max_params=parse_budget(max_params, prof.n_params, what="params"),
        **latency_limits,
    )
    space = SearchSpace(
        prof,
        s.methods,
        n_outputs=n_outputs,
        min_layer_share=s.min_layer_share,
        rank_multiple=s.ranks_multiple_of,
        latency=table,
    )
    check_budget(space, budget)

    name = study_name or f"{model_name}-{data_name}"
    directions = [OBJECTIVE_DIRECTIONS[o] for o in s.objectives]
    opened = open_storage(storage, heartbeat_interval=heartbeat_interval)
    sampler_seed = worker_sampler_seed(s.seed, s.worker_index, opened)
    # Seeds are at most a quarter of the trials, and they are the sampler's start-up set:
    # the model-based sampler runs for the other three quarters.
    opt_sampler = make_sampler(
        s.sampler,
        seed=sampler_seed,
        n_objectives=len(s.objectives),
        constraints=s.repair == "constraint",
        n_startup_trials=s.max_seeds,
    )
    opt_pruner = pruner or default_pruner(s.single_objective, s.finetune_steps)
    study, _ = create_or_load(name, opened, directions, opt_sampler, opt_pruner, s.objectives)

    model = on_device(model, dev)  # a copy when elsewhere: the caller's model stays put
    data = prepare_data(model, train, val, s.finetune_samples, s.seed, n_outputs)
    dense_val_acc = float((data.val_teacher_logits.argmax(dim=1) == data.val_labels).float().mean())
    attrs = {
        "rankopt_version": __version__,
        "model": model_name,
        "data": data_name,
        "fingerprint": prof.fingerprint,
        "input_shape": list(shape),
        "dense": {
            "accuracy": dense_val_acc,
            "macs": prof.macs,
            "n_params": prof.n_params,
            **({"latency_ms": {str(b): ms for b, ms in table.model_ms.items()}} if table else {}),
        },
        "budget": {
            "max_macs": budget.max_macs,
            "max_params": budget.max_params,
            **(budget.latency_attrs() if table else {}),
        },
        "objectives": list(s.objectives),
        "settings": s.to_study_attr(space.layer_names),
    }
    # The creator writes them; a worker that finds some missing (its creator died right
    # after creating the study) writes those, and checks the others.
    check_compatible(study, attrs, name)
    present = study.user_attrs
    for key, value in attrs.items():
        if key not in present:
            study.set_user_attr(key, value)

    worker = f"{socket.gethostname()}:{os.getpid()}"
    sensitivity = study_sensitivity(study, model, space, data, say, worker=worker)
    if s.seed_with_vbmf:
        # Any worker that finds the study without its seeds enqueues them, exactly once
        # across workers (a claim in the database): the creator may have died before.
        enqueue_seeds_once(
            study,
            lambda: seed_trials(
                space,
                model,
                budget,
                sensitivity,
                with_target=space.needs_target(budget, s.repair),
                max_seeds=s.max_seeds,
            ),
            worker,
            say,
        )

    objective: Callable[[optuna.Trial], Any] = Objective(
        model,
        space,
        budget,
        data,
        sensitivity,
        objectives=s.objectives,
        repair=s.repair,
        finetune=s.finetune(),
        seed=s.seed,
        model_name=model_name,
        study_name=name,
        measure_latency=s.measure_latency,
        latency_runtime=s.latency_runtime,
        latency_threads=s.latency_threads,
    )
    objective = _TaggedObjective(objective, worker)
    finished = n_distinct_finished(study)  # a trial that reused a result does not count
    remaining = s.n_trials - finished
    if is_shared(opened):
        say(
            f"worker {worker}"
            + (f" (index {s.worker_index})" if s.worker_index is not None else "")
            + f": sampler seed {sampler_seed}; the study's total is {s.n_trials} finished trials"
        )
    say(
        f"study {name!r}: {finished} finished trials, {max(0, remaining)} to run; "
        f"dense: val accuracy {dense_val_acc:.4f}, {prof.macs} macs, {prof.n_params} params; "
        f"budget: {budget.describe(prof.macs, prof.n_params, table.model_ms if table else None)}; "
        f"{len(space.layer_names)} searchable layers"
    )
    if remaining <= 0:
        fail_lost_trials(study, say)
        _say_queued(study, say)
        return study
    reporter = TrialReporter(say, budget, prof, s.objectives)
    stopper = DistinctTrialsStopper(s.n_trials)
    with warnings.catch_warnings(), _sqlite_lock_errors(opened):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective,
            n_trials=max_attempts(remaining),  # room for failed trials and repeats
            timeout=s.timeout,
            catch=(TrialFailedError, DecompositionError),
            callbacks=[reporter, stopper, *callbacks],
            gc_after_trial=False,
        )
        # Before this worker exits: no trial may stay RUNNING because its worker died
        # after the others reached the total.
        fail_lost_trials(study, say)
    _say_queued(study, say)
    return study


def _say_queued(study: optuna.Study, say: Callable[[str], None]) -> None:
    line = queued_line(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if line:
        say(line)


class _TaggedObjective:
    """Records which worker (``host:pid``) runs a trial in ``user_attrs["worker"]``."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], worker: str) -> None:
        self.objective = objective
        self.worker = worker

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr("worker", self.worker)
        return self.objective(trial)
