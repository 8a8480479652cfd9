"""Opening an existing study from an Optuna storage (never creating one)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from rankopt._rdb import connect_rdb, mask_url
from rankopt.errors import StorageError

__all__ = ["load_study", "mask_url"]

_MAX_LISTED = 20


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


def _open(url: str) -> optuna.storages.BaseStorage:
    path = _sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(
            f"cannot open storage {mask_url(url)!r}: no such file {str(path)!r} "
            "(give the SQLite file that 'rankopt search' wrote)"
        )
    if path is None and not url.startswith("sqlite"):
        # Server URLs (PostgreSQL, MySQL): connected up front, one line with the password
        # masked when the server is down or the URL is wrong (same as rankopt search).
        storage: optuna.storages.BaseStorage = connect_rdb(url)
        return storage
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # sqlalchemy / driver errors vary by backend
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(url, mask_url(url))
        raise StorageError(
            f"cannot open storage {mask_url(url)!r}: {type(exc).__name__}: {reason}"
        ) from None


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
    backend = _open(url)
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
