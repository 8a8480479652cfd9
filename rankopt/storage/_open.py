"""Optuna storages in one place: opening, password masking, SQLite locks, heartbeats, names.

Used by ``search`` (which creates studies), ``studies`` (which only loads them) and the
command line, so that all of them open a URL, name a bad one (one line, password masked)
and name a study the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from rankopt._optional import installed
from rankopt.errors import StorageError, first_line
from rankopt.storage._heartbeat import LostTrialCallback

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "abbreviate",
    "connect_rdb",
    "default_study_name",
    "grace_period_s",
    "is_shared",
    "is_sqlite_locked",
    "load_study",
    "mask_url",
    "open_storage",
    "resolve_url",
    "run_dir_url",
    "sqlite_lock_errors",
    "sqlite_locked_error",
    "sqlite_timeout_s",
]

CONNECT_TIMEOUT_S = 10
_CREATE_ATTEMPTS = 5
SQLITE_TIMEOUT_ENV = "RANKOPT_SQLITE_TIMEOUT_S"
DEFAULT_SQLITE_TIMEOUT_S = 60.0
DEFAULT_HEARTBEAT_INTERVAL_S = 10
_MAX_LISTED = 20


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``postgresql://user:***@host/db``)."""
    return re.sub(r"^([A-Za-z][\w+.-]*://[^:/@\s]*):\S*@", r"\1:***@", url)


