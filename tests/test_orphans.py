"""No orphaned trials (issue 16, item 5), on SQLite and in memory.

Seeds enqueued by any worker that finds the study without them (exactly once: a database
claim), lost RUNNING trials failed with a reason when a worker exits, WAITING trials shown
as queued and run first on resume. Staleness is produced by back-dating a trial's heartbeat
in the database, never by sleeping; the PostgreSQL races are in ``tests/test_postgres.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from torch import nn

from rankopt.cli import main
from rankopt.searching import search
from rankopt.searching.objective._duplicates import n_distinct_finished
from rankopt.storage._claim import claim
from rankopt.storage._heartbeat import LostTrialCallback, fail_lost_trials, heartbeat_ages_s
from rankopt.studies import queued_trials_line, report

FAST: dict[str, Any] = {"finetune_steps": 5, "finetune_samples": 128, "batch_size": 32}
FAST["rank_multiple"] = 1  # not ONNX Runtime's channel block (16): DigitsNet's layers are small
GRACE_S = 3


def _run(model: nn.Module, data: dict[str, Any], **kwargs: Any) -> optuna.Study:
    return search(
        model, data["train"], data["val"], model_name="digitsnet", max_macs=0.5, **FAST, **kwargs
    )


def _heartbeat_storage(url: str) -> RDBStorage:
    """A SQLite storage with heartbeats (rankopt turns them on for server storages only)."""
    return RDBStorage(
        url,
        heartbeat_interval=1,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=LostTrialCallback(GRACE_S, max_retry=2),
    )


def _set_heartbeat_age(storage: RDBStorage, trial_id: int, age_s: float) -> None:
    """Write the trial's last heartbeat ``age_s`` seconds before the database's now."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    storage.record_heartbeat(trial_id)
    with Session(storage.engine) as session:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        assert now is not None
        row = session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial_id).one()
        row.heartbeat = now.replace(tzinfo=None) - datetime.timedelta(seconds=age_s)
        session.commit()


