"""Bad input to every command gives one clear line and exit code 2, never a traceback.

The commands run in-process through :func:`rankopt.cli.main` on user models from
``tests/rankopt_testmodels.py`` (no built-in model is trained) and a ``.pt`` file of
sklearn's 8x8 digits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rankopt_testmodels
import torch

from rankopt.cli import main

MODEL = "rankopt_testmodels:small_net"
FAST = ["--n-trials", "1", "--finetune-steps", "2", "--finetune-samples", "32"]
FAST += ["--batch-size", "16", "--threads", "1"]
FAST += ["--rank-multiple", "1"]  # small_net's layers are below ONNX Runtime's block (16)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Data and weights files shared by the command-line tests."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("cli-files")
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    torch.save((images, labels), root / "digits.pt")
    torch.save(
        {"images": torch.rand(60, 1, 12, 12), "labels": torch.arange(60) % 3}, root / "big.pt"
    )
    out = {"data": str(root / "digits.pt"), "data12": str(root / "big.pt"), "root": str(root)}
    for name in ("small_net", "mixed_net", "five_class_net", "flat_net", "depthwise_only"):
        path = root / f"{name}.pt"
        torch.save(getattr(rankopt_testmodels, name)().state_dict(), path)
        out[name] = str(path)
    (root / "garbage.pt").write_bytes(b"this is not a torch file")
    out["garbage"] = str(root / "garbage.pt")
    (root / "notes.txt").write_text("not data\n")
    out["txt"] = str(root / "notes.txt")
    (root / "empty_dir").mkdir()
    out["empty_dir"] = str(root / "empty_dir")
    return out


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path / "cache"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``rankopt argv`` in-process: (exit code, stdout, stderr)."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # main() must not raise it
        pytest.fail(f"main({list(argv)}) raised SystemExit({exc.code!r}) instead of returning")
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(rc: int, err: str, *fragments: str) -> str:
    """Exit code 2, no traceback, and the last stderr line is the one error line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert rc == 2, err
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def search_args(files: dict[str, str], tmp_path: Path, *extra: str) -> list[str]:
    base = ["search", "--model", MODEL, "--weights", files["small_net"], "--data", files["data"]]
    return [*base, "--run-dir", str(tmp_path / "run"), *FAST, *extra]


