"""Many workers on one study in PostgreSQL: shared total, seeds once, heartbeats and retry.

No orphaned trials: a lost trial is failed with a reason and retried, a study whose creator
died before seeding gets its seeds once, the seed claim is exclusive under concurrency.

Every test creates its own database ``rankopt_test_<random>`` on the server at
127.0.0.1:5432 (user ``postgres``, trust auth) and drops it afterwards. The workers are real
``python -m rankopt search`` processes on a tiny digits CNN (``tests/rankopt_testmodels.py``) with
10-step proxy fine-tunes, so a trial takes well under a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rankopt.storage._attrs import is_repeat

pytestmark = pytest.mark.postgres

HOST, PORT = "127.0.0.1", 5432
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def _server_down_reason() -> str | None:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            pass
    except OSError as exc:
        return f"PostgreSQL server not reachable on {HOST}:{PORT} ({exc})"
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install 'rankopt[postgres]')"
    try:
        psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname="postgres").close()
    except Exception as exc:
        return f"PostgreSQL on {HOST}:{PORT} refuses user postgres: {str(exc).strip()}"
    return None


_DOWN = _server_down_reason()
if _DOWN is not None:
    pytestmark = [pytest.mark.postgres, pytest.mark.skip(reason=_DOWN)]


def _admin() -> object:
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database; dropped (connections terminated) after the test."""
    name = f"rankopt_test_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{HOST}:{PORT}/{name}"
    finally:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(TESTS_DIR))
    try:
        from rankopt_testmodels import train_digits_net
    finally:
        sys.path.remove(str(TESTS_DIR))
    return train_digits_net(tmp_path_factory.mktemp("weights") / "digits_net.pt", steps=200)


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["RANKOPT_CACHE_DIR"] = str(cache)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _search_args(url: str, weights: Path, study: str, n_trials: int, *extra: str) -> list[str]:
    return [
        "--model",
        "rankopt_testmodels:digits_net",
        "--weights",
        str(weights),
        "--data",
        "digits",
        "--methods",
        "tucker2,svd,linear_svd",
        "--storage",
        url,
        "--study-name",
        study,
        "--n-trials",
        str(n_trials),
        "--finetune-samples",
        "128",
        "--threads",
        "1",
        "--latency-runtime",
        "none",  # these tests are about workers; the latency cap has its own tests
        *extra,
    ]


