"""Tests of rankopt.studies on synthetic studies built directly with optuna."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from rankopt.errors import BudgetError, RankoptError, SelectionError, StorageError
from rankopt.storage._attrs import best_first
from rankopt.storage._open import mask_url
from rankopt.studies import (
    FRONT_COLUMNS,
    FRONT_TRACE_NAME,
    all_trials_table,
    export_plan,
    layer_summary,
    load_study,
    pareto_front,
    plan_summary,
    plot_history,
    plot_layer_map,
    plot_pareto_front,
    plot_sensitivity,
    report,
    select_trial,
    sensitivity_table,
    write_html,
)
from rankopt.studies._profile_figure import PROFILE_SHARES

optuna.logging.set_verbosity(optuna.logging.WARNING)

DENSE_MACS = 1_000_000
DENSE_PARAMS = 50_000
# (layer, weight shape, methods it may use)
LAYERS: list[tuple[str, list[int], list[str]]] = [
    ("conv1", [16, 1, 3, 3], ["keep", "tucker2", "svd"]),
    ("layer1.0.conv1", [32, 16, 3, 3], ["keep", "tucker2", "cp", "svd"]),
    ("layer1.0.conv2", [32, 32, 3, 3], ["keep", "tucker2", "spatial_svd"]),
    ("fc", [10, 32], ["keep", "linear_svd"]),
]


def make_plan(rng: random.Random) -> dict[str, Any]:
    """A random plan dict in the CompressionPlan layout."""
    layers = []
    for name, shape, methods in LAYERS:
        method = rng.choice(methods)
        if method == "tucker2":
            ranks = {"r_in": rng.randint(1, shape[1]), "r_out": rng.randint(1, shape[0])}
        elif method == "keep":
            ranks = {}
        else:
            ranks = {"r": rng.randint(1, min(shape[0], shape[1] * 9 if len(shape) == 4 else 10))}
        layers.append(
            {"layer": name, "method": method, "ranks": ranks, "options": {}, "weight_shape": shape}
        )
    return {
        "schema_version": 1,
        "model": {"name": "tiny", "fingerprint": "0123456789abcdef"},
        "input_shape": [1, 28, 28],
        "layers": layers,
        "metrics": {},
        "provenance": {},
    }


def make_study(
    seed: int = 0,
    *,
    n_complete: int = 20,
    n_failed: int = 2,
    n_pruned: int = 2,
    multi: bool = True,
    budget_macs: int | None = 600_000,
    with_vbmf: bool = True,
    storage: str | None = None,
    name: str = "synthetic",
    grid: bool = False,
    values: list[tuple[float, int]] | None = None,
) -> optuna.Study:
    """A finished study matching the DEVELOPERS.md contracts, with random trials.

    ``grid`` draws accuracy and MACs from a coarse grid so ties and duplicates are common;
    ``values`` gives the (accuracy, macs) pairs of the complete trials explicitly.
    """
    rng = random.Random(seed)
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(directions=directions, storage=storage, study_name=name)
    study.set_user_attr("rankopt_version", "0.1.0")
    study.set_user_attr("model", "tiny")
    study.set_user_attr("data", "mnist")
    study.set_user_attr("fingerprint", "0123456789abcdef")
    study.set_user_attr("input_shape", [1, 28, 28])
    study.set_user_attr("dense", {"accuracy": 0.98, "macs": DENSE_MACS, "n_params": DENSE_PARAMS})
    study.set_user_attr("budget", {"max_macs": budget_macs, "max_params": None})
    study.set_user_attr("objectives", ["accuracy", "macs"] if multi else ["accuracy"])
    study.set_user_attr("settings", {"n_trials": n_complete, "sampler": "tpe"})
    if values is None:
        values = []
        for _ in range(n_complete):
            if grid:
                values.append(
                    (rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([1, 2, 3, 4]) * 100_000)
                )
            else:
                values.append((rng.uniform(0.5, 0.97), rng.randint(50_000, DENSE_MACS)))
    kinds = ["complete"] * len(values) + ["fail"] * n_failed + ["pruned"] * n_pruned
    rng.shuffle(kinds)
    it = iter(values)
    for i, kind in enumerate(kinds):
        if kind == "fail":
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.FAIL, user_attrs={"fail_reason": "NaN loss"}
                )
            )
            continue
        if kind == "pruned":
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.PRUNED, user_attrs={"accuracy": 0.99, "macs": 1}
                )
            )
            continue
        acc, macs = next(it)
        attrs: dict[str, Any] = {
            "plan": make_plan(rng),
            "macs": macs,
            "n_params": int(macs / 20),
            "macs_ratio": macs / DENSE_MACS,
            "params_ratio": macs / 20 / DENSE_PARAMS,
            "accuracy": acc,
            "accuracy_before_finetune": acc / 2,
            "reconstruction_error": 0.1,
            "wall_time_s": 1.0,
            "finetune_time_s": 0.5,
        }
        if i % 3 == 0:
            attrs["latency_ms"] = 1.5
        if with_vbmf and i == kinds.index("complete"):
            attrs["seed"] = "vbmf"
        study.add_trial(
            optuna.trial.create_trial(values=[acc, macs] if multi else [acc], user_attrs=attrs)
        )
    return study


def brute_force_front(study: optuna.Study) -> set[int]:
    """Non-dominated complete trials for (accuracy up, macs down), optuna's definition."""
    points = [
        (t.number, t.user_attrs["accuracy"], t.user_attrs["macs"])
        for t in study.trials
        if t.state == TrialState.COMPLETE
    ]

    def dominates(a: tuple[int, float, int], b: tuple[int, float, int]) -> bool:
        no_worse = a[1] >= b[1] and a[2] <= b[2]
        better = a[1] > b[1] or a[2] < b[2]
        return no_worse and better

    return {p[0] for p in points if not any(dominates(q, p) for q in points)}


