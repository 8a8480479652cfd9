"""Claims: one worker among many does a thing once per study, guarded by the database.

A claim is a study system attr ``rankopt:claim:<what>`` whose value names the worker and
the time it claimed. On RDB storages it is written with a plain ``INSERT`` into Optuna's
``study_system_attributes`` table, whose ``UNIQUE (study_id, key)`` constraint lets exactly
one of any number of concurrent inserts commit (PostgreSQL makes the others wait for the
first transaction and then fail with a unique violation; SQLite has one writer at a time).
Optuna's own ``set_study_system_attr`` cannot serve: it reads, then inserts or *updates*, so
two workers may both believe they wrote first.

A claim older than its lease whose work was never marked done (the claimer died in
between) may be taken over with a compare-and-swap ``UPDATE ... WHERE value_json = <old>``:
again exactly one taker wins.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import optuna

__all__ = ["claim", "claim_key", "read_results", "result_key", "write_result"]

_MEMORY_LOCK = threading.Lock()


def claim_key(what: str) -> str:
    """The study system attr key of the claim on ``what``."""
    return f"rankopt:claim:{what}"


def _rdb(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    backend = getattr(study._storage, "_backend", study._storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def claim(
    study: optuna.Study,
    what: str,
    worker: str,
    *,
    lease_s: float | None = None,
    now_s: float | None = None,
) -> bool:
    """Claim ``what`` on ``study`` for ``worker``; True for exactly one claimer.

    Args:
        study: The study.
        what: What is claimed (``"seeds"``, ``"requeue:12"``).
        worker: Who claims (``host:pid``), stored in the claim.
        lease_s: When given, a claim older than this many seconds (by the claimer's clock)
            is taken over; the caller only passes it when the claimed work is known not to
            be done. None: a claim is never taken over.
        now_s: The current Unix time (tests); default :func:`time.time`.

    Returns:
        True when this call holds the claim (new, or taken over from a stale claim).
    """
    now = time.time() if now_s is None else now_s
    value = json.dumps({"worker": worker, "time_s": now})
    key = claim_key(what)
    rdb = _rdb(study)
    if rdb is None:  # in memory (one process) or another storage: check and set, locally
        with _MEMORY_LOCK:
            old = study._storage.get_study_system_attrs(study._study_id).get(key)
            if old is not None and not _stale(json.dumps(old), lease_s, now):
                return False
            study._storage.set_study_system_attr(study._study_id, key, json.loads(value))
            return True
    from optuna.storages._rdb import models
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    model = models.StudySystemAttributeModel
    with Session(rdb.engine) as session:
        session.add(model(study_id=study._study_id, key=key, value_json=value))
        try:
            session.commit()
            return True
        except IntegrityError:
            session.rollback()
        if lease_s is None:
            return False
        old_json = (
            session.query(model.value_json)
            .filter(model.study_id == study._study_id, model.key == key)
            .scalar()
        )
        if old_json is None or not _stale(old_json, lease_s, now):
            return False
        taken = (
            session.query(model)
            .filter(
                model.study_id == study._study_id,
                model.key == key,
                model.value_json == old_json,
            )
            .update({model.value_json: value}, synchronize_session=False)
        )
        session.commit()
        return bool(taken == 1)


def _stale(value_json: str, lease_s: float | None, now_s: float) -> bool:
    if lease_s is None:
        return False
    try:
        held: Any = json.loads(value_json)
        since = float(held["time_s"])
    except (ValueError, TypeError, KeyError):
        return True
    return now_s - since > lease_s


def result_key(what: str) -> str:
    """The study system attr key of the stored result of the claimed ``what``."""
    return f"rankopt:result:{what}"


def write_result(study: optuna.Study, what: str, value: Any) -> None:
    """Store the result of the claimed work ``what`` (JSON-ready ``value``) on ``study``.

    Written once by the claim's holder; a worker that took a stale claim over and finishes
    the same work writes the same value.
    """
    study._storage.set_study_system_attr(study._study_id, result_key(what), value)


def read_results(study: optuna.Study, prefix: str) -> dict[str, Any]:
    """Stored results whose ``what`` starts with ``prefix``: ``{what without prefix: value}``."""
    head = result_key(prefix)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {k[len(head) :]: v for k, v in attrs.items() if k.startswith(head)}
