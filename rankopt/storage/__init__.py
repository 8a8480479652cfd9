"""Study storage: everything rankopt keeps in a database or on disk.

Opening Optuna storages (SQLite run directories, PostgreSQL; password masking, lock
handling, heartbeat settings), lost trials (heartbeats, ``fail_lost_trials``), the workers'
supervisor behind ``rankopt workers``, the "N trials queued" line, database claims (the
seed claim), creating or loading a study, the study record (:class:`StudyRecord`: what
the search says about its study, typed, with a schema version), the names of the trial
attributes and metrics that the search writes and the studies read, and the file cache
(latency tables, pretrained weights; atomic writes).

Names load on first use: the attribute names (:mod:`._attrs`) and the file cache are
light, the storages import optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankopt._lazy import lazy_names

if TYPE_CHECKING:
    from rankopt.storage._attrs import (
        COUNT_METRICS,
        DUPLICATE_ATTR,
        LATENCY_RATIOS,
        PLAN_KEY_ATTR,
        PLAN_METRICS,
        SEED_ATTR,
        TABLE_METRICS,
        VAL_LOSS_ATTR,
        best_first,
        is_repeat,
        trial_accuracy,
    )
    from rankopt.storage._claim import claim, read_results, write_result
    from rankopt.storage._files import atomic_write, default_cache_dir
    from rankopt.storage._heartbeat import fail_lost_trials
    from rankopt.storage._open import (
        abbreviate,
        default_study_name,
        is_shared,
        load_study,
        mask_url,
        open_storage,
        run_dir_url,
        sqlite_lock_errors,
    )
    from rankopt.storage._queue import queued_line
    from rankopt.storage._record import STUDY_SCHEMA_VERSION, DenseReference, StudyRecord
    from rankopt.storage._study import check_compatible, create_or_load, quiet_optuna
    from rankopt.storage._workers import run_workers, threads_per_worker

_LAZY: dict[str, str] = {
    "COUNT_METRICS": "rankopt.storage._attrs",
    "DUPLICATE_ATTR": "rankopt.storage._attrs",
    "LATENCY_RATIOS": "rankopt.storage._attrs",
    "PLAN_KEY_ATTR": "rankopt.storage._attrs",
    "PLAN_METRICS": "rankopt.storage._attrs",
    "SEED_ATTR": "rankopt.storage._attrs",
    "TABLE_METRICS": "rankopt.storage._attrs",
    "VAL_LOSS_ATTR": "rankopt.storage._attrs",
    "fail_lost_trials": "rankopt.storage._heartbeat",
    "abbreviate": "rankopt.storage._open",
    "default_study_name": "rankopt.storage._open",
    "is_shared": "rankopt.storage._open",
    "run_dir_url": "rankopt.storage._open",
    "sqlite_lock_errors": "rankopt.storage._open",
    "check_compatible": "rankopt.storage._study",
    "create_or_load": "rankopt.storage._study",
    "quiet_optuna": "rankopt.storage._study",
    "threads_per_worker": "rankopt.storage._workers",
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
    "STUDY_SCHEMA_VERSION": "rankopt.storage._record",
    "DenseReference": "rankopt.storage._record",
    "StudyRecord": "rankopt.storage._record",
    "run_workers": "rankopt.storage._workers",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "COUNT_METRICS",
    "DUPLICATE_ATTR",
    "LATENCY_RATIOS",
    "PLAN_KEY_ATTR",
    "PLAN_METRICS",
    "SEED_ATTR",
    "STUDY_SCHEMA_VERSION",
    "TABLE_METRICS",
    "VAL_LOSS_ATTR",
    "DenseReference",
    "StudyRecord",
    "abbreviate",
    "atomic_write",
    "best_first",
    "check_compatible",
    "claim",
    "create_or_load",
    "default_cache_dir",
    "default_study_name",
    "fail_lost_trials",
    "is_repeat",
    "is_shared",
    "load_study",
    "mask_url",
    "open_storage",
    "queued_line",
    "quiet_optuna",
    "read_results",
    "run_dir_url",
    "run_workers",
    "sqlite_lock_errors",
    "threads_per_worker",
    "trial_accuracy",
    "write_result",
]