def resolve_url(url: str) -> str:
    """Pick an installed driver for a driverless PostgreSQL URL.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; when only psycopg2 is installed
    (rankopt's ``postgres`` extra) the URL becomes ``postgresql+psycopg2://``. ``postgres://``
    is accepted as an alias of ``postgresql://``. Other URLs are returned unchanged.
    """
    match = re.match(r"^(postgres|postgresql)://", url)
    if match is None:
        return url
    rest = url[match.end() :]
    if not installed("psycopg") and installed("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def _reason(exc: BaseException, url: str) -> str:
    """The first line of ``exc`` without SQLAlchemy's ``(driver.Error)`` prefix or a password."""
    line = first_line(exc).strip()
    line = re.sub(r"^\([\w.]+\)\s*", "", line)
    line = line.replace(url, mask_url(url))
    password = re.match(r"^[A-Za-z][\w+.-]*://[^:/@\s]*:(\S*)@", url)
    if password and len(password.group(1)) >= 3:
        line = line.replace(password.group(1), "***")
    return line


def _engine_kwargs(url: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _probe(url: str, engine_kwargs: dict[str, Any]) -> None:
    """Connect once, so that a wrong URL or a server that is down fails here, clearly."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    kwargs = {k: v for k, v in engine_kwargs.items() if k != "pool_pre_ping"}
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, **kwargs)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def connect_rdb(url: str, *, what: str = "study storage", **storage_kwargs: Any) -> Any:
    """An :class:`optuna.storages.RDBStorage` for a server URL, connected up front.

    The connection is tried first (``connect_timeout`` 10 s for PostgreSQL), so a wrong
    host, port, database or password fails at once. Building the storage then creates
    Optuna's tables in an empty database; workers that start together race on that, so a
    failure there is retried a few times after a short random pause.

    Args:
        url: SQLAlchemy URL (``postgresql://user:password@host:5432/db``,
            ``mysql+pymysql://...``); a driverless PostgreSQL URL gets an installed driver.
        what: How the storage is named in error messages.
        **storage_kwargs: Passed to ``RDBStorage`` (heartbeats, callbacks).

    Returns:
        The storage.

    Raises:
        StorageError: one line naming the URL with its password masked, and why.
    """
    resolved = resolve_url(url)
    engine_kwargs = _engine_kwargs(resolved)
    try:
        _probe(resolved, engine_kwargs)
    except Exception as exc:  # sqlalchemy / driver errors vary by backend
        reason = _reason(exc, url)
        if re.search(r"database .* does not exist", reason):
            reason += " (create it first, e.g. createdb -h HOST -U USER DB)"
        raise StorageError(f"cannot open {what} {mask_url(url)}: {reason}") from None
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                resolved, engine_kwargs=engine_kwargs, **storage_kwargs
            )
        except Exception as exc:
            if attempt == _CREATE_ATTEMPTS - 1:
                raise StorageError(
                    f"cannot open {what} {mask_url(url)}: {_reason(exc, url)}"
                ) from None
            time.sleep(random.uniform(0.2, 0.6) * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- opening
def grace_period_s(heartbeat_interval_s: int) -> int:
    """Seconds without a heartbeat after which a RUNNING trial counts as lost: 3 intervals.

    Three missed heartbeats tolerate a worker whose heartbeat thread is briefly starved
    (a loaded machine, a long GIL-holding step) without failing a live trial, and still
    retry a killed worker's trial within half a minute at the default 10 s interval.
    """
    return 3 * heartbeat_interval_s


def is_shared(storage: str | BaseStorage | None) -> bool:
    """True when other processes may work on the same study: any storage but memory/SQLite."""
    if storage is None or isinstance(storage, optuna.storages.InMemoryStorage):
        return False
    if isinstance(storage, optuna.storages.RDBStorage):
        return not storage.url.startswith("sqlite")
    return not str(storage).startswith("sqlite")


def open_storage(
    storage: str | BaseStorage | None,
    *,
    heartbeat_interval: int | None = None,
    max_retry: int = 2,
    what: str = "study storage",
) -> BaseStorage | None:
    """Open an Optuna storage from a URL, connecting up front.

    SQLite URLs get a 60 s lock timeout. Other RDB URLs (PostgreSQL, MySQL) are connected
    once right away (a wrong URL fails here, not after the model is built) and get
    heartbeats: every ``heartbeat_interval`` seconds (default 10) the running trial records
    that its worker is alive; a RUNNING trial without a heartbeat for
    :func:`grace_period_s` (3 intervals) is marked failed (``fail_reason`` "worker lost: no
    heartbeat for N s") by the next worker that starts a trial or exits, and re-enqueued, at
    most ``max_retry`` times (:class:`rankopt.storage._heartbeat.LostTrialCallback`).

    Args:
        storage: URL, storage object (returned as is) or None (in memory).
        heartbeat_interval: Seconds between heartbeats; 0 turns heartbeats (and the retry of
            lost trials) off. Ignored for SQLite.
        max_retry: How often one lost trial is retried.
        what: How the storage is named in error messages.

    Raises:
        StorageError: the URL cannot be opened; one line, the password masked.
    """
    if storage is None or isinstance(storage, BaseStorage):
        return storage
    url = str(storage)
    interval = DEFAULT_HEARTBEAT_INTERVAL_S if heartbeat_interval is None else heartbeat_interval
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
        raise StorageError(
            f"heartbeat_interval = {heartbeat_interval!r}: give whole seconds >= 1, or 0 to "
            "turn heartbeats off"
        )
    if not url.startswith("sqlite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs: dict[str, Any] = {}
            if interval > 0:
                kwargs.update(
                    heartbeat_interval=interval,
                    grace_period=grace_period_s(interval),
                    heartbeat_stale_trial_callback=LostTrialCallback(
                        grace_period_s(interval), max_retry
                    ),
                )
            storage_obj: BaseStorage = connect_rdb(url, what=what, **kwargs)
        return storage_obj
    timeout_s = sqlite_timeout_s()
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": timeout_s}}
        )
    except Exception as exc:
        if is_sqlite_locked(exc):
            raise sqlite_locked_error(url) from None
        raise StorageError(
            f"cannot open {what} {mask_url(url)}: {mask_url(first_line(exc))}"
        ) from None


def sqlite_timeout_s() -> float:
    """Seconds a SQLite write waits for another process's lock: ``RANKOPT_SQLITE_TIMEOUT_S``
    (default 60).

    Raises:
        StorageError: the variable is set but not a number >= 0.
    """
    text = os.environ.get(SQLITE_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_SQLITE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise StorageError(
            f"{SQLITE_TIMEOUT_ENV} = {text!r}: give the lock timeout in seconds, a number >= 0"
        )
    return value


def is_sqlite_locked(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is SQLite's "database is locked"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "database is locked" in str(current) or "database table is locked" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def sqlite_locked_error(url: str) -> StorageError:
    """The error for a SQLite file another process holds locked past the timeout."""
    return StorageError(
        f"SQLite storage {mask_url(url)} is locked by another process (waited "
        f"{sqlite_timeout_s():g} s, {SQLITE_TIMEOUT_ENV}); SQLite allows one writer at a "
        "time: for concurrent workers use a PostgreSQL storage (--storage "
        "postgresql://user:password@host/db), or stop the other process"
    )


@contextlib.contextmanager
def sqlite_lock_errors(storage: BaseStorage | None) -> Iterator[None]:
    """Turn SQLite's "database is locked" raised inside the block into a StorageError."""
    try:
        yield
    except Exception as exc:
        url = getattr(storage, "url", None)
        if isinstance(url, str) and url.startswith("sqlite") and is_sqlite_locked(exc):
            raise sqlite_locked_error(url) from None
        raise


# --------------------------------------------------------------------------- names
def run_dir_url(run_dir: str | Path) -> str:
    """The SQLite URL of a run directory's study database, ``sqlite:///<run_dir>/study.db``."""
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


def default_study_name(
    model: str, data: str, max_macs: object | None, max_params: object | None
) -> str:
    """The study name ``rankopt search`` uses when none is given.

    ``<model>-<data>-<budget>`` from the base names of the model and data arguments and
    the budget as typed, ``%`` spelled ``pct``: ``resnet8-mnist5k-macs50pct``.
    """
    budget_tag = "-".join(
        f"{k}{str(v).replace('%', 'pct')}"
        for k, v in (("macs", max_macs), ("params", max_params))
        if v
    )
    return f"{Path(str(model)).name}-{Path(str(data)).name}-{budget_tag}"


# --------------------------------------------------------------------------- loading
def abbreviate(items: list[str], limit: int = _MAX_LISTED) -> str:
    """Comma-separated ``items``, the first ``limit`` then ``... (N more)``."""
    if not items:
        return "(none)"
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, ... ({len(items) - limit} more)"


def _normalise(storage: str) -> str:
    """Turn a plain file path into a SQLite URL; check that SQLite files exist."""
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    return storage


def _sqlite_path(url: str) -> Path | None:
    match = re.match(r"^sqlite(\+\w+)?:///(.*)$", url)
    if match is None:
        return None
    rest = match.group(2).split("?", 1)[0]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def _open_existing(url: str) -> BaseStorage:
    path = _sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(
            f"cannot open storage {mask_url(url)!r}: no such file {str(path)!r} "
            "(give the SQLite file that 'rankopt search' wrote)"
        )
    # Reading needs no heartbeats; server URLs are connected up front (one line with the
    # password masked when the server is down or the URL is wrong).
    opened = open_storage(url, heartbeat_interval=0, what="storage")
    assert opened is not None
    return opened


def load_study(storage: str, study_name: str | None = None) -> optuna.Study:
    """Load an existing study; never create one.

    Args:
        storage: An Optuna RDB URL (``sqlite:///rankopt.db``,
            ``postgresql://user:password@host/db``) or the path of a SQLite file.
        study_name: The study to load. May be omitted when the storage holds exactly one.

    Returns:
        The loaded study.

    Raises:
        StorageError: the storage cannot be opened (the URL is shown with its password
            masked), holds no study, does not hold ``study_name``, or holds several studies
            and no name was given; the message lists the study names it holds.
    """
    url = _normalise(storage)
    backend = _open_existing(url)
    try:
        names = sorted(optuna.get_all_study_names(storage=backend))
    except Exception as exc:
        raise StorageError(
            f"cannot list studies in {mask_url(url)!r}: {type(exc).__name__}: {exc}"
        ) from None
    if study_name is None:
        if len(names) == 1:
            study_name = names[0]
        elif not names:
            raise StorageError(f"storage {mask_url(url)!r} holds no study")
        else:
            raise StorageError(
                f"storage {mask_url(url)!r} holds {len(names)} studies; give a study name, "
                f"one of: {abbreviate(names)}"
            )
    elif study_name not in names:
        raise StorageError(
            f"no study named {study_name!r} in {mask_url(url)!r}; studies there: "
            f"{abbreviate(names)}"
        )
    return optuna.load_study(study_name=study_name, storage=backend)
