"""The command line after a search: front, plot, report, export -> apply, and its errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from rankopt.cli import main
from rankopt.evaluators import count_macs
from rankopt.searching import search
from rankopt.storage._attrs import is_repeat
from rankopt.studies import pareto_front

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def finished_study(
    trained_digits_net: nn.Module,
    digits_data: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """A real 5-trial study in SQLite, the dense weights on disk, and one failed trial."""
    root = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{root / 'study.db'}"
    study = search(
        trained_digits_net,
        digits_data["train"],
        digits_data["val"],
        max_macs=0.5,
        n_trials=5,
        storage=url,
        study_name="cli",
        finetune_steps=8,
        finetune_samples=128,
        model_name="digitsnet",
    )
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    weights = root / "dense.pt"
    torch.save(trained_digits_net.state_dict(), weights)
    return {"url": url, "root": root, "weights": weights, "failed": failed.number}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _study_args(fs: dict[str, Any]) -> list[str]:
    return ["--storage", fs["url"], "--study-name", "cli"]


def test_front_csv_matches_api(finished_study: dict[str, Any], capsys: Any) -> None:
    rc, out, _ = _cli(capsys, "front", *_study_args(finished_study), "--format", "csv")
    assert rc == 0
    table = pd.read_csv(io.StringIO(out))
    study = optuna.load_study(study_name="cli", storage=finished_study["url"])
    expected = pareto_front(study)
    assert list(table["kind"]) == list(expected["kind"])
    front = table[table["kind"] == "trial"]
    # the front lists each plan once: a trial that reused an earlier trial's result (same
    # plan, same values) is left out, although Optuna counts it among the best trials
    evaluated = [t.number for t in study.best_trials if not is_repeat(t)]
    assert sorted(front["trial"].astype(int)) == sorted(evaluated)
    rc, out, _ = _cli(capsys, "front", *_study_args(finished_study), "--format", "json")
    assert rc == 0 and len(json.loads(out)) == len(expected)


def test_export_apply_counts_the_recorded_macs(
    finished_study: dict[str, Any], capsys: Any, tmp_path: Path
) -> None:
    study = optuna.load_study(study_name="cli", storage=finished_study["url"])
    for t in study.get_trials(states=(TrialState.COMPLETE,))[:3]:
        plan_path = tmp_path / f"plan{t.number}.json"
        rc, _out, err = _cli(
            capsys,
            "export",
            *_study_args(finished_study),
            "--trial",
            str(t.number),
            "--out",
            str(plan_path),
        )
        assert rc == 0, err
        model_path = tmp_path / f"model{t.number}.pt"
        rc, _out, err = _cli(
            capsys,
            "apply",
            str(plan_path),
            "--model",
            "rankopt_testmodels:DigitsNet",
            "--weights",
            str(finished_study["weights"]),
            "--num-classes",
            "10",
            "--out",
            str(model_path),
        )
        assert rc == 0, err
        compressed = torch.load(model_path, weights_only=False)
        assert count_macs(compressed, SHAPE) == t.user_attrs["macs"]
        assert sum(p.numel() for p in compressed.parameters()) == t.user_attrs["n_params"]


def test_export_best_under_max_macs(
    finished_study: dict[str, Any], capsys: Any, tmp_path: Path
) -> None:
    study = optuna.load_study(study_name="cli", storage=finished_study["url"])
    dense = study.user_attrs["dense"]["macs"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    for limit in (sorted(t.user_attrs["macs"] for t in done)[len(done) // 2], 0.5 * dense):
        flag = "50%" if limit == 0.5 * dense else str(limit)  # relative and absolute forms
        _check_export_max_macs(finished_study, capsys, tmp_path, flag, limit, done)


def _check_export_max_macs(
    finished_study: dict[str, Any],
    capsys: Any,
    tmp_path: Path,
    flag: str,
    limit: float,
    done: list[Any],
) -> None:
    """``export --max-macs flag`` writes the complete trial with the lowest validation loss
    within ``limit``."""
    out_path = tmp_path / "best.json"
    rc, _, err = _cli(
        capsys, "export", *_study_args(finished_study), "--max-macs", flag, "--out", str(out_path)
    )
    assert rc == 0, err
    plan = json.loads(out_path.read_text())
    fits = [t for t in done if t.user_attrs["macs"] <= limit]
    best = min(fits, key=lambda t: t.user_attrs["val_loss"])
    assert plan["provenance"]["trial"] == best.number
    assert plan["metrics"]["accuracy"] == pytest.approx(best.user_attrs["accuracy"])
    assert plan["metrics"]["macs"] <= limit


def test_export_reads_the_search_budget_grammar(
    finished_study: dict[str, Any], capsys: Any, tmp_path: Path
) -> None:
    """``export --max-macs`` takes what ``search --max-macs`` takes: ``4M``, ``800k``, ``50%``."""
    import math

    study = optuna.load_study(study_name="cli", storage=finished_study["url"])
    done = study.get_trials(states=(TrialState.COMPLETE,))
    median = sorted(t.user_attrs["macs"] for t in done)[len(done) // 2]
    kilo = math.ceil(median / 1000)
    for flag, limit in (("4M", 4e6), (f"{kilo}k", kilo * 1000)):
        _check_export_max_macs(finished_study, capsys, tmp_path, flag, limit, done)


def test_plot_and_report_write_offline_html(
    finished_study: dict[str, Any], capsys: Any, tmp_path: Path
) -> None:
    html = tmp_path / "pareto.html"
    rc, _, err = _cli(capsys, "plot", *_study_args(finished_study), "--out", str(html))
    assert rc == 0, err
    text = html.read_text()
    assert "Pareto front" in text and '<script src="http' not in text
    report = tmp_path / "report.html"
    rc, _, err = _cli(capsys, "report", *_study_args(finished_study), "--out", str(report))
    assert rc == 0, err
    assert "pareto-front" in report.read_text()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["export", "--trial", "999"], r"no trial 999; complete trials with a plan: 0, 1, 2, 3, 4"),
        (["export", "--trial", "FAILED"], r"trial \d+ is FAIL"),
        (["export", "--max-macs", "1e-9"], r"smallest"),
        (["export", "--max-macs", "abc"], r"max_macs = 'abc' is not a budget"),
        (["front", "--study-name", "nope"], r"'nope'.*cli"),
    ],
)
def test_bad_selection_is_one_line_exit_2(
    finished_study: dict[str, Any], capsys: Any, args: list[str], pattern: str
) -> None:
    import re

    args = [str(finished_study["failed"]) if a == "FAILED" else a for a in args]
    base = ["--storage", finished_study["url"]]
    if "--study-name" not in args:
        base += ["--study-name", "cli"]
    rc, _out, err = _cli(capsys, args[0], *base, *args[1:])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rankopt: error:"), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
