"""The scale benchmark (issue 36): its harness on a tiny model, its goals and its report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package

from benchmarks.scale import __main__ as scale
from benchmarks.scale.child import profile_facts
from benchmarks.scale.markdown import GOALS, NOT_RECORDED, check_goal, render

TINY = "benchmarks.bench_memory:tiny_cnn@16"


@pytest.mark.slow  # 12-25 s on 2 shared cores: two processes that import torch
def test_harness_on_a_tiny_model(tmp_path: Path) -> None:
    argv = ["--models", TINY, "--n-trials", "1", "--threads", "1", "--n-train", "128"]
    argv += ["--n-val", "64", "--finetune-steps", "2", "--out", str(tmp_path)]
    argv += ["--latency-runtime", "none"]  # a latency table takes minutes on shared cores
    assert scale.main(argv) == 0
    (row,) = json.loads((tmp_path / "scale_rows.json").read_text())["rows"]
    assert row["case"] == TINY and row["input_size"] == 16 and row["exit_status"] == 0
    assert "error" not in row
    # tiny_cnn: 3 convs and a Linear; the Linear is below the 0.5 % share of MACs
    assert row["dense_n_params"] == 14746 and row["dense_macs"] == 253760
    assert row["n_layers_searched"] == 3
    assert row["n_pairs"] >= row["n_layers_searched"]
    assert row["n_pairs"] < row["n_points"] <= 4 * row["n_pairs"]
    assert 0 < row["profile_s"] < row["search_s"] < row["child_wall_s"]
    assert 0 < row["measured_floor_s"] < row["profile_s"]
    assert row["n_trials_done"] == 1 and row["n_trials_failed"] == 0
    assert row["bound_lines"] == []  # tiny layers: no method is bounded
    assert row["latency_runtime"] is None and row["latency_table_s"] is None
    assert 0 < row["mean_trial_s"] < row["search_s"]
    # the child's own peak (imports alone are hundreds of MB), not the parent's
    assert 100 < row["import_rss_mb"] < row["peak_rss_mb"] < 4096
    report = (tmp_path / "BENCHMARKS_SCALE.md").read_text()
    assert f"| {TINY} | 0.01 | 0 | 3 | {row['n_pairs']} (" in report
    if row["timing_recorded"]:
        assert row["forward_s"] > 0 and row["decompose_s"]
    else:
        assert row["forward_s"] is None and NOT_RECORDED in report


def test_a_stalled_child_is_killed_and_its_row_merged(tmp_path: Path) -> None:
    earlier = {"case": TINY, "profile_only": False, "methods": None, "profile_s": 1.0}
    (tmp_path / "scale_rows.json").write_text(json.dumps({"rows": [earlier]}))
    argv = ["--models", "resnet18@32", "--threads", "1", "--limit-min", "0.001"]
    assert scale.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "scale_rows.json").read_text())["rows"]
    assert [r["case"] for r in rows] == [TINY, "resnet18@32"]  # the earlier row stays
    assert rows[1]["error"] == "killed after 0.001 min (--limit-min)"
    assert rows[1]["exit_status"] == -9 and rows[1]["peak_rss_mb"] > 0
    report = (tmp_path / "BENCHMARKS_SCALE.md").read_text()
    assert "| resnet18@32 | 16-trial search | n/a (n/a) | n/a | n/a | not recorded |" in report
    for goal in ("profile <= 5 min", "16-trial search <= 20 min"):
        assert f"| resnet18@32: {goal} | n/a | missed: killed after 0.001 min" in report


def test_expand_models() -> None:
    assert scale.expand_models("resnet50, vgg16_bn,resnet18@64") == [
        "resnet50@32",
        "resnet50@64",
        "vgg16_bn@32",
        "resnet18@64",
    ]
    assert scale.expand_models("x.y:z") == ["x.y:z@32"]


def test_profile_facts_with_and_without_timing() -> None:
    stored: dict[str, Any] = {
        "schema_version": 1,
        "points": {"a": {"svd": [[1, 0.5], [2, 0.1]], "cp": [[1, 0.4]]}, "b": {"svd": []}},
        "failed": {"b": {"cp": "over 1 GB"}},
        "wall_time_s": 12.5,
        "n_images": 256,
    }
    facts = profile_facts(stored)
    assert (facts["n_pairs"], facts["n_points"], facts["n_failed_pairs"]) == (4, 3, 1)
    assert facts["failed"] == {"b/cp": "over 1 GB"}
    assert facts["profile_s"] == 12.5 and facts["timing_recorded"] is False
    assert facts["decompose_s"] is facts["forward_s"] is facts["recorded_floor_s"] is None
    stored["timing"] = {
        "decompose_s": {"svd": 1.5, "cp": 7.0},
        "forward_s": 3.0,
        "n_pairs": 5,
        "n_points": 17,
        "floor_s": 0.25,
    }
    facts = profile_facts(stored)
    assert (facts["n_pairs"], facts["n_points"]) == (5, 17)
    assert facts["decompose_s"] == {"svd": 1.5, "cp": 7.0}
    assert (facts["forward_s"], facts["recorded_floor_s"]) == (3.0, 0.25)
    bound = "cp on x: ranks above r=5 (23% of the layer's MACs) not offered"
    extra = {"dense_n_params": 0, "dense_macs": 0, "bound_lines": [bound]}
    report = render([{"case": "a", **facts, **extra}])
    assert f"## What the profile said it bounded\n\n- a: {bound}\n" in report
    cells = "| a | 0.00 | 0 | n/a | 5 (1) | 17 | 12.5 | 3.0 | cp 7.0, svd 1.5 | 0.250 (recorded) |"
    assert cells + " 50.0x |" in report


def test_goals_say_met_or_by_how_much() -> None:
    profile, search, rss = (g for g in GOALS if g.case == "resnet18@32")
    full = {"case": "resnet18@32", "profile_only": False, "profile_s": 360.0}
    full |= {"search_s": 1000.0, "peak_rss_mb": 2048.0}
    assert check_goal(profile, [full]) == [
        "resnet18@32: profile <= 5 min",
        "360 s",
        "**missed** by 60 s (1.20x the limit)",
    ]
    assert check_goal(search, [full])[2] == "met (0.83 of the limit)"
    assert check_goal(rss, [full])[1:] == ["2.00 GB", "met (0.67 of the limit)"]
    only = {"case": "resnet18@32", "profile_only": True, "profile_s": 200.0, "peak_rss_mb": 900}
    assert check_goal(profile, [only])[2] == "met (0.67 of the limit)"
    assert check_goal(rss, [only])[2] == "not measured (needs a full search run)"
    assert check_goal(rss, [])[2] == "not measured (not run)"
    killed = {**full, "error": "killed after 90 min (--limit-min)"}
    assert check_goal(search, [killed])[2] == "missed: killed after 90 min (--limit-min)"