def _start(
    args: list[str], tmp_path: Path, tag: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{tag}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rankopt", *args],
        env={**_env(tmp_path / "cache"), **(extra_env or {})},
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, log


def _wait(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 300) -> str:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker timed out; log:\n{log.read_text()[-4000:]}") from None
    return log.read_text()


def _load(url: str, study: str) -> object:
    from rankopt.studies import load_study

    return load_study(url, study)


def test_two_workers_share_the_total_and_seed_once(
    pg_url: str, tiny_weights: Path, tmp_path: Path
) -> None:
    from optuna.trial import TrialState

    n_trials = 12
    args = _search_args(pg_url, tiny_weights, "race", n_trials, "--finetune-steps", "10")
    procs = [
        _start(["search", *args, "--worker-index", str(i)], tmp_path, f"w{i}") for i in range(2)
    ]
    logs = [_wait(p, log) for p, log in procs]
    for (proc, _), text in zip(procs, logs, strict=True):
        assert proc.returncode == 0, text[-4000:]

    study = _load(pg_url, "race")
    trials = study.get_trials(deepcopy=False)  # type: ignore[attr-defined]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    done = [t for t in finished if not is_repeat(t)]  # repeats do not count
    # Each worker stops once the shared total is reached; the other's last trial may overrun.
    assert n_trials <= len(done) <= n_trials + 1, [t.state for t in trials]
    assert all(t.state != TrialState.RUNNING for t in trials)
    for t in done:
        assert t.user_attrs["plan"]["layers"], t.number
        assert "accuracy" in t.user_attrs and "macs" in t.user_attrs
    # Both workers ran trials (each records itself on the trials it runs).
    workers = Counter(t.user_attrs.get("worker") for t in done)
    assert len(workers) == 2, workers
    # Seeds enqueued exactly once, whoever won the creation race.
    seeded = study.user_attrs["seeded"]  # type: ignore[attr-defined]
    seeds = Counter(t.user_attrs["seed"] for t in trials if "seed" in t.user_attrs)
    assert seeds == Counter(seeded), (seeds, seeded)
    assert sum("enqueued" in text for text in logs) == 1, logs
    # Distinct sampler seeds per worker: no two sampled (non-seed) trials share parameters.
    sampled = [tuple(sorted(t.params.items())) for t in done if "seed" not in t.user_attrs]
    assert len(set(sampled)) == len(sampled)


def test_killed_worker_trial_fails_and_is_retried(
    pg_url: str, tiny_weights: Path, tmp_path: Path
) -> None:
    import optuna
    from optuna.trial import TrialState

    from rankopt.storage._open import resolve_url

    n_trials = 10
    # Both workers run BlockingDigitsNet (same weights as DigitsNet); only the victim has
    # the block file set: its third trial writes it from inside the fine-tune and blocks
    # there until the SIGKILL, so the kill certainly lands inside a trial.
    args = _search_args(
        pg_url,
        tiny_weights,
        "kill",
        n_trials,
        "--finetune-steps",
        "40",
        "--heartbeat-interval",
        "2",
    )
    args[args.index("rankopt_testmodels:digits_net")] = "rankopt_testmodels:blocking_digits_net"
    ready = tmp_path / "victim-blocked"
    victim, victim_log = _start(
        ["search", *args, "--worker-index", "0"],
        tmp_path,
        "victim",
        extra_env={"RANKOPT_TEST_BLOCK_FILE": str(ready)},
    )
    survivor, survivor_log = _start(["search", *args, "--worker-index", "1"], tmp_path, "survivor")
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert victim.poll() is None, victim_log.read_text()[-4000:]
        assert time.monotonic() < deadline, "the victim never blocked in a trial"
        time.sleep(0.05)  # polling for the file the victim writes, not racing with it
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL

    storage = optuna.storages.RDBStorage(resolve_url(pg_url))
    tag = f":{victim.pid}"
    study = optuna.load_study(study_name="kill", storage=storage)
    lost = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if str(t.user_attrs.get("worker", "")).endswith(tag)
    ]
    assert len(lost) == 1, [(t.number, t.state, t.user_attrs) for t in study.trials]
    killed_number = lost[0]

    text = _wait(survivor, survivor_log)
    assert survivor.returncode == 0, text[-4000:]
    study = optuna.load_study(study_name="kill", storage=storage)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    # No trial stays RUNNING: the survivor failed the lost one, mid-run or before exiting.
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert by_number[killed_number].state == TrialState.FAIL
    assert by_number[killed_number].user_attrs["fail_reason"] == (
        "worker lost: no heartbeat for 6 s"
    )
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    retry = retries[0]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) >= n_trials
    waiting = [t.number for t in trials if t.state == TrialState.WAITING]
    if waiting:  # left when the total was reached: reported, and run on a resume
        assert f"{len(waiting)} trial" in text and "queued" in text, text[-2000:]
        more = _search_args(
            pg_url, tiny_weights, "kill", len(completed) + len(waiting), "--finetune-steps", "10"
        )
        resumed, resumed_log = _start(["search", *more], tmp_path, "resumed")
        resumed_text = _wait(resumed, resumed_log)
        assert resumed.returncode == 0, resumed_text[-4000:]
        study = optuna.load_study(study_name="kill", storage=storage)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        assert all(by_number[n].state == TrialState.COMPLETE for n in waiting)
        retry = by_number[retry.number]
    assert retry.state == TrialState.COMPLETE
    # The retry runs the lost trial's parameters (those it had sampled before it died).
    lost_params = by_number[killed_number].params
    assert lost_params and {k: retry.params[k] for k in lost_params} == lost_params
    storage.engine.dispose()


def test_seed_claim_is_won_by_exactly_one_of_many_concurrent_workers(pg_url: str) -> None:
    import threading

    import optuna

    from rankopt.storage._claim import claim
    from rankopt.storage._open import resolve_url

    optuna.create_study(storage=resolve_url(pg_url), study_name="claims")
    n_workers, rounds = 6, 10
    storages = [optuna.storages.RDBStorage(resolve_url(pg_url)) for _ in range(n_workers)]
    studies = [optuna.load_study(study_name="claims", storage=st) for st in storages]
    barrier = threading.Barrier(n_workers)
    won: list[list[int]] = [[] for _ in range(rounds)]

    def worker(i: int) -> None:
        for r in range(rounds):
            barrier.wait()  # all workers insert the same claim at once
            if claim(studies[i], f"seeds-{r}", f"w{i}"):
                won[r].append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [len(w) for w in won] == [1] * rounds, won
    for st in storages:
        st.engine.dispose()


