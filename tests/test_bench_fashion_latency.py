"""The equal-latency benchmark's goals and tables on synthetic rows (no search, no training)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks.fashion_latency.peers import PruningByLatency, Timed
from benchmarks.fashion_latency.report import (
    budget_table,
    goal_lines,
    lowest_goal,
    mean_pm,
    render,
)
from benchmarks.fashion_latency.searches import DECOMPOSITION, JOINT


def _row(label: str, seed: int, acc: float, b1: float, b64: float) -> dict[str, Any]:
    return {
        "label": label,
        "budget": 0.5,
        "seed": seed,
        "test_accuracy": acc,
        "accuracy_calibrated": acc - 0.05,
        "latency_ort_b1": b1,
        "latency_ort_b64": b64,
        "latency_torch_b1": 0.9,
        "latency_torch_b64": 0.8,
        "macs_ratio": 0.4,
        "params_ratio": 0.5,
        "row_wall_s": 60.0,
        "note": f"{label} note",
    }


ROWS = [
    _row(JOINT, 0, 0.90, 0.45, 0.48),
    _row(JOINT, 1, 0.92, 0.47, 1.02),
    _row(DECOMPOSITION, 0, 0.89, 0.55, 0.60),
    _row("torch-pruning", 0, 0.895, 0.49, 0.50),
    _row("torch-pruning", 1, 0.895, 0.49, 0.50),
    _row("tensorly-torch", 0, math.nan, math.nan, math.nan),
]


def test_mean_pm_is_mean_and_sample_std() -> None:
    assert mean_pm([0.90, 0.92]) == "0.9100 ± 0.0141"
    assert mean_pm([0.5, math.nan], 3) == "0.500"
    assert mean_pm([math.nan]) == "n/a"


def test_goal_verdicts_say_met_or_missed_by_how_much() -> None:
    reach = [{"label": JOINT, "batch_size": 1, "percent": 41.5, "probe": 0.001}]
    lines = goal_lines(ROWS, [0.5], reach)
    text = "\n".join(lines)
    # rankopt 0.91 vs torch-pruning 0.895 + 1 point: +0.50 points
    assert "rankopt 0.9100 vs torch-pruning 0.8950, goal >= it + 1 point: **met** (+0.50" in text
    # the best other row is torch-pruning (0.895 > 0.89): +1.50 points
    assert "best other row (torch-pruning) 0.8950, goal >= it: **met** (+1.50 points)" in text
    # seed 1 runs at 1.02x dense at batch 64: missed by 0.02x
    assert "slowest seed's measured ORT latency 1.020x dense" in text
    assert "goal <= 1.0x: **missed** by 0.02 x dense" in text
    assert "vs the budget 0.50x: **missed** by 0.52 x dense" in text
    # decomposition only: 0.60 <= 1.0 met, over the budget by 0.10
    assert "(decomposition only): slowest seed's measured ORT latency 0.600x" in text
    assert "**met** (+0.40 x dense); vs the budget 0.50x: **missed** by 0.10 x dense" in text
    # lowest reachable 41.5 % vs 35 %: missed by 6.5 points of dense
    assert "41.5% of dense predicted, goal <= 35%: **missed** by 6.50 points of dense" in text
    # lowest measured: joint seed 0 at max(0.45, 0.48)
    assert "lowest measured latency of a search row: 48.0% of dense" in text


def test_rankopt_missing_falls_back_to_decomposition_and_reports_a_miss() -> None:
    rows = [r for r in ROWS if r["label"] != JOINT]
    text = "\n".join(goal_lines(rows, [0.5], []))
    assert "50%: rankopt (decomposition only) 0.8900 vs torch-pruning 0.8950" in text
    assert "**missed** by 1.50 points" in text
    assert "goal >= it: **missed** by 0.50 points" in text


def test_lowest_goal_met_and_unmeasured() -> None:
    met = lowest_goal([], [{"label": JOINT, "batch_size": 1, "percent": 30.0}])
    assert "**met** (+5.00 points of dense)" in met[0]
    missing = lowest_goal([], [{"label": JOINT, "batch_size": 1, "percent": math.nan}])
    assert "**not measured**" in missing[0]


def test_budget_table_and_render_hold_the_numbers() -> None:
    table = budget_table(ROWS, 0.5)
    lines = table.splitlines()
    assert lines[2].startswith("| rankopt | 2 | 0.9100 ± 0.0141 | 0.8600 ± 0.0141 | 0.460 ± 0.014")
    assert lines[-1].startswith("| tensorly-torch | 0 | n/a")
    meta = {
        "command": "python -m benchmarks.fashion_latency --budgets 0.5",
        "task": {
            "model_name": "resnet8",
            "data_name": "fashion-mnist",
            "dense_test_accuracy": 0.91,
            "dense_macs": 1000,
        },
        "budgets": [0.5],
        "seeds": [0, 1],
        "trials": 4,
        "finetune": "the same FT",
        "dense_ft": [0.91, 0.912],
        "facts_start": {"cpu": "x"},
        "method": ["how"],
        "reach": [{"label": JOINT, "batch_size": 1, "percent": 41.5, "message": "refused"}],
        "wall_s": 120.0,
    }
    md = render(meta, ROWS)
    assert "## Budget 50% of dense latency" in md
    assert "dense + final FT 0.9110 ± 0.0014" in md
    assert "wall time: 2.0 min" in md


def test_pruning_bisection_keeps_the_largest_target_that_meets_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer = PruningByLatency(None, (1, 28, 28), min_timed_s=0.1)  # type: ignore[arg-type]
    timed: list[float] = []

    def fake(target: float) -> Timed:  # latency = 0.2 + 0.6 * MACs
        timed.append(target)
        found = Timed(target, object(), 0.2 + 0.6 * target, 0.2 + 0.5 * target)  # type: ignore[arg-type]
        peer.timed[target] = found
        return found

    monkeypatch.setattr(peer, "_time", fake)
    cand = peer.candidate(0.5)  # meets 0.5 up to MACs 0.5
    assert len(timed) <= 8
    assert 0.49 <= cand.extra["macs_target"] <= 0.5
    n = len(timed)
    cand = peer.candidate(0.35)  # up to MACs 0.25: reuses what 0.5 timed
    assert 0.24 <= cand.extra["macs_target"] <= 0.25
    assert len(timed) - n <= 8
    gone = peer.candidate(0.1)  # below 0.2 + 0.6 * 0.03: unreachable
    assert gone.model is None
    assert "cannot reach 10%: its lowest measured latency is 22% of dense" in gone.note
