"""``rankopt.search``: its signature and docstring; the work is in :mod:`._phases`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt._signals import ctrl_c_interrupts
from rankopt.evaluators import Device
from rankopt.searching.loop._inputs import Data
from rankopt.searching.loop._phases import open_study, prepare, run, seed
from rankopt.searching.loop._progress import progress_printer
from rankopt.searching.loop._settings import SearchSettings, setting_defaults
from rankopt.storage import quiet_optuna

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
    prune: bool = _D.prune,
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
    ``n_trials``, :func:`~rankopt.searching.seeding._seeding.seed_trials`) are enqueued
    first, once per study. The recommended plan (:func:`rankopt.export_plan`): the lowest
    validation loss.

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
        prune: Let trials also prune channels: per coupled channel group (torch-pruning's
            dependency graph: a conv, its BatchNorm, the next layer's inputs, every layer
            feeding the same residual sum) how many of its channels stay (its L2-most
            important ones), the ranks then allocated on the pruned model. Pruning keeps the
            op count, so it buys latency where decomposition adds ops; False: decomposition
            only.
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
    """:func:`search` once its settings are checked: the four phases of :mod:`._phases`."""
    if s.n_threads is not None:
        torch.set_num_threads(s.n_threads)
    say = progress_printer(progress)
    prepared = prepare(
        model,
        train_data,
        val_data,
        s,
        max_macs=max_macs,
        max_params=max_params,
        max_latency=max_latency,
        input_shape=input_shape,
        say=say,
    )
    opened = open_study(
        model,
        prepared,
        s,
        storage=storage,
        name=study_name or f"{model_name}-{data_name}",
        model_name=model_name,
        data_name=data_name,
        heartbeat_interval=heartbeat_interval,
        pruner=pruner,
    )
    sensitivity = seed(prepared, opened, s, say)
    return run(
        prepared, opened, s, sensitivity, model_name=model_name, callbacks=callbacks, say=say
    )