def test_creator_died_before_seeding_two_workers_seed_once(
    pg_url: str, tiny_weights: Path, tmp_path: Path
) -> None:
    import optuna
    from optuna.trial import TrialState

    from rankopt.storage._open import resolve_url

    # The creator died right after creating the study: no user attrs, no seeds.
    storage = optuna.storages.RDBStorage(resolve_url(pg_url))
    optuna.create_study(storage=storage, study_name="orphan", directions=["maximize", "minimize"])
    args = _search_args(pg_url, tiny_weights, "orphan", 8, "--finetune-steps", "10")
    procs = [
        _start(["search", *args, "--worker-index", str(i)], tmp_path, f"w{i}") for i in range(2)
    ]
    logs = [_wait(p, log) for p, log in procs]
    for (proc, _), text in zip(procs, logs, strict=True):
        assert proc.returncode == 0, text[-4000:]
    study = optuna.load_study(study_name="orphan", storage=storage)
    trials = study.get_trials(deepcopy=False)
    seeded = study.user_attrs["seeded"]
    assert seeded and study.user_attrs["fingerprint"]
    seeds = Counter(t.user_attrs["seed"] for t in trials if "seed" in t.user_attrs)
    assert seeds == Counter(seeded), (seeds, seeded)
    assert sum("enqueued" in text for text in logs) == 1, logs
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    storage.engine.dispose()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://postgres:secret@127.0.0.1:5999/x",
            "postgresql://postgres:***@127.0.0.1:5999/x",
        ),
        (
            f"postgresql://postgres:secret@{HOST}:{PORT}/rankopt_no_such_db",
            f"postgresql://postgres:***@{HOST}:{PORT}/rankopt_no_such_db",
        ),
    ],
    ids=["bad-port", "missing-database"],
)
@pytest.mark.parametrize("command", ["search", "front"])
def test_bad_url_is_one_clear_line(url: str, shown: str, command: str, tmp_path: Path) -> None:
    args = [command, "--storage", url, "--study-name", "s"]
    if command == "search":  # the storage must be tried before the model is built or trained
        args += ["--model", "rankopt_testmodels:digits_net", "--data", "digits"]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rankopt", *args],
        env=_env(tmp_path / "cache"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "secret" not in output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("rankopt: error: ") and shown in lines[0], lines[0]
    assert "Traceback" not in output
    assert time.monotonic() - started < 60


def test_workers_refuses_sqlite(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rankopt", "workers", "2", "--run-dir", str(tmp_path / "run")],
        env=_env(tmp_path / "cache"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "postgresql://" in proc.stderr and "SQLite" in proc.stderr
    assert not (tmp_path / "run" / "study.db").exists()


def test_workers_command_runs_the_total(pg_url: str, tiny_weights: Path, tmp_path: Path) -> None:
    from optuna.trial import TrialState

    n_trials = 8
    args = _search_args(pg_url, tiny_weights, "cmd", n_trials, "--finetune-steps", "10")
    args.remove("--threads")
    args.remove("1")
    proc = subprocess.run(
        [sys.executable, "-m", "rankopt", "workers", "2", *args],
        env=_env(tmp_path / "cache"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "[worker 0]" in proc.stderr and "[worker 1]" in proc.stderr
    assert "accuracy" in proc.stdout and "dense" in proc.stdout  # the front, printed once
    study = _load(pg_url, "cmd")
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # type: ignore[attr-defined]
    distinct = [t for t in done if not is_repeat(t)]
    assert n_trials <= len(distinct) <= n_trials + 1
    assert len({t.user_attrs["worker"] for t in done}) == 2


def test_profile_units_are_claimed_by_concurrent_workers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers on one PostgreSQL study measure different (layer, method) units of the
    sensitivity profile (each unit once), and both end with the same stored profile."""
    import threading
    import time

    import optuna
    import torch
    from rankopt_testmodels import TinyResNet
    from test_profile import _images, _space, _trial_data

    from rankopt.searching.objective import _sensitivity

    torch.manual_seed(0)
    model = TinyResNet().eval()
    from rankopt.storage import open_storage

    optuna.create_study(
        storage=open_storage(pg_url), study_name="prof", directions=["maximize", "minimize"]
    )
    real = _sensitivity._Measurer.measure
    measured: list[tuple[str, str]] = []
    lock = threading.Lock()

    def slow(self: Any, pair: Any) -> Any:
        time.sleep(0.3)  # long enough that both workers are measuring at once
        with lock:
            measured.append((threading.current_thread().name, pair.key))
        return real(self, pair)

    monkeypatch.setattr(_sensitivity._Measurer, "measure", slow)
    profiles: dict[str, Any] = {}

    space, data = _space(model), _trial_data(model, _images(32))  # fvcore's trace: one thread

    def work(name: str) -> None:
        study = optuna.load_study(study_name="prof", storage=open_storage(pg_url))
        profiles[name] = _sensitivity.study_sensitivity(
            study,
            model,
            space,
            data,
            lambda _: None,
            worker=name,
            poll_s=0.1,
        )

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in ("w0", "w1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    keys = [k for _, k in measured]
    assert len(keys) == len(set(keys)) == profiles["w0"].timing["n_pairs"]
    assert Counter(w for w, _ in measured).keys() == {"w0", "w1"}
    assert profiles["w0"].points == profiles["w1"].points


def test_profile_dead_worker_on_postgres_loses_only_its_unit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    import torch
    from rankopt_testmodels import TinyResNet
    from test_profile import dead_worker_then_another

    torch.manual_seed(0)
    from rankopt.storage import open_storage

    study = optuna.create_study(
        storage=open_storage(pg_url), study_name="dead", directions=["maximize", "minimize"]
    )
    by_b, total = dead_worker_then_another(study, TinyResNet().eval(), monkeypatch, units=4)
    assert by_b == total - 4
