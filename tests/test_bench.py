"""The benchmark on a tiny digits CNN: every row filled, MACs ratios exact, goals reported."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import plotly.offline
import pytest
import torch
from torch import nn

import rankopt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package

from benchmarks.common import searches
from benchmarks.mnist import run as bench


@pytest.mark.slow
def test_bench_on_tiny_model(
    tmp_path: Path,
    trained_digits_net: nn.Module,
    digits_data: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    model = bench.BenchModel(
        "digitsnet",
        trained_digits_net,
        digits_data["train"],
        digits_data["val"],
        digits_data["test"],
    )
    result = bench.run(
        model,
        budgets=[0.5],
        n_trials=4,
        finetune_epochs=1,
        out_dir=tmp_path,
        seeds=(0,),
        finetune_lr=0.002,
        proxy_steps=5,
        proxy_samples=128,
        spearman_trials=3,
        latency_rounds=2,
        peer_check=False,
        progress=None,
    )
    shape = (1, 8, 8)
    dense_macs = rankopt.count_macs(trained_digits_net, shape)

    seed_row = result.seed_row
    for key in ("macs_ratio", "dense_accuracy", "accuracy_decomposed", "test_accuracy"):
        assert math.isfinite(seed_row[key]), key
    assert seed_row["dense_accuracy"] > 0.8
    built = rankopt.apply_plan(trained_digits_net, seed_row["plan"])
    assert seed_row["macs_ratio"] == rankopt.count_macs(built, shape) / dense_macs

    methods = {r["method"] for r in result.budget_rows}
    assert {"greedy", "search_random", "search_tpe", "uniform_tucker2", "uniform_svd"} <= methods
    for row in result.budget_rows:
        if row["plan"] is None:
            continue  # the peer's model, or a baseline that cannot fit
        for key in ("test_accuracy", "accuracy_decomposed", "macs_ratio", "latency_ratio_b1"):
            assert math.isfinite(row[key]), (row["method"], key)
        assert 0.0 <= row["test_accuracy"] <= 1.0
        built = rankopt.apply_plan(trained_digits_net, row["plan"])
        assert row["macs_ratio"] == rankopt.count_macs(built, shape) / dense_macs, row["method"]
        assert row["macs_ratio"] <= 0.5 + 1e-9, row["method"]
    assert {h["sampler"] for h in result.hypervolumes} == {"random", "tpe"}
    for h in result.hypervolumes:
        assert 0.0 < h["hypervolume"] <= 1.0
    assert {s["sampler"] for s in result.spearman} == {"random", "tpe"}
    for s in result.spearman:
        assert len(s["proxy"]) == len(s["final"]) >= 1
    assert searches.hypervolume_2d([(0.9, 0.5)]) == pytest.approx(0.45)
    assert searches.hypervolume_2d([(0.9, 0.5), (0.5, 0.2), (0.4, 0.3)]) == pytest.approx(
        0.5 * 0.3 + 0.9 * 0.5
    )
    for row in result.latency_rows:
        assert math.isfinite(row["latency_ratio_b1"]) and row["latency_ratio_b1"] > 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "Budget 50% of dense MACs" in text
    assert "Spearman" in text and "hypervolume tpe" in text
    assert "measurement noise: binomial std" in text
    for name in ("bench_accuracy.html", "bench_latency.html", "plotly.min.js"):
        assert (tmp_path / name).stat().st_size > 0
    # The installed plotly's script, not a committed copy.
    assert (tmp_path / "plotly.min.js").read_text() == plotly.offline.get_plotlyjs()
