"""Opening Optuna RDB storages (SQLite, PostgreSQL, MySQL) with clear errors.

Shared by ``rankopt.search`` (which creates studies) and ``rankopt.studies`` (which only
loads them), so that both name a bad URL the same way: one line, password masked.
"""

from __future__ import annotations

import importlib.util
import random
import re
import time
from typing import Any

import optuna

from rankopt.errors import StorageError

__all__ = ["connect_rdb", "mask_url", "resolve_url"]

CONNECT_TIMEOUT_S = 10
_CREATE_ATTEMPTS = 5


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
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def _reason(exc: BaseException, url: str) -> str:
    """The first line of ``exc`` without SQLAlchemy's ``(driver.Error)`` prefix or a password."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
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