def front_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "trial"]


# ---------------------------------------------------------------- front table
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    n_complete=st.integers(0, 25),
    n_failed=st.integers(0, 3),
    n_pruned=st.integers(0, 3),
    multi=st.booleans(),
    grid=st.booleans(),
)
def test_front_equals_brute_force(
    seed: int, n_complete: int, n_failed: int, n_pruned: int, multi: bool, grid: bool
) -> None:
    study = make_study(
        seed, n_complete=n_complete, n_failed=n_failed, n_pruned=n_pruned, multi=multi, grid=grid
    )
    df = pareto_front(study)
    rows = front_rows(df)
    expected = brute_force_front(study)
    assert set(rows["trial"].astype(int)) == expected
    assert len(rows) == len(expected)  # no duplicates
    assert list(rows["macs"]) == sorted(rows["macs"])
    assert list(df.columns) == list(FRONT_COLUMNS)
    if multi:
        assert expected == {t.number for t in study.best_trials}
    # Reference rows come after the front rows and are marked by kind.
    assert set(df["kind"]) <= {"trial", "dense", "vbmf_seed", "recommended"}
    assert (df["kind"] == "dense").sum() == 1
    assert (df["kind"] == "vbmf_seed").sum() == (1 if n_complete else 0)
    recommended = df[df["kind"] == "recommended"]
    try:
        assert recommended["trial"].astype(int).tolist() == [select_trial(study).number]
    except (SelectionError, BudgetError):
        assert recommended.empty
    assert list(front_rows(pareto_front(study, include_reference=False)).index) == list(
        range(len(expected))
    )


def test_front_ties_keep_duplicates_and_drop_equal_accuracy_costlier() -> None:
    values = [(0.9, 300_000), (0.9, 300_000), (0.9, 400_000), (0.8, 300_000), (0.7, 100_000)]
    for multi in (True, False):
        study = make_study(values=values, n_failed=0, n_pruned=0, multi=multi, with_vbmf=False)
        rows = front_rows(pareto_front(study))
        assert sorted(rows["trial"].astype(int)) == [0, 1, 4]


def test_front_columns_and_reference_rows() -> None:
    study = make_study(3)
    df = pareto_front(study)
    dense = df[df["kind"] == "dense"].iloc[0]
    assert pd.isna(dense["trial"])
    assert dense["macs"] == DENSE_MACS and dense["n_params"] == DENSE_PARAMS
    assert dense["macs_ratio"] == 1.0 and dense["params_ratio"] == 1.0
    seed = df[df["kind"] == "vbmf_seed"].iloc[0]
    seed_trial = next(t for t in study.trials if t.user_attrs.get("seed") == "vbmf")
    assert int(seed["trial"]) == seed_trial.number
    rows = front_rows(df)
    assert rows["macs_ratio"].tolist() == pytest.approx((rows["macs"] / DENSE_MACS).tolist())
    # latency is NaN where not measured
    assert rows["latency_ms"].isna().any() or (rows["latency_ms"] == 1.5).all()
    for r in rows.itertuples():
        plan = study.trials[int(r.trial)].user_attrs["plan"]
        assert r.layers == layer_summary(plan)
        assert r.layers.count(" | ") == len(LAYERS) - 1