# --------------------------------------------------------------------------- search
SEARCH_BAD: list[tuple[list[str], list[str]]] = [
    (["--model", "nosuchmodel"], ["'nosuchmodel'", "resnet8", "package.module:callable"]),
    (["--model", "no_such_module_xyz:make"], ["cannot import module 'no_such_module_xyz'"]),
    (["--model", "rankopt_testmodels:nothing"], ["has no attribute 'nothing'"]),
    (["--model", "rankopt_testmodels:MIXED_INELIGIBLE"], ["not callable"]),
    (["--data", "nosuchdata"], ["'nosuchdata'", "digits", "mnist5k"]),
    (["--methods", "tucker3"], ["unknown method 'tucker3'", "tucker2"]),
    (["--methods", ""], ["methods", "tucker2"]),
    (["--sampler", "bayes"], ["unknown sampler 'bayes'", "nsga2, random, tpe"]),
    (["--max-macs", "50 %"], ["max_macs = '50 %' is not a budget", "'50%'"]),
    (["--max-macs", "-1"], ["max_macs = '-1'", "allowed"]),
    (["--max-macs", "abc"], ["max_macs = 'abc'", "allowed"]),
    (["--max-macs", "0"], ["max_macs = '0'", "positive"]),
    (["--max-macs", "inf"], ["max_macs = 'inf'", "allowed"]),
    (["--max-params", "nan"], ["max_params = 'nan'", "allowed"]),
    (["--max-params", "1e999"], ["max_params = '1e999'", "finite"]),
    (["--max-macs", "10"], ["max_macs = 10 is below the smallest reachable cost"]),
    (["--objectives", "macs,accuracy"], ["first objective must be 'accuracy'"]),
    (["--objectives", "accuracy,flops"], ["unknown objective 'flops'", "macs"]),
    (["--objectives", ","], ["first objective must be 'accuracy'"]),
    (["--n-trials", "0"], ["n_trials = 0", ">= 1"]),
    (["--n-trials", "-3"], ["n_trials = -3", ">= 1"]),
    (["--finetune-steps", "-1"], ["finetune_steps = -1", ">= 0"]),
    (["--finetune-samples", "0"], ["finetune_samples = 0", ">= 1"]),
    (["--batch-size", "0"], ["batch_size = 0", ">= 1"]),
    (["--timeout", "-5"], ["timeout = -5", "positive"]),
    (["--timeout", "nan"], ["timeout = nan", "positive"]),
    (["--lr", "-0.1"], ["lr = -0.1", "positive"]),
    (["--lr", "nan"], ["lr = nan", "positive"]),
    (["--threads", "-1"], ["threads = -1", ">= 1"]),
    (["--threads", "0"], ["threads = 0", ">= 1"]),
    (["--latency-threads", "999"], ["latency_threads = 999 must be at most the", "scheduler"]),
    (["--latency-tolerance", "0"], ["latency_tolerance = 0.0 must be in (0, 1]"]),
    (["--seed", "-1"], ["seed = -1", "in [0, 4294967295]"]),
    (["--num-classes", "0"], ["num_classes = 0", ">= 1"]),
    (["--model", "rankopt_testmodels:five_class_net"], ["labels", "10 classes", "5 outputs"]),
    (["--model", "rankopt_testmodels:depthwise_only"], ["no layer that can be decomposed"]),
    (["--storage", "sqlite:////nonexistent-dir-rankopt/x/study.db"], ["storage"]),
]


@pytest.mark.parametrize(("extra", "fragments"), SEARCH_BAD, ids=lambda v: " ".join(v)[:40])
def test_search_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    tmp_path: Path,
    extra: list[str],
    fragments: list[str],
) -> None:
    argv = search_args(files, tmp_path, *extra)
    if "rankopt_testmodels:" in " ".join(extra) and "small_net" not in " ".join(extra):
        # a model other than small_net: its own weights, or none
        name = next(e for e in extra if e.startswith("rankopt_testmodels:")).split(":")[1]
        i = argv.index("--weights")
        argv[i + 1] = files.get(name, files["small_net"])
        if name not in files:
            del argv[i : i + 2]
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, *fragments)


@pytest.mark.parametrize(
    ("key", "fragments"),
    [
        ("missing", ["weights file", "does not exist"]),
        ("garbage", ["weights file", "cannot be read"]),
        ("empty_dir", ["weights file", "not a regular file"]),
        ("mixed_net", ["does not fit model 'rankopt_testmodels:small_net'", "shape mismatch"]),
    ],
)
def test_bad_weights_file_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    tmp_path: Path,
    key: str,
    fragments: list[str],
) -> None:
    path = str(tmp_path / "missing.pt") if key == "missing" else files[key]
    rc, _, err = run(capsys, *search_args(files, tmp_path, "--weights", path))
    assert_one_error_line(rc, err, repr(path), *fragments)


@pytest.mark.parametrize(
    ("key", "fragments"),
    [
        ("txt", ["data file", "'.txt'"]),
        ("empty_dir", ["empty_dir"]),
        ("garbage", ["data file", "cannot be read"]),
        ("missing", ["missing.pt"]),
    ],
)
def test_bad_data_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    tmp_path: Path,
    key: str,
    fragments: list[str],
) -> None:
    path = str(tmp_path / "missing.pt") if key == "missing" else files[key]
    rc, _, err = run(capsys, *search_args(files, tmp_path, "--data", path))
    assert_one_error_line(rc, err, *fragments)


