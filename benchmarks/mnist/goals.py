"""The issue's goals, checked against a run's rows, and the run's measurement noise."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.mnist.result import BenchResult


def by_method(rows: Sequence[dict[str, Any]], budget: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["budget"] == budget:
            out.setdefault(str(r["method"]), []).append(r)
    return out


def expectation(result: BenchResult) -> list[str]:
    """Where the issue's goals held and where they did not."""
    lines: list[str] = []
    budgets = sorted({r["budget"] for r in result.budget_rows}, reverse=True)
    for budget in budgets:
        groups = by_method(result.budget_rows, budget)
        means = {
            m: statistics.mean(r["test_accuracy"] for r in rs)
            for m, rs in groups.items()
            if all(math.isfinite(r["test_accuracy"]) for r in rs)
            and all(r["macs_ratio"] <= budget + 1e-9 for r in rs)  # over budget: not compared
        }
        mine = means.get("search_tpe", math.nan)
        # The baselines: one-shot recipes, the greedy allocator and the peers. Random
        # search is rankopt's own search with another sampler: a stricter comparison.
        baselines = {m: a for m, a in means.items() if not m.startswith("search_")}
        best_other = max(baselines.items(), key=lambda kv: kv[1]) if baselines else ("-", math.nan)
        ok = math.isfinite(mine) and mine >= best_other[1] + 0.01
        lines.append(
            f"- {budget:.0%}: search_tpe {mine:.4f} vs the best recipe, allocator or peer "
            f"{best_other[0]} {best_other[1]:.4f} (goal: >= it + 0.01): "
            + ("**met**" if ok else "**not met**")
        )
        random_search = means.get("search_random", math.nan)
        if math.isfinite(random_search):
            ok = math.isfinite(mine) and mine >= random_search + 0.01
            lines.append(
                f"- {budget:.0%}: search_tpe {mine:.4f} vs search_random {random_search:.4f} "
                "(the same search, random sampling, no seed trials; + 0.01): "
                + ("**met**" if ok else "**not met**")
            )
        hv = {
            s: [
                h["hypervolume"]
                for h in result.hypervolumes
                if h["budget"] == budget and h["sampler"] == s
            ]
            for s in ("tpe", "random")
        }
        if hv["tpe"] and hv["random"]:
            ratio = statistics.mean(hv["tpe"]) / statistics.mean(hv["random"])
            # A trial's point (a, m) dominates an area of at most a * (1 - m) <= a, so a study
            # whose every trial matched dense validation accuracy at zero MACs bounds tpe's HV.
            bound = result.dense_val_accuracy / statistics.mean(hv["random"])
            lines.append(
                f"- {budget:.0%}: hypervolume tpe {statistics.mean(hv['tpe']):.4f} / random "
                f"{statistics.mean(hv['random']):.4f} = {ratio:.3f}x (goal >= 1.2): "
                + ("**met**" if ratio >= 1.2 else "**not met**")
                + f"; bound for any search that does not beat dense validation accuracy "
                f"({result.dense_val_accuracy:.4f}): {bound:.3f}x"
            )
    if result.seed_row:
        gap = result.seed_row["dense_accuracy"] - result.seed_row["test_accuracy"]
        lines.append(
            f"- seed recipe {result.seed_row['test_accuracy']:.4f} vs dense "
            f"{result.seed_row['dense_accuracy']:.4f}: {100 * gap:.1f} points below "
            "(goal: within 2): " + ("**met**" if gap <= 0.02 else "**not met**")
        )
    lines += noise(result)
    rhos = [s["rho"] for s in result.spearman if math.isfinite(s["rho"])]
    rhos_loss = [s["rho_loss"] for s in result.spearman if math.isfinite(s["rho_loss"])]
    if rhos:
        lines.append(
            f"- proxy vs final Spearman: mean rho {statistics.mean(rhos):.3f} over "
            f"{len(rhos)} studies (goal >= 0.7): "
            + ("**met**" if statistics.mean(rhos) >= 0.7 else "**not met**")
            + (
                f"; of the validation loss (negated): {statistics.mean(rhos_loss):.3f}"
                if rhos_loss
                else ""
            )
        )
    return lines


def noise(result: BenchResult) -> list[str]:
    """How large a difference the run can resolve: the binomial standard deviation of an
    accuracy measured on the test and validation splits, and the spread of one plan's test
    accuracy over final fine-tune seeds (the fixed rows, which run every seed)."""
    p = result.seed_row.get("dense_accuracy", math.nan) if result.seed_row else math.nan
    out = []
    if math.isfinite(p) and result.split_sizes:
        parts = [
            f"{name} split ({n} images) {100 * math.sqrt(p * (1 - p) / n):.2f}"
            for name, n in result.split_sizes.items()
            if n > 0
        ]
        out.append(
            f"- measurement noise: binomial std of an accuracy near {p:.3f}, in points: "
            + ", ".join(parts)
            + " (the search picks its plan by validation loss, measured on the val split)"
        )
    spreads = [
        statistics.stdev(r["test_accuracy"] for r in rs)
        for budget in sorted({r["budget"] for r in result.budget_rows})
        for m, rs in by_method(result.budget_rows, budget).items()
        if not m.startswith("search_")
        and len(rs) >= 2
        and all(math.isfinite(r["test_accuracy"]) for r in rs)
    ]
    if spreads:
        out.append(
            "- the same plan's test accuracy over final fine-tune seeds: std "
            f"{100 * statistics.mean(spreads):.2f} points (mean over {len(spreads)} fixed rows)"
        )
    return out
