"""Reliability: bad input, faults and long runs lose nothing and say clearly what went wrong.

Property tests on plan JSON and budget strings; unsupported layers left dense with a
reason; Ctrl-C, diverging CP, locked SQLite and unwritable run directories; bounded memory
over many trials; byte-identical plans from two runs with the same seed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import rankopt_testmodels
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from torch import nn

from rankopt.errors import (
    DataError,
    InvalidPlanError,
    ModelError,
    RankoptError,
    SettingsError,
    StorageError,
    UnknownNameError,
)
from rankopt.evaluators import profile
from rankopt.plan import CompressionPlan, apply_plan
from rankopt.searching import parse_budget, search
from rankopt.searching.objective._duplicates import n_distinct_finished
from rankopt.spaces import cache_info, clear_cache, set_cache_limit
from rankopt.studies import export_plan, load_study, select_trial

TESTS = Path(__file__).resolve().parent
SHAPE = (1, 8, 8)
FAST: dict[str, Any] = {"finetune_steps": 6, "finetune_samples": 128, "batch_size": 32}
FAST["rank_multiple"] = 1  # not ONNX Runtime's channel block (16): the test nets are small


def _run(model: nn.Module, data: dict[str, Any], **kwargs: Any) -> optuna.Study:
    params = {**FAST, **kwargs}
    return search(model, data["train"], data["val"], model_name="net", **params)


# --------------------------------------------------------------------------- property tests
_PLAN: dict[str, Any] = {
    "schema_version": 1,
    "model": {"name": "net", "fingerprint": "0123456789abcdef"},
    "input_shape": [1, 8, 8],
    "layers": [
        {"layer": "conv2", "method": "tucker2", "ranks": {"r_in": 4, "r_out": 8}},
        {"layer": "fc", "method": "keep", "ranks": {}, "options": {}, "weight_shape": [10, 32]},
    ],
    "metrics": {"accuracy": 0.9},
    "provenance": {"study": "s", "trial": 3},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
plan_keys = st.sampled_from(
    [
        "schema_version",
        "model",
        "input_shape",
        "layers",
        "metrics",
        "provenance",
        "name",
        "fingerprint",
        "layer",
        "method",
        "ranks",
        "options",
        "weight_shape",
        "r_in",
    ]
)


def _parses_or_raises_plan_error(data: Any) -> None:
    try:
        plan = CompressionPlan.from_dict(data)
    except InvalidPlanError:
        return
    # a plan that parses writes standard JSON that reads back to the same plan text
    text = plan.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in plan JSON"))
    assert CompressionPlan.from_json(text).to_json() == text


def _mutate(data: Any, path: list[Any], value: Any) -> Any:
    """``data`` with the node at ``path`` (keys / indices, clipped to what exists) replaced."""
    out = copy.deepcopy(data)
    node = out
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)] if isinstance(step, int) else step
            if key not in node or not isinstance(node[key], dict | list):
                break
            node = node[key]
        elif isinstance(node, list) and node:
            child = node[step % len(node)] if isinstance(step, int) else None
            if not isinstance(child, dict | list):
                break
            node = child
    last = path[-1] if path else "schema_version"
    if isinstance(node, dict):
        key = sorted(node)[last % len(node)] if isinstance(last, int) and node else last
        node[str(key)] = value
    elif isinstance(node, list) and node:
        node[(last if isinstance(last, int) else 0) % len(node)] = value
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_plan_from_dict_on_arbitrary_values(data: Any) -> None:
    _parses_or_raises_plan_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 7) | plan_keys, min_size=1, max_size=4), json_values)
def test_plan_from_dict_on_mutated_valid_plans(path: list[Any], value: Any) -> None:
    _parses_or_raises_plan_error(_mutate(_PLAN, path, value))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_plan_from_json_on_arbitrary_text(text: str) -> None:
    with contextlib.suppress(InvalidPlanError):
        CompressionPlan.from_json(text)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_plan_from_json_on_json_text_of_arbitrary_values(data: Any) -> None:
    try:
        text = json.dumps(data)
    except ValueError:  # a float json cannot write
        return
    with contextlib.suppress(InvalidPlanError):
        CompressionPlan.from_json(text)


def _check_budget_result(value: Any) -> None:
    dense = 123_456
    try:
        result = parse_budget(value, dense)
    except RankoptError as exc:
        assert "max_macs" in str(exc) and "allowed" in str(exc), str(exc)
        return
    if value is None:
        assert result is None
        return
    assert isinstance(result, int) and result >= 1, (value, result)


budget_text = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A\s*-?[0-9]{0,6}(\.[0-9]{0,4})?(e[+-]?[0-9]{1,4})?\s*[%kmgKMG]?\s*\Z"),
)


@settings(max_examples=250, deadline=None)
@given(budget_text)
def test_parse_budget_on_arbitrary_text(text: str) -> None:
    _check_budget_result(text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.lists(st.integers(), max_size=2),
        st.binary(max_size=4),
    )
)
def test_parse_budget_on_arbitrary_values(value: Any) -> None:
    _check_budget_result(value)


def test_parse_budget_known_bad_values() -> None:
    for value in ("50 %", "-1", "abc", 0, "0", "", "%", "1e999", float("nan"), -0.5, "5x"):
        with pytest.raises(RankoptError, match=r"max_macs = .*allowed"):
            parse_budget(value, 1000)
    assert parse_budget("50%", 1000) == 500
    assert parse_budget(" 12K ", 10) == 12_000


# --------------------------------------------------------------------------- API bad input
def test_api_entry_points_raise_project_errors(tmp_path: Path) -> None:
    from rankopt.data import load_data
    from rankopt.models import get_pretrained, load_user_model

    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: load_data("nosuchdata"), UnknownNameError, "digits"),
        (lambda: load_data(tmp_path), DataError, str(tmp_path)),
        (lambda: get_pretrained("resnet99", "digits"), UnknownNameError, "resnet8"),
        (lambda: get_pretrained("resnet8", "nosuchdata"), UnknownNameError, "digits"),
        (lambda: load_user_model("nosuchmodel"), ModelError, "nosuchmodel"),
        (
            lambda: load_user_model("rankopt_testmodels:small_net", weights=tmp_path / "x.pt"),
            ModelError,
            "does not exist",
        ),
        (
            lambda: load_user_model("rankopt_testmodels:small_net", num_classes=0),
            ModelError,
            "num_classes",
        ),
        (lambda: load_study(str(tmp_path / "none.db")), StorageError, "no such file"),
        (lambda: profile(rankopt_testmodels.flat_net(), (1, 12, 12)), ModelError, "cannot run"),
        (lambda: profile(rankopt_testmodels.flat_net(), (1, 0, 8)), ModelError, "positive"),
        (lambda: CompressionPlan.load(tmp_path / "none.json"), InvalidPlanError, "none.json"),
        (
            lambda: CompressionPlan.from_dict(_PLAN).save(tmp_path / "no" / "plan.json"),
            InvalidPlanError,
            "cannot write plan file",
        ),
        (
            lambda: apply_plan(rankopt_testmodels.small_net(), CompressionPlan.from_dict(_PLAN)),
            InvalidPlanError,
            "fingerprint",
        ),
    ]
    for call, error, fragment in cases:
        with pytest.raises(error) as info:
            call()
        assert isinstance(info.value, RankoptError)
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -0.1}, r"lr = -0.1 must be a positive"),
        ({"lr": float("nan")}, r"lr = nan must be a positive"),
        ({"temperature": 0}, r"temperature = 0 must be a positive"),
        ({"distill_weight": 1.5}, r"distill_weight = 1.5 must be in \[0, 1\]"),
        ({"seed": -1}, r"seed = -1 must be an integer in \[0, 4294967295\]"),
        ({"n_threads": 0}, r"n_threads = 0 must be an integer >= 1"),
        ({"methods": []}, r"methods = \[\]: give at least one method.*tucker2"),
        ({"finetune_steps": -2}, r"finetune_steps = -2 must be an integer >= 0"),
        ({"timeout": float("inf")}, r"timeout = inf must be a positive"),
    ],
)
def test_search_rejects_out_of_range_settings(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(SettingsError, match=match):
        _run(trained_digits_net, digits_data, n_trials=1, **kwargs)


def test_labels_beyond_the_model_outputs_are_a_data_error(
    digits_data: dict[str, Any],
) -> None:
    model = rankopt_testmodels.five_class_net()
    with pytest.raises(DataError, match=r"0\.\.9 \(10 classes\) but the model has 5 outputs"):
        _run(model, digits_data, n_trials=1, storage=optuna.storages.InMemoryStorage())


# --------------------------------------------------------------------------- unsupported layers
def test_unsupported_layers_stay_dense_and_the_search_runs_on_the_rest(
    digits_data: dict[str, Any],
) -> None:
    model = rankopt_testmodels.mixed_net().eval()
    prof = profile(model, SHAPE)
    reasons = {info.name: info.reason for info in prof.ineligible_layers}
    for name, reason in rankopt_testmodels.MIXED_INELIGIBLE.items():
        assert reason in reasons[name], (name, reasons.get(name))
    assert [info.name for info in prof.eligible_layers] == ["conv1", "conv2", "conv3", "fc"]

    study = _run(model, digits_data, n_trials=3, max_macs=0.7, sampler="random")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert n_distinct_finished(study) == 3
    # the classifier (10 outputs) is never factorised below its class count, which on a
    # 32 -> 10 Linear is never cheaper than dense: it is eligible but not searched
    assert study.user_attrs["settings"]["eligible_layers"] == ["conv1", "conv2", "conv3"]
    decomposed = set()
    for t in done:
        plan = CompressionPlan.from_dict(t.user_attrs["plan"])
        for lp in plan.layers:
            if lp.method != "keep":
                assert lp.layer not in reasons, lp
                decomposed.add(lp.layer)
        compressed = apply_plan(model, plan)
        out = compressed(digits_data["val"][0][:4])
        assert out.shape == (4, 10) and bool(torch.isfinite(out).all())
        for name in reasons:  # the unsupported modules are the very same objects' copies
            assert type(compressed.get_submodule(name)) is type(model.get_submodule(name))
    assert decomposed, "no eligible layer was ever decomposed"


# --------------------------------------------------------------------------- faults
def test_diverging_cp_fails_that_trial_with_its_reason(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankopt.spaces import _cp

    def diverged(x: Any, rank: int, init: str, seed: int, n_iter: int) -> Any:
        k, t, s = x.shape
        return tuple(torch.full((n, rank), float("nan"), dtype=torch.float64) for n in (t, s, k))

    monkeypatch.setattr(_cp, "_als", diverged)
    clear_cache()
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=3,
        max_macs=0.6,
        methods=["cp"],
        sampler="random",
        seed_with_vbmf=False,
    )
    clear_cache()
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed, "no trial used CP below full rank"
    for t in failed:
        reason = t.user_attrs["fail_reason"]
        assert "decomposition failed" in reason and "CP-ALS" in reason, reason
        assert "non-finite factors" in reason, reason
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        for lp in t.user_attrs["plan"]["layers"]:  # only exact (full-rank) CP can succeed
            assert lp["method"] == "keep" or lp["ranks"]["r"] >= _full_cp_rank(lp), lp


def _full_cp_rank(lp: dict[str, Any]) -> int:
    t, s, kh, kw = lp["weight_shape"]
    return min(t, s) * kh * kw


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_sqlite_locked_by_another_process_points_at_postgresql(
    trained_digits_net: nn.Module,
    digits_data: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANKOPT_SQLITE_TIMEOUT_S", "0.2")
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    locks: list[sqlite3.Connection] = []

    def lock_after_first(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not locks:
            locks.append(_hold_exclusive_lock(db))

    started = time.perf_counter()
    with pytest.raises(StorageError) as info:
        _run(trained_digits_net, digits_data, n_trials=4, storage=url, callbacks=[lock_after_first])
    message = str(info.value)
    assert "is locked by another process" in message and "PostgreSQL" in message, message
    assert "RANKOPT_SQLITE_TIMEOUT_S" in message
    assert time.perf_counter() - started < 60
    locks[0].execute("ROLLBACK")
    locks[0].close()
    study = optuna.load_study(study_name="net-data", storage=url)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1  # the trial before the lock

    # locked before the search starts: the same message, before any trial
    lock = _hold_exclusive_lock(db)
    try:
        with pytest.raises(StorageError, match=r"is locked by another process.*PostgreSQL"):
            _run(trained_digits_net, digits_data, n_trials=4, storage=url)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # the lock released, the same call resumes the study
    study = _run(trained_digits_net, digits_data, n_trials=2, storage=url)
    assert n_distinct_finished(study) == 2


def test_bad_sqlite_timeout_variable_is_a_storage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rankopt.searching import open_storage

    monkeypatch.setenv("RANKOPT_SQLITE_TIMEOUT_S", "soon")
    with pytest.raises(StorageError, match="RANKOPT_SQLITE_TIMEOUT_S = 'soon'"):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}")


def test_locked_sqlite_on_the_command_line_is_one_line(
    trained_digits_net: nn.Module,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rankopt.cli import main

    data, weights = _cli_files(tmp_path)
    monkeypatch.setenv("RANKOPT_SQLITE_TIMEOUT_S", "0.2")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sqlite3.connect(run_dir / "study.db").close()
    lock = _hold_exclusive_lock(run_dir / "study.db")
    try:
        rc = main(_search_argv(data, weights, run_dir, n_trials=2))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rankopt: error: ") and "PostgreSQL" in last, err


def _cli_files(tmp_path: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    data = tmp_path / "digits.pt"
    torch.save((images, torch.tensor(bunch.target, dtype=torch.int64)), data)
    weights = tmp_path / "small_net.pt"
    torch.save(rankopt_testmodels.small_net().state_dict(), weights)
    return data, weights


def _search_argv(
    data: Path,
    weights: Path,
    run_dir: Path,
    *,
    n_trials: int,
    steps: int = 4,
    model: str = "rankopt_testmodels:small_net",
) -> list[str]:
    return [
        "search",
        "--model",
        model,
        "--weights",
        str(weights),
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--study-name",
        "s",
        "--n-trials",
        str(n_trials),
        "--finetune-steps",
        str(steps),
        "--finetune-samples",
        "64",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--sampler",
        "random",
        # a subprocess among them: no latency table (conftest's cost model is in-process)
        "--latency-runtime",
        "none",
    ]


def test_sigint_during_a_trial_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data, weights = _cli_files(tmp_path)
    run_dir = tmp_path / "run"
    ready = tmp_path / "trial-in-progress"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "RANKOPT_CACHE_DIR": str(tmp_path / "cache"),
        # the model blocks in the second trial's fine-tune after writing this file
        rankopt_testmodels.READY_FILE_ENV: str(ready),
    }
    argv = [sys.executable, "-m", "rankopt"]
    argv += _search_argv(
        # 8 trials: 2 seed trials (seeds are at most a quarter), the second one interrupted
        data,
        weights,
        run_dir,
        n_trials=8,
        model="rankopt_testmodels:interruptible_small_net",
    )
    with (tmp_path / "stderr.txt").open("w+") as err_file:
        # The culprit first: this process ignores SIGINT while it starts the search (as a
        # library, an earlier test, or a shell starting a background job may leave it), and
        # the child inherits SIG_IGN, so Python would not install its Ctrl-C handler there.
        with _sigint_ignored():
            proc = subprocess.Popen(
                argv, env=env, stderr=err_file, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path
            )
        try:
            deadline = time.monotonic() + 300
            while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if not ready.exists():
                proc.kill()
                proc.wait()
                err_file.seek(0)
                pytest.fail("no trial reached its second fine-tune:\n" + err_file.read())
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err_file.seek(0)
        err = err_file.read()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "run the same command again to resume" in err, err

    url = f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.load_study(study_name="s", storage=url)
    kept = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert 0 in kept
    assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"], failed
    assert not study.get_trials(states=(TrialState.RUNNING,))
    lost_seed = failed[0].user_attrs["seed"]  # trials 0.. are the enqueued seed trials

    # the same command resumes (run in-process: it saves a second interpreter start; the
    # model does not block here, the test process has no RANKOPT_TEST_READY_FILE)
    from rankopt.cli import main

    monkeypatch.delenv(rankopt_testmodels.READY_FILE_ENV, raising=False)
    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(argv[3:]) == 0
    resumed_err = capsys.readouterr().err
    study = optuna.load_study(study_name="s", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert n_distinct_finished(study) == 8
    assert {t.number: t.values for t in complete if t.number in kept} == kept
    assert "enqueued again the seed trials interrupted before: " + lost_seed in resumed_err
    waiting = study.get_trials(states=(TrialState.WAITING, TrialState.COMPLETE))
    assert lost_seed in {t.user_attrs.get("seed") for t in waiting}
    assert not [p for p in run_dir.iterdir() if p.name != "study.db"], list(run_dir.iterdir())


@contextlib.contextmanager
def _sigint_ignored() -> Any:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "culprit", [signal.SIG_IGN, lambda signum, frame: None], ids=["ignored", "swallowed"]
)
def test_ctrl_c_stops_a_search_whatever_handler_ran_before(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], culprit: Any
) -> None:
    """An earlier caller left SIGINT ignored, or handled without raising: a Ctrl-C during
    the search still raises KeyboardInterrupt in it, and the caller's handler is back after."""
    done: list[int] = []

    def ctrl_c_after_the_first_trial(study: optuna.Study, trial: Any) -> None:
        done.append(trial.number)
        if len(done) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the KeyboardInterrupt arrives here (Python runs handlers soon)

    previous = signal.signal(signal.SIGINT, culprit)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(
                trained_digits_net,
                digits_data,
                n_trials=4,
                seed_with_vbmf=False,
                callbacks=[ctrl_c_after_the_first_trial],
            )
        assert signal.getsignal(signal.SIGINT) is culprit
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == [0]