def test_input_the_model_cannot_run_is_one_line(
    capsys: pytest.CaptureFixture[str], files: dict[str, str], tmp_path: Path
) -> None:
    argv = search_args(files, tmp_path, "--model", "rankopt_testmodels:flat_net")
    argv[argv.index("--weights") + 1] = files["flat_net"]
    argv[argv.index("--data") + 1] = files["data12"]
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, "cannot run an input of shape (1, 1, 12, 12)")


@pytest.mark.parametrize(
    "extra",
    [
        ["--n-trials", "abc"],
        ["--repair", "clip"],
        ["--finetune-steps", "1.5"],
        ["--latency-runtime", "tvm"],
        ["--no-such-option"],
    ],
)
def test_argparse_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], files: dict[str, str], tmp_path: Path, extra: list[str]
) -> None:
    rc, _, err = run(capsys, *search_args(files, tmp_path, *extra))
    assert_one_error_line(rc, err)
    assert err.splitlines()[0].startswith("usage: rankopt")


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "serach")
    assert_one_error_line(rc, err, "invalid choice: 'serach'")


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version")[0] == 0
    assert run(capsys, "search", "--help")[0] == 0


# --------------------------------------------------------------------------- study commands
@pytest.fixture(scope="session")
def study_db(files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A finished 2-trial study made by the command line, and one exported plan."""
    import os

    root = tmp_path_factory.mktemp("cli-study")
    old = os.environ.get("RANKOPT_CACHE_DIR")
    os.environ["RANKOPT_CACHE_DIR"] = str(root / "cache")
    try:
        argv = ["search", "--model", MODEL, "--weights", files["small_net"]]
        argv += ["--data", files["data"], "--run-dir", str(root), *FAST, "--n-trials", "2"]
        argv += ["--study-name", "s1"]
        assert main(argv) == 0
        storage = f"sqlite:///{root / 'study.db'}"
        plan = root / "plan.json"
        assert main(["export", "--storage", storage, "--trial", "0", "--out", str(plan)]) == 0
    finally:
        if old is None:
            os.environ.pop("RANKOPT_CACHE_DIR", None)
        else:
            os.environ["RANKOPT_CACHE_DIR"] = old
    return {"storage": storage, "plan": str(plan), "root": str(root)}


STUDY_COMMANDS = [
    ["front"],
    ["plot", "--out", "{tmp}/p.html"],
    ["report", "--out", "{tmp}/r.html"],
    ["export", "--trial", "0", "--out", "{tmp}/plan.json"],
]


@pytest.mark.parametrize("command", STUDY_COMMANDS, ids=lambda c: c[0])
def test_missing_storage_and_study_are_one_line(
    capsys: pytest.CaptureFixture[str],
    study_db: dict[str, str],
    tmp_path: Path,
    command: list[str],
) -> None:
    cmd = [c.replace("{tmp}", str(tmp_path)) for c in command]
    missing = tmp_path / "nothing.db"
    rc, _, err = run(capsys, *cmd, "--storage", str(missing))
    assert_one_error_line(rc, err, "no such file", str(missing))
    rc, _, err = run(capsys, *cmd, "--storage", study_db["storage"], "--study-name", "nope")
    assert_one_error_line(rc, err, "no study named 'nope'", "s1")
    rc, _, err = run(capsys, *cmd, "--run-dir", str(tmp_path / "no-run"))
    assert_one_error_line(rc, err, "no such file")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--trial", "999"], ["no trial 999", "0, 1"]),
        (["--trial", "-1"], ["trial must be a trial number"]),
        (["--max-macs", "abc"], ["max", "macs", "'abc'", "allowed"]),
        (["--max-macs", "-1"], ["max", "macs", "'-1'", "allowed"]),
        (["--max-macs", "10"], ["no complete trial fits", "smallest"]),
        (["--trial", "0", "--out", "{tmp}/no/such/dir/plan.json"], ["no/such/dir", "directory"]),
    ],
)
def test_export_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    study_db: dict[str, str],
    tmp_path: Path,
    extra: list[str],
    fragments: list[str],
) -> None:
    args = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "plan.json")]
    rc, _, err = run(capsys, "export", "--storage", study_db["storage"], *args)
    assert_one_error_line(rc, err, *fragments)


def test_search_ends_with_the_plan_and_export_writes_it(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A search in the default run directory ends with the recommended plan, its gains and
    the next commands as typed; ``rankopt export --out p.json`` then writes that plan."""
    from rankopt.storage._open import run_dir_url
    from rankopt.studies import load_study, select_trial

    monkeypatch.chdir(tmp_path)
    model = ["--model", MODEL, "--weights", files["small_net"], "--data", files["data"]]
    rc, out, err = run(capsys, "search", *model, *FAST, "--n-trials", "3")
    assert rc == 0, err
    study = load_study(run_dir_url("rankopt-runs"))
    best = select_trial(study)
    attrs = best.user_attrs
    lines = out.splitlines()
    summary = next(line for line in lines if line.startswith("recommended plan:"))
    assert summary.startswith(f"recommended plan: trial {best.number}")
    points = 100 * (attrs["accuracy"] - study.user_attrs["dense"]["accuracy"])
    assert f"accuracy {100 * attrs['accuracy']:.2f} % ({points:+.2f} points vs dense)" in summary
    assert f"MACs {100 * attrs['macs_ratio']:.1f} % of dense" in summary
    assert f"params {100 * attrs['params_ratio']:.1f} %" in summary
    # the default runtime's predicted latency beside the MACs, never above dense (issue 37)
    r1, r64 = attrs["latency_ratio_batch1"], attrs["latency_ratio_batch64"]
    assert max(r1, r64) <= 1 + 1e-9
    assert (
        f"MACs {100 * attrs['macs_ratio']:.1f} % of dense, predicted latency "
        f"{100 * r1:.0f} % at batch 1, {100 * r64:.0f} % at batch 64" in summary
    )
    done = [line for line in err.splitlines() if line.startswith("trial ") and "accuracy" in line]
    assert done and all("% (batch 1/64), params" in line for line in done)
    header = next(line for line in lines if line.lstrip().startswith("kind"))
    assert "macs_ratio  latency_ratio_batch1  latency_ratio_batch64" in header
    nxt = lines.index("next:")
    typed = " ".join(model)
    assert lines[nxt + 1 :] == [
        "  rankopt export --out plan.json",
        f"  rankopt apply plan.json {typed} --out small.onnx",
        f"  rankopt finetune plan.json {typed} --epochs 5",
        "  rankopt report --out report.html",
    ]
    rc, out, err = run(capsys, "export", "--out", "p.json")
    assert rc == 0, err
    assert f"the recommended plan, trial {best.number} " in out
    plan = json.loads((tmp_path / "p.json").read_text())
    assert plan["provenance"]["trial"] == best.number
    assert plan["layers"] == attrs["plan"]["layers"]
    assert plan["metrics"]["macs"] == attrs["macs"]


def _plan_variant(study_db: dict[str, str], tmp_path: Path, kind: str) -> str:
    data: Any = json.loads(Path(study_db["plan"]).read_text())
    path = tmp_path / f"{kind}.json"
    if kind == "schema":
        data["schema_version"] = 3
    elif kind == "other_model":
        data["model"]["fingerprint"] = "0123456789abcdef"
        data["layers"][0]["layer"] = "block9.conv"
    elif kind == "fingerprint":
        data["model"]["fingerprint"] = "0123456789abcdef"
    elif kind == "rank":
        lp = next(lp for lp in data["layers"] if lp["method"] != "keep")
        lp["ranks"] = {k: 10**6 for k in lp["ranks"]}
    elif kind == "method":
        data["layers"][0]["method"] = "tucker9"
    elif kind == "not_json":
        path.write_text("{ not json")
        return str(path)
    elif kind == "missing":
        return str(tmp_path / "missing.json")
    elif kind == "list":
        data = [data]
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("command", ["apply", "finetune"])
@pytest.mark.parametrize(
    ("kind", "fragments"),
    [
        ("schema", ["schema_version", "3", "reads schema_version 1 or 2"]),
        ("other_model", ["plan is for model", "block9.conv", "not in this model"]),
        ("fingerprint", ["fingerprint 0123456789abcdef"]),
        ("rank", ["1000000"]),
        ("method", ["unknown method 'tucker9'", "tucker2"]),
        ("not_json", ["not valid JSON"]),
        ("missing", ["cannot read plan file", "missing.json"]),
        ("list", ["must be a JSON object"]),
    ],
)
def test_bad_plan_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    study_db: dict[str, str],
    tmp_path: Path,
    command: str,
    kind: str,
    fragments: list[str],
) -> None:
    plan = _plan_variant(study_db, tmp_path, kind)
    argv = [command, plan, "--model", MODEL, "--weights", files["small_net"]]
    argv += ["--data", files["data"], "--out", str(tmp_path / "m.pt")]
    if command == "finetune":
        argv += ["--epochs", "1"]
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, *fragments)
    assert not (tmp_path / "m.pt").exists()


