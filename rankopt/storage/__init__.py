"""Study storage: everything rankopt keeps in a database or on disk.

Opening Optuna storages (SQLite run directories, PostgreSQL; password masking, lock
handling, heartbeat settings), lost trials (heartbeats, ``fail_lost_trials``), the workers'
supervisor behind ``rankopt workers``, the "N trials queued" line, database claims (the
seed claim), creating or loading a study, the names of the trial attributes and metrics
that the search writes and the studies read, and the file cache (latency tables,
pretrained weights; atomic writes).

Names load on first use: the attribute names (:mod:`._attrs`) and the file cache are
light, the storages import optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankopt._lazy import lazy_names

if TYPE_CHECKING:
    from rankopt.storage._attrs import best_first, is_repeat, trial_accuracy
    from rankopt.storage._claim import claim, read_results, write_result
    from rankopt.storage._files import atomic_write, default_cache_dir
    from rankopt.storage._open import load_study, mask_url, open_storage
    from rankopt.storage._queue import queued_line
    from rankopt.storage._workers import run_workers

_LAZY: dict[str, str] = {
    "best_first": "rankopt.storage._attrs",
    "is_repeat": "rankopt.storage._attrs",
    "trial_accuracy": "rankopt.storage._attrs",
    "claim": "rankopt.storage._claim",
    "read_results": "rankopt.storage._claim",
    "write_result": "rankopt.storage._claim",
    "atomic_write": "rankopt.storage._files",
    "default_cache_dir": "rankopt.storage._files",
    "load_study": "rankopt.storage._open",
    "mask_url": "rankopt.storage._open",
    "open_storage": "rankopt.storage._open",
    "queued_line": "rankopt.storage._queue",
    "run_workers": "rankopt.storage._workers",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "atomic_write",
    "best_first",
    "claim",
    "default_cache_dir",
    "is_repeat",
    "load_study",
    "mask_url",
    "open_storage",
    "queued_line",
    "read_results",
    "run_workers",
    "trial_accuracy",
    "write_result",
]