def test_layer_summary_is_compact() -> None:
    plan = {
        "layers": [
            {"layer": "conv1", "method": "tucker2", "ranks": {"r_out": 8, "r_in": 4}},
            {"layer": "layer1.0.conv1", "method": "svd", "ranks": {"r": 12}},
            {"layer": "fc", "method": "keep", "ranks": {}},
        ]
    }
    assert layer_summary(plan) == "conv1 T2(4,8) | layer1.0.conv1 SVD(12) | fc keep"
    assert layer_summary(None) == ""


def test_all_trials_table_has_every_complete_trial() -> None:
    study = make_study(5, n_complete=15, n_failed=3, n_pruned=2)
    table = all_trials_table(study)
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert table["trial"].astype(int).tolist() == complete
    front = set(front_rows(pareto_front(study))["trial"].astype(int))
    assert set(table[table["on_front"]]["trial"].astype(int)) == front
    assert (table["seed"] == "vbmf").sum() == 1


def test_empty_study_gives_empty_front() -> None:
    study = make_study(n_complete=0, n_failed=2, n_pruned=1)
    df = pareto_front(study, include_reference=False)
    assert df.empty and list(df.columns) == list(FRONT_COLUMNS)
    fig = plot_pareto_front(study)
    assert len(_trace(fig, FRONT_TRACE_NAME).x) == 0
    assert len(plot_history(study).data[0].x) == 0


# ---------------------------------------------------------------- figures
def _trace(fig: Any, name: str) -> Any:
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


@pytest.mark.parametrize("multi", [True, False])
def test_pareto_figure_matches_table(multi: bool) -> None:
    study = make_study(11, n_complete=30, multi=multi)
    n_front = len(front_rows(pareto_front(study)))
    fig = plot_pareto_front(study)
    front = _trace(fig, FRONT_TRACE_NAME)
    assert len(front.x) == len(front.y) == n_front > 0
    assert front.mode == "lines+markers"
    assert len(_trace(fig, "All trials").x) == 30
    assert len(_trace(fig, "VBMF seed").x) == 1
    # x is the MACs share of dense; dense is a labelled line at its accuracy, not a point
    assert fig.layout.xaxis.tickformat == ".1%"
    assert max(front.x) <= 1.0 and "Dense model" not in [t.name for t in fig.data]
    budget = [s for s in fig.layout.shapes if s.name == "budget"]
    assert len(budget) == 1 and budget[0].x0 == 0.6
    dense = [s for s in fig.layout.shapes if s.name == "dense"]
    assert len(dense) == 1 and dense[0].y0 == 0.98
    labels = [a.text for a in fig.layout.annotations]
    assert "budget 60.0%" in labels and "dense model 98.00% (100 % of the cost)" in labels
    # hover carries the trial number and the per-layer plan
    assert front.customdata[0][0].startswith("trial ")
    assert "conv1" in front.customdata[0][2]
    assert "plan" in front.hovertemplate
    absolute = plot_pareto_front(study, x="macs")
    assert [s.x0 for s in absolute.layout.shapes if s.name == "budget"] == [600_000]


def test_pareto_axes_fit_the_trials_not_dense_or_stragglers() -> None:
    """Trials crowd at the budget (44-50 % of the MACs): the x axis spans them, not 0-100 %;
    a trial that fine-tuned badly (0.30) does not stretch the y axis, and the title counts it."""
    values = [(0.978, 448_000), (0.982, 449_000), (0.984, 493_000), (0.986, 497_000)]
    values += [(0.30, 470_000), (0.975, 480_000)]
    study = make_study(3, n_complete=0, n_failed=0, n_pruned=0, values=values, with_vbmf=False)
    study.set_user_attr("dense", {"accuracy": 0.986, "macs": DENSE_MACS, "n_params": 50_000})
    study.set_user_attr("budget", {"max_macs": 500_000, "max_params": None})
    fig = plot_pareto_front(study)
    low, high = fig.layout.xaxis.range
    assert 0.40 < low < 0.448 and 0.50 < high < 0.55
    y_low, y_high = fig.layout.yaxis.range
    assert 0.97 < y_low < 0.978 and 0.986 < y_high <= 1.0
    assert fig.layout.yaxis.title.text == "validation accuracy (1 trial below the axis)"
    assert len(_trace(fig, "All trials").x) == 6  # still drawn, out of view