def test_plan_of_another_model_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    study_db: dict[str, str],
    tmp_path: Path,
) -> None:
    argv = ["apply", study_db["plan"], "--model", "rankopt_testmodels:mixed_net"]
    argv += ["--weights", files["mixed_net"], "--out", str(tmp_path / "m.pt")]
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, "plan is for model", "rankopt_testmodels:small_net")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--epochs", "0"], ["epochs = 0", ">= 1"]),
        (["--epochs", "-2"], ["epochs = -2", ">= 1"]),
        (["--out", "{tmp}/no/such/dir/m.pt"], ["no/such/dir", "directory"]),
    ],
)
def test_finetune_and_apply_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    study_db: dict[str, str],
    tmp_path: Path,
    extra: list[str],
    fragments: list[str],
) -> None:
    args = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    base = [study_db["plan"], "--model", MODEL, "--weights", files["small_net"]]
    base += ["--data", files["data"]]
    rc, _, err = run(capsys, "finetune", *base, *args)
    assert_one_error_line(rc, err, *fragments)
    if "--out" in args:
        rc, _, err = run(capsys, "apply", *base, *args)
        assert_one_error_line(rc, err, *fragments)


def test_finetune_checks_its_latency_runtime_before_fine_tuning(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    study_db: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rankopt.errors import RankoptError
    from rankopt.latency._runtimes import OnnxRuntime

    def missing(_self: object) -> None:
        raise RankoptError("ONNX export needs the 'onnxruntime' package, which is not installed")

    monkeypatch.setattr(OnnxRuntime, "check_available", missing)
    base = [study_db["plan"], "--model", MODEL, "--weights", files["small_net"]]
    base += ["--data", files["data"], "--epochs", "1"]
    for extra in (["--out", str(tmp_path / "m.onnx")], ["--latency-runtime", "onnxruntime"]):
        rc, out, err = run(capsys, "finetune", *base, *extra)
        assert_one_error_line(rc, err, "'onnxruntime' package")
        assert "fine-tuning" not in err and not out  # nothing was fine-tuned
    assert not (tmp_path / "m.onnx").exists()


def test_apply_writes_a_model(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    study_db: dict[str, str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "m.pt"
    argv = ["apply", study_db["plan"], "--model", MODEL, "--weights", files["small_net"]]
    rc, stdout, err = run(capsys, *argv, "--out", str(out))
    assert rc == 0, err
    assert out.is_file() and "macs" in stdout


# --------------------------------------------------------------------------- profile
def test_profile_lists_unsupported_layers_with_reasons(
    capsys: pytest.CaptureFixture[str], files: dict[str, str]
) -> None:
    argv = ["profile", "--model", "rankopt_testmodels:mixed_net", "--weights", files["mixed_net"]]
    rc, out, err = run(capsys, *argv, "--data", files["data"])
    assert rc == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name, reason in rankopt_testmodels.MIXED_INELIGIBLE.items():
        assert "no: " in rows[name] and reason in rows[name], rows[name]
    for name in ("conv1", "conv2", "conv3", "fc"):
        assert rows[name].rstrip().endswith("yes"), rows[name]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--model", "nosuchmodel"], ["'nosuchmodel'"]),
        (["--data", "nosuchdata"], ["'nosuchdata'"]),
        (["--model", "rankopt_testmodels:flat_net", "--data", "{data12}"], ["cannot run"]),
    ],
)
def test_profile_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    extra: list[str],
    fragments: list[str],
) -> None:
    args = [e.replace("{data12}", files["data12"]) for e in extra]
    rc, _, err = run(capsys, "profile", "--model", MODEL, "--data", files["data"], *args)
    assert_one_error_line(rc, err, *fragments)


