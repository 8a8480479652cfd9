"""The search in phases: prepare -> open the study -> seed -> run.

Each phase is a function a test can call alone; :func:`rankopt.search` calls them in order.

1. :func:`prepare`: the checked inputs, the model's profile, the latency table (when a
   latency budget or objective asks for one), the :class:`Budget` and the search space. No
   storage is touched.
2. :func:`open_study`: the storage, the sampler and pruner, the study created or loaded
   (with Optuna's metric names), the trial data on the search's device, and the
   :class:`StudyRecord` checked against a resumed study and written.
3. :func:`seed`: the sensitivity profile (read from the study, else measured and stored)
   and the seed trials, enqueued once per study.
4. :func:`run`: the trials, until the study holds ``n_trials`` distinct finished ones.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from rankopt._version import __version__
from rankopt.budget import Budget, parse_budget
from rankopt.data import Split, as_split
from rankopt.errors import DecompositionError, TrialFailedError
from rankopt.evaluators import ModelProfile, on_device, profile, resolve_device
from rankopt.latency import LatencyTable
from rankopt.pruning import KEEP_FRACTIONS, ChannelPruner
from rankopt.searching.loop._inputs import (
    check_data,
    check_labels,
    prepare_data,
    study_latency,
)
from rankopt.searching.loop._progress import TrialReporter
from rankopt.searching.loop._sampler import default_pruner, make_sampler, worker_sampler_seed
from rankopt.searching.loop._settings import SearchSettings
from rankopt.searching.objective._duplicates import (
    DistinctTrialsStopper,
    max_attempts,
    n_distinct_finished,
)
from rankopt.searching.objective._objective import OBJECTIVE_DIRECTIONS, Objective, TrialData
from rankopt.searching.objective._sensitivity import study_sensitivity
from rankopt.searching.seeding._enqueue import enqueue_seeds_once
from rankopt.searching.seeding._seeding import seed_trials
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._reach import check_budget
from rankopt.searching.space._space import SearchSpace
from rankopt.storage import (
    DenseReference,
    StudyRecord,
    check_compatible,
    create_or_load,
    fail_lost_trials,
    is_shared,
    open_storage,
    queued_line,
)
from rankopt.storage import sqlite_lock_errors as _sqlite_lock_errors

__all__ = ["OpenedStudy", "Prepared", "open_study", "prepare", "run", "seed"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """The search's inputs, checked, before any study (phase 1).

    Attributes:
        train: The training split (proxy fine-tunes).
        val: The validation split (every trial's score).
        shape: One image's shape ``(C, H, W)``.
        prof: The dense model's profile (MACs, params, layers, fingerprint).
        n_outputs: The model's output count (labels are checked against it).
        table: The per-layer latency table, or None when no latency is asked for.
        budget: The absolute budget.
        space: The search space.
        device: Where the model, trials and fine-tunes run.
    """

    train: Split
    val: Split
    shape: tuple[int, ...]
    prof: ModelProfile
    n_outputs: int
    table: LatencyTable | None
    budget: Budget
    space: SearchSpace
    device: torch.device


@dataclass(frozen=True)
class OpenedStudy:
    """The study, opened and recorded, with what its trials run on (phase 2).

    Attributes:
        study: The Optuna study (created, or loaded to resume).
        storage: The opened storage (None: in memory).
        sampler_seed: This worker's sampler seed.
        model: The dense model on the search's device (a copy when it was elsewhere).
        data: The trial data: fine-tune sample, validation split, teacher logits.
        dense_val_acc: The dense model's validation accuracy (fraction).
        worker: This worker's name, ``host:pid``.
    """

    study: optuna.Study
    storage: BaseStorage | None
    sampler_seed: int
    model: nn.Module
    data: TrialData
    dense_val_acc: float
    worker: str


def prepare(
    model: nn.Module,
    train_data: Any,
    val_data: Any,
    s: SearchSettings,
    *,
    max_macs: float | int | str | None,
    max_params: float | int | str | None,
    max_latency: float | str | None,
    input_shape: Sequence[int] | None,
    say: Say,
) -> Prepared:
    """Phase 1: check the data, profile the model, time it when asked, set budget and space.

    Raises:
        DataError / RankoptError: bad data or labels; BudgetError: a malformed budget or
        one below the smallest reachable cost.
    """
    device = resolve_device(s.device)  # an unusable device fails before any work
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
        pruner=ChannelPruner(model, shape) if s.prune else None,
    )
    if space.channel_choices:
        say(
            f"channel pruning: {len(space.channel_choices)} channel groups may keep "
            f"{KEEP_FRACTIONS[-1]:.0%}..100% of their channels (in multiples of "
            f"{s.ranks_multiple_of})"
        )
    for name, reason in (space.pruner.dropped if space.pruner else {}).items():
        say(f"channel group {name!r} is not pruned: torch-pruning gave a broken model ({reason})")
    check_budget(space, budget)
    return Prepared(train, val, shape, prof, n_outputs, table, budget, space, device)


def open_study(
    model: nn.Module,
    prepared: Prepared,
    s: SearchSettings,
    *,
    storage: str | BaseStorage | None,
    name: str,
    model_name: str,
    data_name: str,
    heartbeat_interval: int | None,
    pruner: optuna.pruners.BasePruner | None,
) -> OpenedStudy:
    """Phase 2: open the storage, create or load the study, prepare the trial data and write
    (or, resuming, check) the study record.

    Raises:
        StorageError: the storage cannot be opened, or the study was made for another
            model, budget or objectives.
    """
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

    model = on_device(model, prepared.device)  # a copy when elsewhere: the caller's stays
    p = prepared
    data = prepare_data(model, p.train, p.val, s.finetune_samples, s.seed, p.n_outputs)
    dense_val_acc = float((data.val_teacher_logits.argmax(dim=1) == data.val_labels).float().mean())
    record = StudyRecord(
        model=model_name,
        data=data_name,
        fingerprint=p.prof.fingerprint,
        input_shape=p.shape,
        dense=DenseReference(
            dense_val_acc, p.prof.macs, p.prof.n_params, dict(p.table.model_ms) if p.table else {}
        ),
        max_macs=p.budget.max_macs,
        max_params=p.budget.max_params,
        max_latency_ms=p.budget.max_latency_ms,
        latency_cap_ms=p.budget.latency_cap_ms,
        objectives=s.objectives,
        settings=s.to_study_attr(p.space.layer_names),
        rankopt_version=__version__,
    )
    _write_record(study, record, name)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return OpenedStudy(study, opened, sampler_seed, model, data, dense_val_acc, worker)


def _write_record(study: optuna.Study, record: StudyRecord, name: str) -> None:
    """The creator writes the record; a worker that finds some of it missing (its creator
    died right after creating the study) writes that part, and checks the rest."""
    attrs = record.to_user_attrs()
    check_compatible(study, attrs, name)
    present = study.user_attrs
    for key, value in attrs.items():
        if key not in present:
            study.set_user_attr(key, value)


def seed(
    prepared: Prepared, opened: OpenedStudy, s: SearchSettings, say: Say
) -> SensitivityProfile:
    """Phase 3: the sensitivity profile, and the seed trials enqueued once per study.

    Any worker that finds the study without its seeds enqueues them, exactly once across
    workers (a claim in the database): the creator may have died before.
    """
    study, model, space, data = opened.study, opened.model, prepared.space, opened.data
    worker = opened.worker
    sensitivity = study_sensitivity(study, model, space, data, say, worker=worker)
    if s.seed_with_vbmf:
        budget = prepared.budget
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
    return sensitivity


def run(
    prepared: Prepared,
    opened: OpenedStudy,
    s: SearchSettings,
    sensitivity: SensitivityProfile,
    *,
    model_name: str,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
    say: Say,
) -> optuna.Study:
    """Phase 4: run trials until the study holds ``n_trials`` distinct finished ones; before
    returning, fail any trial whose worker was lost (server storages)."""
    study, p = opened.study, prepared
    objective = _TaggedObjective(
        Objective(
            opened.model,
            p.space,
            p.budget,
            opened.data,
            sensitivity,
            objectives=s.objectives,
            repair=s.repair,
            finetune=s.finetune(),
            seed=s.seed,
            model_name=model_name,
            study_name=study.study_name,
            measure_latency=s.measure_latency,
            latency_runtime=s.latency_runtime,
            latency_threads=s.latency_threads,
        ),
        opened.worker,
    )
    remaining = s.n_trials - _say_start(prepared, opened, s, say)
    if remaining > 0:
        with warnings.catch_warnings(), _sqlite_lock_errors(opened.storage):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(
                objective,
                n_trials=max_attempts(remaining),  # room for failed trials and repeats
                timeout=s.timeout,
                catch=(TrialFailedError, DecompositionError),
                callbacks=[
                    TrialReporter(say, p.budget, p.prof, s.objectives),
                    DistinctTrialsStopper(s.n_trials),
                    *callbacks,
                ],
                gc_after_trial=False,
            )
            # Before this worker exits: no trial may stay RUNNING because its worker died
            # after the others reached the total.
            fail_lost_trials(study, say)
    else:
        fail_lost_trials(study, say)
    line = queued_line(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if line:
        say(line)
    return study


def _say_start(prepared: Prepared, opened: OpenedStudy, s: SearchSettings, say: Say) -> int:
    """The lines a search starts its trials with; returns the distinct finished trials."""
    p, study = prepared, opened.study
    finished = n_distinct_finished(study)  # a trial that reused a result does not count
    remaining = s.n_trials - finished
    if is_shared(opened.storage):
        say(
            f"worker {opened.worker}"
            + (f" (index {s.worker_index})" if s.worker_index is not None else "")
            + f": sampler seed {opened.sampler_seed}; the study's total is {s.n_trials} "
            "finished trials"
        )
    dense_ms = p.table.model_ms if p.table else None
    say(
        f"study {study.study_name!r}: {finished} finished trials, {max(0, remaining)} to run; "
        f"dense: val accuracy {opened.dense_val_acc:.4f}, {p.prof.macs} macs, "
        f"{p.prof.n_params} params; "
        f"budget: {p.budget.describe(p.prof.macs, p.prof.n_params, dense_ms)}; "
        f"{len(p.space.layer_names)} searchable layers"
    )
    return finished


class _TaggedObjective:
    """Records which worker (``host:pid``) runs a trial in ``user_attrs["worker"]``."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], worker: str) -> None:
        self.objective = objective
        self.worker = worker

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr("worker", self.worker)
        return self.objective(trial)