def test_pareto_figure_without_budget_has_no_line() -> None:
    fig = plot_pareto_front(make_study(2, budget_macs=None))
    assert not [s for s in fig.layout.shapes if s.name == "budget"]
    with pytest.raises(RankoptError, match="x axis"):
        plot_pareto_front(make_study(2), x="flops")


def test_history_has_one_point_per_completed_trial() -> None:
    study = make_study(7, n_complete=17, n_failed=4, n_pruned=3)
    fig = plot_history(study)
    trials = _trace(fig, "Trials")
    assert len(trials.x) == 17
    best = list(_trace(fig, "Best so far").y)
    assert best == sorted(best)
    assert best[-1] == max(t.user_attrs["accuracy"] for t in study.trials if t.values)


def test_layer_map_rows_are_front_trials() -> None:
    study = make_study(9, n_complete=25)
    n_front = len(front_rows(pareto_front(study)))
    heat = plot_layer_map(study).data[0]
    assert len(heat.z) == n_front
    assert list(heat.x) == [name for name, _, _ in LAYERS]
    # keep cells show 100 %, other cells a fraction in (0, 100] %
    for text_row in heat.text:
        for cell in text_row:
            assert cell == "keep<br>100%" or re.fullmatch(r"\w+\([\d,]+\)(<br>\d+%)?", cell)


def test_write_html_embeds_plotly_once(tmp_path: Path) -> None:
    study = make_study(1)
    path = write_html(
        [plot_pareto_front(study), plot_history(study)], tmp_path / "f.html", title="t"
    )
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']https?:", text)
    assert text.count("plotly.js v") <= 2  # the bundle's banner, once
    assert text.count('class="plotly-graph-div"') == 2
    assert len(text) > 1_000_000  # plotly.js is inside the file


# ---------------------------------------------------------------- report
PROFILE = {
    "schema_version": 1,
    "points": {
        "conv1": {"tucker2": [[60_000, 0.5], [150_000, 0.02]]},
        "layer1.0.conv1": {"tucker2": [[25_000, 0.2], [100_000, 0.01]], "cp": [[50_000, 1e3]]},
    },
    "dense_macs": {"conv1": 250_000, "layer1.0.conv1": 250_000},
    "n_images": 256,
    "wall_time_s": 12.0,
    "failed": {"layer1.0.conv1": {"cp": "ALS diverged"}},
}


