"""The study in its storage: created or loaded, checked, seeded once, lost seeds requeued.

Seeding is idempotent and safe for any worker: whoever finds the study without its seeds
(the ``seeded`` user attr) enqueues them, under a database-level claim
(:mod:`rankopt.search._claim`), so that they are enqueued exactly once even when the
study's creator died before seeding and several workers then start together.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from rankopt._storage import is_sqlite_locked, sqlite_locked_error
from rankopt._trial_attrs import SEED_ATTR
from rankopt.errors import StorageError, first_line
from rankopt.search._claim import claim
from rankopt.search._seeding import Seed

__all__ = [
    "SEED_LEASE_S",
    "check_compatible",
    "create_or_load",
    "enqueue_seeds_once",
    "quiet_optuna",
    "requeue_interrupted_seeds",
]

SEED_LEASE_S = 60.0
"""Seconds after which a seed claim whose seeds never arrived is taken over (the claimer
died between claiming and marking the study ``seeded``; enqueuing takes well under 1 s)."""
_SEED_POLL_S = 0.2


def enqueue_seeds_once(
    study: optuna.Study,
    make_seeds: Callable[[], Sequence[Seed]],
    worker: str,
    say: Callable[[str], None],
    *,
    lease_s: float = SEED_LEASE_S,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Enqueue the study's seed trials unless they are (being) enqueued already.

    The study's ``seeded`` user attr (the seed names) marks them done. Without it, this
    worker computes the seeds (they need the study's sensitivity profile, so call this once
    the profile is there), claims the seeding in the database, enqueues them and sets
    ``seeded``. A worker that loses the claim waits for ``seeded`` (the winner enqueues in
    well under a second), so that the seeds run before sampled trials; a claim older than
    ``lease_s`` without ``seeded`` is taken over, enqueuing only the seeds still missing.
    A study already seeded gets its interrupted seeds re-queued instead
    (:func:`requeue_interrupted_seeds`).

    Returns:
        True when this worker enqueued the seeds.
    """
    if "seeded" in study.user_attrs:
        requeue_interrupted_seeds(study, say, worker)
        return False
    seeds = list(make_seeds())
    deadline = time.monotonic() + 2 * lease_s
    waited = False
    while not claim(study, "seeds", worker, lease_s=lease_s):
        if "seeded" in _fresh_user_attrs(study):
            return False
        if not waited:
            say("another worker is enqueuing the seed trials; waiting for them")
            waited = True
        if time.monotonic() > deadline:  # pragma: no cover - the claimer's clock runs late
            return False
        pause(_SEED_POLL_S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for one in seeds:
            # skip_if_exists: a claim taken over may find some seeds of the lost claimer.
            study.enqueue_trial(
                dict(one.params), user_attrs={SEED_ATTR: one.name}, skip_if_exists=True
            )
    study.set_user_attr("seeded", [one.name for one in seeds])
    say(f"enqueued {len(seeds)} seed trials: {', '.join(one.name for one in seeds)}")
    return True


def _fresh_user_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attrs read from the storage (not a cached copy)."""
    return dict(study._storage.get_study_user_attrs(study._study_id))


def requeue_interrupted_seeds(
    study: optuna.Study, say: Callable[[str], None], worker: str = ""
) -> None:
    """Enqueue again the seed trials a Ctrl-C failed, so a resumed study loses no seed.

    Each failed seed trial is re-queued once across workers (a claim per trial number).
    """
    trials = study.get_trials(deepcopy=False)
    alive = {t.user_attrs.get(SEED_ATTR) for t in trials if t.state != TrialState.FAIL}
    again = []
    for t in trials:
        seed_name = t.user_attrs.get(SEED_ATTR)
        reason = str(t.user_attrs.get("fail_reason", ""))
        if t.state != TrialState.FAIL or not seed_name or seed_name in alive:
            continue
        if not reason.startswith("interrupted"):
            continue
        if not claim(study, f"requeue:{t.number}", worker):
            continue
        params = dict(t.system_attrs.get("fixed_params", t.params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(params, user_attrs={SEED_ATTR: seed_name})
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
    creates the study; seeding is separate (:func:`enqueue_seeds_once`), so that any worker
    seeds a study whose creator died before it could.
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
