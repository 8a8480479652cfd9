"""Lost trials on server storages: failed with a reason, retried, never left RUNNING.

A worker that dies (SIGKILL, lost host) leaves its trial RUNNING. Optuna's heartbeats find
it: a RUNNING trial without a heartbeat for the grace period is failed by the next worker
that starts a trial (:func:`optuna.storages.fail_stale_trials`), and the storage's stale-trial
callback runs. Here that callback also records ``fail_reason`` ("worker lost: no heartbeat
for N s") and enqueues the retry; and a worker about to exit (:func:`fail_lost_trials`) runs
the same check, waiting a bounded time for a trial that already missed heartbeats to go stale,
so that no trial stays RUNNING after the last worker is gone.

Neutral ground: used by :mod:`rankopt.storage._open` (which builds the callback) and by
``search`` (which calls :func:`fail_lost_trials`).
"""

from __future__ import annotations

import datetime
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["LostTrialCallback", "fail_lost_trials", "heartbeat_ages_s", "lost_reason"]

_POLL_S = 0.5


def lost_reason(grace_period_s: int) -> str:
    """The ``fail_reason`` of a trial whose worker stopped sending heartbeats."""
    return f"worker lost: no heartbeat for {grace_period_s} s"


def _rdb(storage: Any) -> optuna.storages.RDBStorage | None:
    """The RDB storage behind ``storage`` (Optuna wraps it in a cache inside a study)."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def _write_trial_user_attr(
    storage: optuna.storages.RDBStorage, trial_id: int, key: str, value: Any
) -> None:
    """Set a user attr on a trial, finished or not (Optuna's API refuses finished trials).

    Written straight into Optuna's ``trial_user_attributes`` table, one row per key.
    """
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    with Session(storage.engine) as session:
        row = (
            session.query(models.TrialUserAttributeModel)
            .filter_by(trial_id=trial_id, key=key)
            .one_or_none()
        )
        if row is None:
            session.add(
                models.TrialUserAttributeModel(
                    trial_id=trial_id, key=key, value_json=json.dumps(value)
                )
            )
        else:
            row.value_json = json.dumps(value)
        session.commit()


class LostTrialCallback:
    """Stale-trial callback: record ``fail_reason``, then enqueue a retry.

    Args:
        grace_period_s: Seconds without a heartbeat after which a trial counts as lost.
        max_retry: How often one lost trial is retried
            (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`).
    """

    def __init__(self, grace_period_s: int, max_retry: int) -> None:
        self.grace_period_s = grace_period_s
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        rdb = _rdb(study._storage)
        if rdb is not None:
            _write_trial_user_attr(
                rdb, trial._trial_id, "fail_reason", lost_reason(self.grace_period_s)
            )
        self.retry(study, trial)


def _heartbeats(study: optuna.Study) -> tuple[datetime.datetime, dict[int, datetime.datetime]]:
    """The database's ``now()`` and the last heartbeat of each RUNNING trial that has one,
    by trial number (naive, the database's clock); no rows without heartbeats."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    rdb = _rdb(study._storage)
    if rdb is None or rdb.heartbeat_interval is None:
        return datetime.datetime.min, {}
    with Session(rdb.engine) as session:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = (
            session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study._study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
    assert now is not None
    return now.replace(tzinfo=None), {int(n): beat.replace(tzinfo=None) for n, beat in rows}


def heartbeat_times(study: optuna.Study) -> dict[int, datetime.datetime]:
    """Time of the last heartbeat of each RUNNING trial that has one, by trial number
    (the database's clock, naive)."""
    return _heartbeats(study)[1]


def heartbeat_ages_s(study: optuna.Study) -> dict[int, float]:
    """Seconds since the last heartbeat of each RUNNING trial that has one, by trial number.

    Measured on the database's clock (heartbeats are written with its ``now()``). Empty for
    storages without heartbeats.
    """
    now, beats = _heartbeats(study)
    return {n: (now - beat).total_seconds() for n, beat in beats.items()}


def fail_lost_trials(
    study: optuna.Study,
    say: Callable[[str], None] = lambda _: None,
    *,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> list[int]:
    """Before a worker exits: fail every RUNNING trial whose heartbeat went stale.

    Every RUNNING trial is watched until it is shown alive (a heartbeat newer than when the
    watch began: its worker will finish it), leaves RUNNING, or goes stale and is failed; at
    most one grace period plus two intervals. A worker killed a moment before this one
    exits still has a recent heartbeat, and once this worker exits nobody else may be left
    to fail its trial. Failed trials get ``fail_reason`` and a retry (WAITING) from
    the storage's stale-trial callback.

    Args:
        study: The study (on an RDB storage with heartbeats; otherwise nothing happens).
        say: Progress lines.
        clock: Monotonic seconds (tests may replace it).
        pause: Sleep (tests may replace it).

    Returns:
        Numbers of the trials this call failed.
    """
    rdb = _rdb(study._storage)
    if rdb is None or rdb.heartbeat_interval is None:
        return []
    interval = float(rdb.heartbeat_interval)
    grace = float(rdb.grace_period if rdb.grace_period is not None else 2 * interval)
    running_before = {
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    deadline = clock() + grace + 2 * interval
    told = False
    first = heartbeat_times(study)
    watched = set(first)  # RUNNING trials not yet shown to be alive
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        beats = heartbeat_times(study)
        # A heartbeat newer than when we started watching: its worker is alive and will
        # finish the trial itself. Whatever else is still RUNNING may belong to a worker
        # that died a moment ago (its last heartbeat still recent): wait until it is stale.
        alive = {n for n, beat in beats.items() if n in first and beat > first[n]}
        watched = {n for n in watched if n in beats and n not in alive}
        if not watched or clock() > deadline:
            break
        if not told:
            say(
                f"waiting up to {grace + 2 * interval:g} s for running trial(s) "
                f"{sorted(watched)}: failed and re-queued if their worker is gone"
            )
            told = True
        pause(min(_POLL_S, interval))
    failed = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.number in running_before
        and str(t.user_attrs.get("fail_reason", "")).startswith("worker lost")
    ]
    if failed:
        say(f"failed lost trial(s) {failed} (no heartbeat for {grace:g} s); retries queued")
    return failed
