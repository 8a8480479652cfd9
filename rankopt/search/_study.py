"""The study in its storage: created once or loaded, checked, interrupted seeds requeued."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from rankopt._storage import is_sqlite_locked, sqlite_locked_error
from rankopt.errors import StorageError, first_line

__all__ = ["check_compatible", "create_or_load", "requeue_interrupted_seeds"]


def requeue_interrupted_seeds(study: optuna.Study, say: Callable[[str], None]) -> None:
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


def create_or_load(
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
    for key in ("fingerprint", "budget", "objectives"):
        old = study.user_attrs.get(key)
        if old is not None and old != attrs[key]:
            raise StorageError(
                f"study {name!r} in this storage was made with {key} = {old}, but this run "
                f"has {key} = {attrs[key]}; resume with the same settings or choose another "
                "--study-name"
            )