# --------------------------------------------------------------------------- run directory
def test_run_dir_under_a_file_fails_before_any_trial(
    capsys: pytest.CaptureFixture[str], files: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = search_args(files, tmp_path, "--run-dir", str(blocker / "run"))
    rc, _, err = run(capsys, *argv)
    assert_one_error_line(rc, err, "is not writable", str(blocker / "run"), "--run-dir")


def test_run_dir_in_proc_is_not_writable(
    capsys: pytest.CaptureFixture[str], files: dict[str, str], tmp_path: Path
) -> None:
    rc, _, err = run(capsys, *search_args(files, tmp_path, "--run-dir", "/proc/rankopt-run"))
    assert_one_error_line(rc, err, "'/proc/rankopt-run' is not writable")


def test_full_run_dir_fails_before_any_trial(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**20))
    rc, _, err = run(capsys, *search_args(files, tmp_path))
    assert_one_error_line(rc, err, "has only 1 MiB free", "10 MiB")
    assert not (tmp_path / "run" / "study.db").exists()
    assert list((tmp_path / "run").iterdir()) == [], "the write test left a file behind"


def test_help_imports_no_heavy_module() -> None:
    """``rankopt --help`` loads neither torch, optuna, pandas nor plotly (so it is instant)."""
    import os
    import re
    import subprocess
    import sys

    import rankopt

    root = str(Path(rankopt.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rankopt", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: rankopt" in done.stdout
    # -X importtime writes "import time: self | cumulative | module" per imported module.
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M))
    assert "rankopt.cli" in imported
    top_level = {name.split(".")[0] for name in imported}
    assert not top_level & {"torch", "optuna", "pandas", "plotly"}, sorted(
        top_level & {"torch", "optuna", "pandas", "plotly"}
    )


def test_the_command_line_search_and_the_settings_share_one_set_of_defaults() -> None:
    """``rankopt search``, :func:`rankopt.search` and :class:`SearchSettings` agree: the
    settings' fields are the defaults, the other two read them."""
    import inspect

    from rankopt._cli._search import search_settings
    from rankopt.cli import build_parser
    from rankopt.errors import UnknownNameError
    from rankopt.searching import SearchSettings, search
    from rankopt.searching.loop._settings import setting_defaults

    defaults = setting_defaults()
    assert defaults["finetune_steps"] == SearchSettings().finetune_steps == 120
    assert SearchSettings().finetune().distill_weight == defaults["distill_weight"] == 0.7

    signature = inspect.signature(search).parameters
    assert {name: signature[name].default for name in defaults} == defaults

    given = search_settings(build_parser().parse_args(["search"]))
    assert {"finetune_steps", "finetune_samples", "batch_size", "lr", "n_trials", "seed"} <= set(
        given
    ), sorted(given)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()} == {
        k: defaults[k] for k in given
    }

    with pytest.raises(UnknownNameError, match="unknown setting 'finetune_step'"):
        SearchSettings.from_kwargs(finetune_step=3)
