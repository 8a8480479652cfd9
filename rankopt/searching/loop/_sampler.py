"""The Optuna sampler of a search and each worker's sampler seed."""

from __future__ import annotations

import os
import socket
import warnings
import zlib
from collections.abc import Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from rankopt.errors import RankoptError, UnknownNameError
from rankopt.searching.loop._local import LocalMovesSampler
from rankopt.storage import is_shared

__all__ = ["SAMPLERS", "default_pruner", "make_sampler", "worker_sampler_seed"]

SAMPLERS = ("tpe", "nsga2", "random")

TPE_MIN_STARTUP = 10
"""Finished trials before TPE proposes from its model (Optuna's default); before that its
trials are independent random draws. Measured on resnet8 / mnist5k at 5 % and 7 % of the
MACs (2 seeds each, 16 trials): TPE modelling from the 4 seed trials proposed plans that
scored 0.475 and 0.594 on average (proxy validation accuracy), below random draws in the
same space (0.628 and 0.707): 4-8 points do not describe 19 parameters."""


def worker_sampler_seed(
    seed: int, worker_index: int | None, storage: str | BaseStorage | None
) -> int:
    """The sampler seed of one worker: distinct per worker, so workers do not propose alike.

    With the same seed, every worker's sampler would propose the same parameters. With
    ``worker_index`` given the sampler seed is ``seed + worker_index`` (reproducible). Without
    it, a worker on a server storage (PostgreSQL, MySQL: possibly one of many) derives it from
    ``seed``, the host name and the process id; in memory or with SQLite (one process) it is
    ``seed``. Fine-tune seeds do not depend on the worker: every trial's proxy uses ``seed``.
    """
    if worker_index is not None:
        return (seed + worker_index) % 2**32
    if not is_shared(storage):
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
    """An Optuna sampler from a name (``tpe``, ``nsga2``, ``random``) or pass one through.

    ``tpe``: after ``n_startup_trials`` (the seed trials), local moves around the most
    accurate trials (:class:`~rankopt.searching.loop._local.LocalMovesSampler`) alternate with
    multivariate TPE, which draws at random until :data:`TPE_MIN_STARTUP` trials finished.
    """
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    constraints_func = _constraints if constraints else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "tpe":
            tpe = optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=max(n_startup_trials, TPE_MIN_STARTUP),
                constraints_func=constraints_func,
            )
            return LocalMovesSampler(tpe, n_startup_trials=n_startup_trials, seed=seed)
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


def default_pruner(single_objective: bool, finetune_steps: int) -> optuna.pruners.BasePruner:
    """The median pruner for single-objective studies, none otherwise.

    No pruning before half of the proxy steps: earlier, accuracy mostly says how fast the
    BatchNorm statistics recover, not how good the compressed network is.
    """
    if not single_objective:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=5, n_warmup_steps=max(1, finetune_steps // 2)
    )