# --------------------------------------------------------------------------- long runs
def _rss_bytes() -> int:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        text = Path("/proc/self/status").read_text()
        line = next(ln for ln in text.splitlines() if ln.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


def test_factor_cache_stays_within_its_limit(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    limit = 64 * 1024
    set_cache_limit(limit)
    try:
        clear_cache()
        _run(
            trained_digits_net,
            digits_data,
            n_trials=6,
            finetune_steps=0,
            sampler="random",
            methods=["tucker2", "svd", "linear_svd"],
            seed_with_vbmf=False,
        )
        info = cache_info()
        assert 0 < info["stored_bytes"] <= limit and info["limit_bytes"] == limit, info
    finally:
        set_cache_limit(256 * 2**20)
        clear_cache()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_trials(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Path
) -> None:
    import gc

    rss: dict[int, int] = {}

    def measure(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # finished: complete, or stopped early by the proxy pruner (more often once trials
        # also prune channels); the pruned views the space keeps are bounded (MAX_VIEWS)
        done = (TrialState.COMPLETE, TrialState.PRUNED)
        n = len(study.get_trials(deepcopy=False, states=done))
        if n in (10, 60) and n not in rss:
            gc.collect()
            rss[n] = _rss_bytes()

    _run(
        trained_digits_net,
        digits_data,
        n_trials=60,
        finetune_steps=4,
        sampler="random",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        callbacks=[measure],
    )
    assert set(rss) == {10, 60}
    assert rss[60] <= 1.15 * rss[10], f"RSS after 10 trials {rss[10]}, after 60 {rss[60]}"
    assert cache_info()["stored_bytes"] <= cache_info()["limit_bytes"]


def test_no_temporary_files_are_left_behind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from rankopt.cli import main

    data, weights = _cli_files(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(_search_argv(data, weights, run_dir, n_trials=2)) == 0
    plan = tmp_path / "plan.json"
    url = f"sqlite:///{run_dir / 'study.db'}"
    assert main(["export", "--storage", url, "--trial", "0", "--out", str(plan)]) == 0
    assert main(["report", "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in run_dir.iterdir()) == ["study.db"]
    assert list(scratch.iterdir()) == []


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_plans(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    texts = []
    for _ in range(2):
        clear_cache()
        study = _run(trained_digits_net, digits_data, n_trials=4, max_macs=0.5, seed=5)
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        texts.append(
            [
                CompressionPlan.from_dict(export_plan(study, trial=t.number).to_dict()).to_json()
                for t in trials
            ]
        )
        best = select_trial(study)
        texts[-1].append(str(best.number))
    assert texts[0] == texts[1]
    assert n_distinct_finished(study) == 4  # and repeats of their plans, if any
    assert all(math.isfinite(json.loads(t)["metrics"]["accuracy"]) for t in texts[0][:-1])