def test_report_is_standalone_and_has_the_table(tmp_path: Path) -> None:
    study = make_study(4, n_complete=20)
    study.set_user_attr("sensitivity", PROFILE)
    out = report(study, tmp_path / "report.html", study_args=["--study-name", "synthetic"])
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']https?:", text)
    assert text.count('class="plotly-graph-div"') == 4  # front, layer map, history, profile
    assert 'class="dataframe front" id="pareto-front">' in text
    n_rows = len(pareto_front(study))
    table = text.split('id="pareto-front">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == n_rows + 1  # header + one per row
    best = select_trial(study)
    acc, macs = best.user_attrs["accuracy"], best.user_attrs["macs"]
    # the answer first: the recommended plan, its gains, the commands; then the front
    lead = text.index("The recommended plan is <b>trial")
    assert f"<b>trial {best.number}</b>" in text
    assert lead < text.index("id='gains'") < text.index('id="pareto-front"')
    assert f"<b>{100 * (acc - 0.98):+.2f} points</b>" in text
    assert f"<b>{macs / DENSE_MACS:.1%}</b> of dense ({macs:,} per image)" in text
    assert "rankopt export --study-name synthetic --out plan.json" in text
    assert "rankopt apply plan.json --model tiny --data mnist --out small.onnx" in text
    assert text.index("id='commands'") < text.index('id="pareto-front"')
    assert "layer1.0.conv2" in text and "rank / full rank" in text
    # settings as a readable two-column table; raw JSON only inside <details>
    settings = text.split("id='settings'>", 1)[1].split("</table>", 1)[0]
    assert "MACs &lt;= 600,000 (60.0% of dense)" in settings
    assert "search: sampler</th><td class='l'>tpe" in settings
    assert "validation accuracy 98.00%, 1,000,000 MACs, 50,000 params" in settings
    assert "ALS diverged" not in text.split("<details id='raw'>", 1)[0]
    assert "FAIL" in text and "mnist" in text


def test_sensitivity_heat_map_reads_the_profile() -> None:
    study = make_study(4, n_complete=3)
    assert sensitivity_table(study).empty
    assert len(plot_sensitivity(study).data[0].y or ()) == 0
    study.set_user_attr("sensitivity", PROFILE)
    table = sensitivity_table(study)
    assert len(table) == 5 and table["macs_share"].tolist()[:2] == [0.24, 0.6]
    heat = plot_sensitivity(study).data[0]
    assert list(heat.y) == ["conv1 · Tucker-2", "layer1.0.conv1 · Tucker-2", "layer1.0.conv1 · CP"]
    assert list(heat.x) == [f"{s:.1%}" for s in PROFILE_SHARES]
    col = list(PROFILE_SHARES).index
    # at a measured share the cell is the measured score; below the cheapest one it is blank
    assert heat.text[0][col(0.6)] == "0.02" and heat.z[0][col(0.6)] == pytest.approx(
        math.log10(0.02)
    )
    assert heat.text[1][col(0.1)] == "0.2" and heat.text[1][col(0.05)] == ""
    # between points: linear in log MACs, as the search interpolates
    t = (math.log(0.4) - math.log(0.24)) / (math.log(0.6) - math.log(0.24))
    assert float(heat.text[0][col(0.4)]) == pytest.approx(0.5 + t * (0.02 - 0.5), rel=1e-2)
    assert heat.text[2][col(0.25)] == "failed" and heat.text[2][col(0.15)] == ""


# ---------------------------------------------------------------- selection and export
def test_select_trial_by_number_and_budget() -> None:
    study = make_study(8, n_complete=20)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert select_trial(study, trial=complete[3].number).number == complete[3].number
    chosen = select_trial(study, max_macs=500_000)
    fits = [t for t in complete if t.user_attrs["macs"] <= 500_000]
    assert chosen.user_attrs["accuracy"] == max(t.user_attrs["accuracy"] for t in fits)
    assert select_trial(study, max_macs=0.5).number == chosen.number  # fraction of dense
    recommended = select_trial(study)  # study budget 600k MACs
    within = [t for t in complete if t.user_attrs["macs"] <= 600_000]
    assert recommended.user_attrs["accuracy"] == max(t.user_attrs["accuracy"] for t in within)


def test_the_recommended_trial_has_the_lowest_validation_loss() -> None:
    def trial(acc: float, macs: int, loss: float | None) -> optuna.trial.FrozenTrial:
        attrs: dict[str, Any] = {"plan": make_plan(random.Random(macs)), "macs": macs}
        attrs.update(accuracy=acc, macs_ratio=macs / DENSE_MACS)
        if loss is not None:
            attrs["val_loss"] = loss
        return optuna.trial.create_trial(values=[acc], user_attrs=attrs)

    rows = [
        (0.95, 100_000, 0.20),  # 0: the lowest loss, not the most accurate
        (0.97, 300_000, 0.31),  # 1: the most accurate
        (0.95, 400_000, 0.27),  # 2
        (0.96, 200_000, 0.25),  # 3
        (0.95, 250_000, 0.20),  # 4: same loss and accuracy as 0, more MACs
        (0.96, 150_000, 0.25),  # 5: same loss and accuracy as 3, fewer MACs
        (0.99, 900_000, 0.10),  # 6: the best, over the study budget
    ]
    study = optuna.create_study(study_name="by-loss", direction="maximize")
    study.set_user_attr("budget", {"max_macs": 500_000})
    for acc, macs, loss in rows:
        study.add_trial(trial(acc, macs, loss))
    assert [t.number for t in best_first(study.trials)] == [6, 0, 4, 5, 3, 2, 1]
    assert select_trial(study).number == 0  # within 500k MACs
    assert select_trial(study, max_macs=220_000).number == 0
    assert select_trial(study, max_macs=100_000).number == 0  # the boundary fits
    assert export_plan(study).provenance["trial"] == 0
    without_0_and_4 = [t for t in study.trials if t.number not in (0, 4, 6)]
    assert best_first(without_0_and_4)[0].number == 5  # loss tie: fewer MACs
    # one trial without a loss (a study written before it was recorded): by accuracy
    older = [*study.trials, trial(0.98, 50_000, None)]
    assert [t.user_attrs["accuracy"] for t in best_first(older)][:3] == [0.99, 0.98, 0.97]


def test_the_recommended_plan_is_never_slower_than_dense_and_the_front_shows_the_ratios() -> None:
    """Issue 37: trials predicted above the study's latency cap are never recommended (nor
    exported by --max-macs); the front shows each plan's latency ratio beside its MACs."""
    study = optuna.create_study(study_name="capped", direction="maximize")
    study.set_user_attr(
        "dense",
        {
            "accuracy": 0.97,
            "macs": DENSE_MACS,
            "n_params": 1000,
            "latency_ms": {"1": 0.2, "64": 10.0},
        },
    )
    study.set_user_attr(
        "budget",
        {
            "max_macs": 500_000,
            "max_params": None,
            "max_latency_ms": [],
            "latency_cap_ms": [[1, 0.2], [64, 10.0]],
        },
    )
    rows = [(0.96, 300_000, 0.10, 0.25, 9.0), (0.95, 200_000, 0.20, 0.18, 8.0)]
    for acc, macs, loss, ms1, ms64 in rows:  # trial 0: the lowest loss, slower at batch 1
        attrs = {"plan": make_plan(random.Random(macs)), "macs": macs, "val_loss": loss}
        attrs.update(accuracy=acc, macs_ratio=macs / DENSE_MACS)
        attrs.update(latency_ms_batch1=ms1, latency_ms_batch64=ms64)
        study.add_trial(optuna.trial.create_trial(values=[acc], user_attrs=attrs))
    assert select_trial(study).number == 1
    assert select_trial(study, max_macs=0.9).number == 1
    plan = export_plan(study)
    assert plan.metrics["latency_ratio_batch1"] == pytest.approx(0.9)
    assert plan.metrics["latency_ratio_batch64"] == pytest.approx(0.8)
    df = pareto_front(study)
    cols = list(df.columns)
    assert cols.index("latency_ratio_batch1") == cols.index("macs_ratio") + 1
    slow = df[df["trial"] == 0].iloc[0]  # on the front (most accurate), not recommended
    assert slow["latency_ratio_batch1"] == pytest.approx(1.25)
    assert slow["latency_ratio_batch64"] == pytest.approx(0.9)
    dense = df[df["kind"] == "dense"].iloc[0]
    assert dense["latency_ratio_batch1"] == 1.0 and dense["latency_ratio_batch64"] == 1.0
    summary = plan_summary(study)
    assert summary is not None and summary.trial == 1
    assert "MACs 20.0 % of dense, predicted latency 90 % at batch 1, 80 % at batch 64" in (
        summary.gains()
    )
    study.set_user_attr("budget", {"max_macs": 500_000})  # a study made with --allow-slower
    assert select_trial(study).number == 0


def test_the_table_and_the_figure_show_the_recommended_trial_off_the_front() -> None:
    study = optuna.create_study(study_name="off-front", direction="maximize")
    study.set_user_attr("budget", {"max_macs": 500_000})
    for acc, macs, loss in [(0.97, 200_000, 0.30), (0.95, 300_000, 0.20)]:
        attrs = {"plan": make_plan(random.Random(macs)), "macs": macs, "val_loss": loss}
        attrs.update(accuracy=acc, macs_ratio=macs / DENSE_MACS)
        study.add_trial(optuna.trial.create_trial(values=[acc], user_attrs=attrs))
    df = pareto_front(study)
    # trial 1 has the lowest loss but trial 0 dominates it (more accurate, fewer MACs)
    assert front_rows(df)["trial"].astype(int).tolist() == [0]
    assert df[df["kind"] == "recommended"]["trial"].astype(int).tolist() == [1]
    fig = plot_pareto_front(study)
    marker = _trace(fig, "Recommended plan")
    assert list(marker.x) == [0.3] and list(marker.y) == [0.95]
    assert marker.customdata[0][0] == "trial 1"
    assert "recommended" not in set(pareto_front(study, include_reference=False)["kind"])


def test_select_trial_errors_are_one_line_and_list_choices() -> None:
    study = make_study(8, n_complete=6, n_failed=2)
    complete = sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    failed = next(t.number for t in study.trials if t.state == TrialState.FAIL)
    listing = ", ".join(map(str, complete))
    with pytest.raises(SelectionError) as info:
        select_trial(study, trial=failed)
    msg = str(info.value)
    assert "\n" not in msg and "FAIL" in msg and "NaN loss" in msg and listing in msg
    with pytest.raises(SelectionError) as info:
        select_trial(study, trial=999)
    assert "no trial 999" in str(info.value) and listing in str(info.value)
    smallest = min(t.user_attrs["macs"] for t in study.trials if t.state == TrialState.COMPLETE)
    with pytest.raises(BudgetError) as budget_info:
        select_trial(study, max_macs=smallest - 1)
    msg = str(budget_info.value)
    assert "\n" not in msg and f"{smallest:,}" in msg
    with pytest.raises(BudgetError):
        select_trial(study, max_macs=-3)
    with pytest.raises(SelectionError):
        select_trial(study, trial=complete[0], max_macs=0.5)
    dense_row = pareto_front(study).query("kind == 'dense'")
    with pytest.raises(SelectionError, match="trial number"):
        select_trial(study, trial=dense_row["trial"].iloc[0])
    front = front_rows(pareto_front(study))
    assert select_trial(study, trial=front["trial"].iloc[-1]).number == front["trial"].iloc[-1]


def test_select_trial_abbreviates_long_listings() -> None:
    study = make_study(1, n_complete=60, n_failed=0, n_pruned=0)
    with pytest.raises(SelectionError, match=r"\.\.\. \(40 more\)"):
        select_trial(study, trial=500)


def test_export_plan_fills_metrics_and_provenance() -> None:
    study = make_study(6)
    chosen = select_trial(study)
    plan = export_plan(study)
    d = plan.to_dict() if hasattr(plan, "to_dict") else plan
    assert d["provenance"]["study"] == "synthetic"
    assert d["provenance"]["trial"] == chosen.number
    assert d["provenance"]["rankopt_version"] == "0.1.0"
    assert d["metrics"]["macs"] == chosen.user_attrs["macs"]
    assert d["metrics"]["accuracy"] == chosen.user_attrs["accuracy"]
    assert [e["layer"] for e in d["layers"]] == [name for name, _, _ in LAYERS]
    # the stored plan in the study is not modified
    assert chosen.user_attrs["plan"]["provenance"] == {}


# ---------------------------------------------------------------- storage
def test_load_study_by_name_and_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(1, n_complete=4, storage=url, name="alpha")
    loaded = load_study(url, None)  # one study: the name may be omitted
    assert loaded.study_name == "alpha" and len(loaded.trials) == 8
    assert len(front_rows(pareto_front(loaded))) == len(brute_force_front(loaded))
    make_study(2, n_complete=2, storage=url, name="beta")
    assert load_study(url, "beta").study_name == "beta"
    with pytest.raises(StorageError) as info:
        load_study(url, "gamma")
    assert "alpha, beta" in str(info.value) and "'gamma'" in str(info.value)
    with pytest.raises(StorageError, match=r"holds 2 studies.*alpha, beta"):
        load_study(url, None)
    assert optuna.get_all_study_names(url) == ["alpha", "beta"]  # nothing created


def test_load_study_never_creates(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no such file"):
        load_study(f"sqlite:///{missing}", "x")
    assert not missing.exists()
    with pytest.raises(StorageError, match="no such file"):
        load_study(str(missing), None)


def test_storage_errors_mask_passwords() -> None:
    assert mask_url("postgresql://user:s3cret@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert mask_url("sqlite:///a.db") == "sqlite:///a.db"
    with pytest.raises(StorageError) as info:
        load_study("notadriver://user:s3cret@127.0.0.1:9/db", "x")
    msg = str(info.value)
    assert "s3cret" not in msg and "user:***@127.0.0.1" in msg and "\n" not in msg


def test_nan_free_metrics_in_export() -> None:
    study = make_study(12)
    d = export_plan(study, max_macs=0.9)
    d = d.to_dict() if hasattr(d, "to_dict") else d
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in d["metrics"].values())


def test_write_png_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import rankopt.studies._html as figures

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "kaleido" else find_spec(n, *a)
    )
    monkeypatch.setattr(figures, "_find_chromium", lambda: None)
    with pytest.raises(RankoptError, match=r"kaleido.*Chromium") as info:
        figures.write_png(plot_history(make_study(1)), tmp_path / "x.png")
    assert "\n" not in str(info.value)


def test_layer_map_takes_full_ranks_from_the_plan_or_the_registry() -> None:
    """CP layers (no recorded full ranks) and recorded full ranks plot without NaN."""
    layers = [
        # CP: full rank min(T, S)*Dh*Dw = 16*9 = 144 from the registry -> 72/144 = 50 %
        {"layer": "a", "method": "cp", "ranks": {"r": 72}, "weight_shape": [32, 16, 3, 3]},
        # recorded full ranks win over the rule (which would give 4/16 and 4/32)
        {
            "layer": "b",
            "method": "tucker2",
            "ranks": {"r_in": 4, "r_out": 4},
            "weight_shape": [32, 16, 3, 3],
            "full_ranks": {"r_in": 8, "r_out": 16},
        },
        # a method this process does not know: only the recorded full ranks help
        {"layer": "c", "method": "mine", "ranks": {"r": 5}, "full_ranks": {"r": 20}},
        {"layer": "d", "method": "keep", "ranks": {}, "weight_shape": [10, 32]},
    ]
    plan = {**make_plan(random.Random(0)), "layers": [{"options": {}, **e} for e in layers]}
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.9, 1000], user_attrs={"plan": plan, "accuracy": 0.9, "macs": 1000}
        )
    )
    heat = plot_layer_map(study).data[0]
    assert list(heat.text[0]) == [
        "CP(72)<br>50%",
        "T2(4,4)<br>38%",
        "mine(5)<br>25%",
        "keep<br>100%",
    ]
    assert not any("n/a" in cell for cell in heat.customdata[0])
    assert "Tucker-2" in list(heat.colorbar.ticktext)


