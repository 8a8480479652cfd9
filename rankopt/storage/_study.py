"""The study in its storage: created or loaded, checked for compatibility, Optuna quiet.

Seeding it once across workers is :mod:`rankopt.searching.seeding._enqueue` (under a claim of
:mod:`rankopt.storage._claim`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage

from rankopt.errors import StorageError, first_line
from rankopt.storage._open import is_sqlite_locked, sqlite_locked_error
from rankopt.storage._record import StudyRecord

__all__ = ["check_compatible", "create_or_load", "quiet_optuna"]


def create_or_load(
    name: str,
    storage: BaseStorage | None,
    directions: list[Literal["minimize", "maximize"]],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    metric_names: Sequence[str] | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study; when it exists (same command again, or another worker), load it.

    Creation is atomic in the storage, so among workers that start together exactly one
    creates the study; seeding is separate (:func:`enqueue_seeds_once`), so that any worker
    seeds a study whose creator died before it could.

    ``metric_names`` (the objectives, one per direction) are set with Optuna's
    ``set_metric_names`` when the study has none, on a new study and on one an earlier
    version made: optuna-dashboard and ``trials_dataframe`` then label the values
    ``accuracy`` / ``macs`` instead of "Objective 0 / 1".
    """
    study, created = _create_or_load(name, storage, directions, sampler, pruner)
    if metric_names is not None and study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))
    return study, created


def _create_or_load(
    name: str,
    storage: BaseStorage | None,
    directions: list[Literal["minimize", "maximize"]],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, bool]:
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
        raise StorageError(f"cannot create study {name!r}: {first_line(exc)}") from None
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


def check_compatible(study: optuna.Study, attrs: dict[str, Any], name: str) -> None:
    """Refuse to resume a study made for another model, budget or objectives.

    Compared as :class:`StudyRecord` fields, so a study an earlier version wrote (schema
    version 1: e.g. an empty ``max_latency_ms`` list in its budget) resumes.
    """
    stored = study.user_attrs  # one read: another worker may be writing the record now
    before = StudyRecord.from_user_attrs(stored)
    now = StudyRecord.from_user_attrs(attrs)
    same = {
        "fingerprint": before.fingerprint == now.fingerprint,
        "budget": before.budget_json() == now.budget_json(),
        "objectives": before.objectives == now.objectives,
    }
    for key, equal in same.items():
        old = stored.get(key)
        if old is not None and not equal:
            raise StorageError(
                f"study {name!r} in this storage was made with {key} = {old}, but this run "
                f"has {key} = {attrs[key]}; resume with the same settings or choose another "
                "--study-name"
            )


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs at WARNING or quieter while a search runs (no ``Trial N finished`` lines).

    The previous verbosity comes back afterwards; a quieter one (the CLI's ERROR) is kept.
    """
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