def _add_running_copy(study: optuna.Study, of: optuna.trial.FrozenTrial) -> int:
    """A RUNNING trial with ``of``'s parameters, as a worker leaves it when it is killed."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING, params=of.params, distributions=of.distributions
        )
    )
    return study.get_trials(deepcopy=False)[-1]._trial_id


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_a_claim_is_held_once_and_taken_over_only_when_stale(tmp_path: Path, where: str) -> None:
    storage = f"sqlite:///{tmp_path / 'c.db'}" if where == "sqlite" else None
    study = optuna.create_study(storage=storage, study_name="c")
    assert claim(study, "seeds", "a", now_s=1000.0)
    assert not claim(study, "seeds", "b", now_s=1000.0)
    assert not claim(study, "seeds", "b", lease_s=60, now_s=1059.0)  # a's claim still fresh
    assert claim(study, "seeds", "b", lease_s=60, now_s=1061.0)  # a died: taken over
    assert not claim(study, "seeds", "c", lease_s=60, now_s=1062.0)  # b's claim is fresh
    assert claim(study, "requeue:3", "c")  # another key is another claim


def test_seeds_come_from_the_next_worker_when_the_creator_died(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # The creator died right after creating the study: no user attrs, no seeds.
    optuna.create_study(storage=url, study_name="orphan", directions=["maximize", "minimize"])
    lines: list[str] = []
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=8,
        storage=url,
        study_name="orphan",
        progress=lines.append,
    )
    seeded = study.user_attrs["seeded"]
    assert seeded and study.user_attrs["fingerprint"] and study.user_attrs["dense"]
    seeds = [t.user_attrs["seed"] for t in study.trials if "seed" in t.user_attrs]
    assert sorted(seeds) == sorted(seeded)
    first = sorted(study.trials, key=lambda t: t.number)[: len(seeded)]
    assert all("seed" in t.user_attrs for t in first), "the seeds ran first"
    assert sum(line.startswith("enqueued") for line in lines) == 1
    # Resuming the seeded study enqueues nothing again.
    lines.clear()
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=9,
        storage=url,
        study_name="orphan",
        progress=lines.append,
    )
    assert not [line for line in lines if "enqueued" in line], lines
    seeds = [t.user_attrs["seed"] for t in study.trials if "seed" in t.user_attrs]
    assert sorted(seeds) == sorted(seeded)


def test_lost_trial_is_failed_at_exit_shown_queued_and_run_first_on_resume(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = _heartbeat_storage(url)
    study = _run(trained_digits_net, digits_data, n_trials=4, storage=storage, study_name="lost")
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert n_distinct_finished(study) == 4
    # A worker was killed inside a trial: RUNNING, last heartbeat an hour ago.
    lost_id = _add_running_copy(study, done[-1])
    lost_number = study.get_trials(deepcopy=False)[-1].number
    _set_heartbeat_age(storage, lost_id, 3600)

    # A worker that finds the total reached fails it before it exits, and queues a retry.
    lines: list[str] = []
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=4,
        storage=storage,
        study_name="lost",
        progress=lines.append,
    )
    by_number = {t.number: t for t in study.get_trials()}
    lost = by_number[lost_number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["fail_reason"] == f"worker lost: no heartbeat for {GRACE_S} s"
    waiting = [t for t in by_number.values() if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["failed_trial"] == lost_number
    assert waiting[0].params == lost.params
    assert not [t for t in by_number.values() if t.state == TrialState.RUNNING]
    expected = (
        f"1 trial queued (retry of trial {lost_number}): it runs first when the study is "
        "resumed with a larger --n-trials"
    )
    assert queued_trials_line(study) == expected
    assert expected in lines

    # rankopt front and rankopt report show it.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["front", "--storage", url, "--study-name", "lost"]) == 0
    assert expected in out.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["front", "--storage", url, "--study-name", "lost", "--format", "csv"]) == 0
    assert expected in err.getvalue()
    page = report(optuna.load_study(study_name="lost", storage=url), tmp_path / "r.html")
    assert expected in page.read_text()

    # Resumed with a larger total, the retry runs first (Optuna pops WAITING trials first).
    study = _run(trained_digits_net, digits_data, n_trials=6, storage=storage, study_name="lost")
    retry = study.trials[waiting[0].number]
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    new = [t for t in study.trials if t.number > lost_number and t.number != retry.number]
    assert new and all(retry.datetime_start <= t.datetime_start for t in new)
    assert queued_trials_line(study) == ""


def test_exit_waits_for_a_trial_that_missed_heartbeats_and_leaves_live_ones(
    tmp_path: Path,
) -> None:
    storage = _heartbeat_storage(f"sqlite:///{tmp_path / 'w.db'}")
    study = optuna.create_study(storage=storage, study_name="w")
    template = optuna.trial.create_trial(
        params={"x": 1.0},
        distributions={"x": optuna.distributions.FloatDistribution(0, 2)},
        value=0.0,
    )
    study.add_trial(template)
    live = _add_running_copy(study, study.trials[-1])
    late = _add_running_copy(study, study.trials[-1])
    _set_heartbeat_age(storage, live, 0)
    _set_heartbeat_age(storage, late, 2)  # missed a beat, not stale yet (grace 3 s)
    assert len(heartbeat_ages_s(study)) == 2

    pauses: list[float] = []
    beats: list[float] = []

    def time_passes(seconds: float) -> None:  # the late trial's worker is gone for good
        pauses.append(seconds)
        beats.append(seconds)
        # the live one keeps beating: a newer heartbeat at every pause (SQLite's now() has
        # whole seconds, so the simulated time moves it forward explicitly)
        _set_heartbeat_age(storage, live, -len(beats))
        _set_heartbeat_age(storage, late, 2 + len(pauses))

    failed = fail_lost_trials(study, pause=time_passes)
    states = {t._trial_id: t for t in study.get_trials()}
    assert states[late].state == TrialState.FAIL
    assert states[late].user_attrs["fail_reason"].startswith("worker lost")
    assert failed == [states[late].number]
    assert states[live].state == TrialState.RUNNING
    assert 1 <= len(pauses) <= 3

    pauses.clear()  # only the live trial: watched until its next heartbeat, one pause
    assert fail_lost_trials(study, pause=time_passes) == []
    assert len(pauses) == 1
    assert {t._trial_id: t for t in study.get_trials()}[live].state == TrialState.RUNNING