def _rewritten_with_the_record(old: optuna.Study, name: str) -> optuna.Study:
    """The same study as the search writes it now: its record through StudyRecord."""
    import dataclasses

    from rankopt.storage import STUDY_SCHEMA_VERSION, StudyRecord

    record = dataclasses.replace(StudyRecord.of(old), schema_version=STUDY_SCHEMA_VERSION)
    new = optuna.create_study(directions=["maximize", "minimize"], study_name=name)
    for key, value in record.to_user_attrs().items():
        new.set_user_attr(key, value)
    new.add_trials(old.trials)
    return new


def test_a_study_written_before_the_record_reads_as_the_record() -> None:
    from rankopt.storage import STUDY_SCHEMA_VERSION, StudyRecord
    from rankopt.studies import plan_summary

    old = make_study(3)  # user attrs set one by one, no schema_version: how 0.x wrote them
    assert "schema_version" not in old.user_attrs
    record = StudyRecord.of(old)
    assert record.schema_version == 1
    assert (record.model, record.data, record.input_shape) == ("tiny", "mnist", (1, 28, 28))
    assert (record.max_macs, record.max_params, record.max_latency_ms) == (600_000, None, ())
    assert record.dense.metrics() == {
        "accuracy": 0.98,
        "macs": float(DENSE_MACS),
        "n_params": float(DENSE_PARAMS),
    }
    assert record.objectives == ("accuracy", "macs")

    new = _rewritten_with_the_record(old, old.study_name)
    assert new.user_attrs["schema_version"] == STUDY_SCHEMA_VERSION == 2
    assert StudyRecord.of(new) == StudyRecord(**{**vars(record), "schema_version": 2})
    pd.testing.assert_frame_equal(pareto_front(old), pareto_front(new))
    pd.testing.assert_frame_equal(all_trials_table(old), all_trials_table(new))
    assert select_trial(old).number == select_trial(new).number
    assert export_plan(old) == export_plan(new)
    assert plan_summary(old) == plan_summary(new)


def test_the_study_record_survives_its_json() -> None:
    from rankopt.storage import DenseReference, StudyRecord

    record = StudyRecord(
        model="resnet8",
        data="mnist5k",
        fingerprint="f" * 16,
        input_shape=(1, 28, 28),
        dense=DenseReference(0.99, 9_480_768, 77_754, {1: 0.21, 64: 5.5}),
        max_macs=4_740_384,
        max_latency_ms=((1, 0.1), (64, 2.75)),
        objectives=("accuracy", "latency_ms"),
        settings={"seed": 0, "finetune": {"steps": 120}},
        rankopt_version="0.9.0",
    )
    attrs = record.to_user_attrs()
    assert attrs["dense"]["latency_ms"] == {"1": 0.21, "64": 5.5}  # JSON object keys
    assert attrs["budget"]["max_latency_ms"] == [[1, 0.1], [64, 2.75]]
    assert StudyRecord.from_user_attrs(attrs) == record
