"""Goals and the markdown file of the equal-latency benchmark, from its rows alone.

A row is a dict (``fashion_latency_rows.json``): ``label``, ``budget`` (fraction of dense
latency), ``seed``, ``test_accuracy``, ``accuracy_calibrated``, ``macs_ratio``,
``params_ratio``, ``latency_ort_b1`` / ``latency_ort_b64`` / ``latency_torch_b1`` /
``latency_torch_b64`` (measured latency / dense), ``row_wall_s`` and ``note``.
Compute first (:func:`goal_lines`, :func:`budget_table`), then render (:func:`render`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common.report import machine_facts, md_table
from benchmarks.fashion_latency.searches import DECOMPOSITION, JOINT, SEARCH_LABELS

POINT = 0.01
"""One accuracy point."""
PRUNING = "torch-pruning"
TARGET_LOWEST = 0.35
"""Goal: the lowest reachable latency, fraction of dense."""
Row = Mapping[str, Any]


def finite(values: Sequence[float]) -> list[float]:
    """The finite values (NaN and missing ones dropped)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_of(rows: Sequence[Row], key: str) -> float:
    """Mean of ``key`` over ``rows`` (finite values only; NaN when none)."""
    vals = finite([r.get(key, math.nan) for r in rows])
    return statistics.fmean(vals) if vals else math.nan


def mean_pm(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± std`` (sample std) of the finite values, ``mean`` for one, ``n/a`` for none."""
    vals = finite(values)
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def by_label(rows: Sequence[Row], budget: float) -> dict[str, list[Row]]:
    """Rows of one budget grouped by label, in first-seen order."""
    out: dict[str, list[Row]] = {}
    for r in rows:
        if r.get("budget") == budget:
            out.setdefault(str(r["label"]), []).append(r)
    return out


def worst_latency(row: Row) -> float:
    """The larger of a row's ONNX Runtime ratios at batch 1 and 64 (NaN when missing)."""
    b1, b64 = row.get("latency_ort_b1", math.nan), row.get("latency_ort_b64", math.nan)
    if not (math.isfinite(b1) and math.isfinite(b64)):
        return math.nan
    return max(b1, b64)


def verdict(gap: float, unit: str = "points", scale: float = POINT) -> str:
    """``**met** (+x unit)`` when ``gap`` >= 0, ``**missed** by x unit``, or not measured."""
    if not math.isfinite(gap):
        return "**not measured**"
    if gap >= 0:
        return f"**met** (+{gap / scale:.2f} {unit})"
    return f"**missed** by {-gap / scale:.2f} {unit}"


def _primary(groups: Mapping[str, Sequence[Row]]) -> str:
    """The rankopt row the goals are about: the joint search, else decomposition only."""
    if math.isfinite(mean_of(groups.get(JOINT, []), "test_accuracy")):
        return JOINT
    return DECOMPOSITION


def accuracy_goals(rows: Sequence[Row], budget: float) -> list[str]:
    """rankopt >= torch-pruning + 1 point, and >= every other row, at one budget."""
    groups = by_label(rows, budget)
    main = _primary(groups)
    acc = mean_of(groups.get(main, []), "test_accuracy")
    pruning = mean_of(groups.get(PRUNING, []), "test_accuracy")
    lines = [
        f"{budget:.0%}: {main} {acc:.4f} vs {PRUNING} {pruning:.4f}, goal >= it + 1 point: "
        f"{verdict(acc - (pruning + POINT))}"
    ]
    others = {label: mean_of(g, "test_accuracy") for label, g in groups.items() if label != main}
    others = {k: v for k, v in others.items() if math.isfinite(v)}
    if others:
        best = max(others, key=lambda k: others[k])
        lines.append(
            f"{budget:.0%}: {main} {acc:.4f} vs the best other row ({best}) "
            f"{others[best]:.4f}, goal >= it: {verdict(acc - others[best])}"
        )
    else:
        lines.append(f"{budget:.0%}: no other row has a test accuracy")
    return lines


def latency_goals(rows: Sequence[Row], budget: float) -> list[str]:
    """Every search row <= 1.0x dense on ONNX Runtime at batch 1 and 64 (worst seed), and
    how far its measured latency is from the budget itself."""
    lines = []
    for label in SEARCH_LABELS:
        group = by_label(rows, budget).get(label, [])
        worst = finite([worst_latency(r) for r in group])
        if not worst:
            continue
        top = max(worst)
        lines.append(
            f"{budget:.0%}: {label}: slowest seed's measured ORT latency {top:.3f}x dense "
            f"(max of b1, b64), goal <= 1.0x: {verdict(1.0 - top, 'x dense', 1.0)}; vs the "
            f"budget {budget:.2f}x: {verdict(budget - top, 'x dense', 1.0)}"
        )
    return lines


def lowest_goal(rows: Sequence[Row], reach: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lowest reachable latency <= 35 % of dense: as the search predicts it and as the
    search rows measured it."""
    lines = []
    for r in reach:
        pct = float(r.get("percent", math.nan))
        lines.append(
            f"lowest reachable latency, {r['label']} (the search's own refusal of "
            f"{100 * float(r.get('probe', 0.001)):g}% at batch {r.get('batch_size', 1)}): "
            f"{pct:.1f}% of dense predicted, goal <= {TARGET_LOWEST:.0%}: "
            f"{verdict(TARGET_LOWEST - pct / 100, 'points of dense', 0.01)}"
            + ("" if math.isfinite(pct) else f" ({r.get('message', '')})")
        )
    measured = [(worst_latency(r), r) for r in rows if r["label"] in SEARCH_LABELS]
    measured = [(w, r) for w, r in measured if math.isfinite(w)]
    if measured:
        low, row = min(measured, key=lambda p: p[0])
        lines.append(
            f"lowest measured latency of a search row: {low:.1%} of dense (max of b1, b64; "
            f"{row['label']}, budget {row['budget']:.0%}, seed {row['seed']}), goal <= "
            f"{TARGET_LOWEST:.0%}: {verdict(TARGET_LOWEST - low, 'points of dense', 0.01)}"
        )
    return lines


def goal_lines(
    rows: Sequence[Row], budgets: Sequence[float], reach: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every goal of issue 37 item 4, with its numbers, met or missed, and by how much."""
    lines: list[str] = []
    for b in budgets:
        lines += accuracy_goals(rows, b)
        lines += latency_goals(rows, b)
    return lines + lowest_goal(rows, reach)


def budget_table(rows: Sequence[Row], budget: float) -> str:
    """One line per row label at ``budget``: mean ± std over seeds, best accuracy first."""
    groups = by_label(rows, budget)
    means = {k: mean_of(g, "test_accuracy") for k, g in groups.items()}
    order = sorted(groups, key=lambda k: -means[k] if math.isfinite(means[k]) else 1.0)
    table = []
    for label in order:
        g = groups[label]

        def col(key: str, digits: int, g: Sequence[Row] = g) -> str:
            return mean_pm([r.get(key, math.nan) for r in g], digits)

        table.append(
            [
                label,
                len(finite([r.get("test_accuracy", math.nan) for r in g])),
                col("test_accuracy", 4),
                col("accuracy_calibrated", 4),
                col("latency_ort_b1", 3),
                col("latency_ort_b64", 3),
                col("latency_torch_b1", 3),
                col("latency_torch_b64", 3),
                col("macs_ratio", 3),
                col("params_ratio", 3),
                col("row_wall_s", 0),
                str(g[0].get("note", "")),
            ]
        )
    header = [
        "row",
        "seeds",
        "test accuracy (final FT)",
        "calibrated, before FT",
        "ORT b1",
        "ORT b64",
        "torch b1",
        "torch b64",
        "MACs ratio",
        "params ratio",
        "wall s",
        "note",
    ]
    return md_table(header, table)


def _facts(facts: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in facts.items())


def render(meta: Mapping[str, Any], rows: Sequence[Row]) -> str:
    """The markdown file: goals first, then one table per budget, then how it was run."""
    task = meta["task"]
    budgets = meta["budgets"]
    dense_ft = finite(meta.get("dense_ft", []))
    parts = [
        "# Benchmark: Fashion-MNIST resnet8 at equal measured latency",
        "",
        "Written by `python -m benchmarks.fashion_latency`; do not edit by hand. Reproduce:",
        "",
        f"```\n{meta['command']}\n```",
        "",
        f"{task['model_name']} on {task['data_name']} (dense test accuracy "
        f"{task['dense_test_accuracy']:.4f}"
        + (f", dense + final FT {mean_pm(dense_ft)}" if dense_ft else "")
        + f", {task['dense_macs']} MACs). Latency budgets "
        f"{', '.join(f'{b:.0%}' for b in budgets)} of dense on ONNX Runtime, 1 thread, "
        f"batch 1 and 64; seeds {', '.join(map(str, meta['seeds']))}; searches of "
        f"{meta['trials']} trials. Every row: {meta['finetune']}. Latency columns: measured "
        "latency / dense, each row timed side by side with dense at 1 thread (ORT: ONNX "
        "Runtime, torch: eager PyTorch). Accuracy: the official 10,000 test images, mean ± "
        "std over the seeds.",
        "",
        "## Goals",
        "",
        *[f"- {line}" for line in goal_lines(rows, budgets, meta.get("reach", []))],
        "",
    ]
    for b in budgets:
        parts += [f"## Budget {b:.0%} of dense latency", "", budget_table(rows, b), ""]
    parts += ["## How the rows were made", "", *[f"- {line}" for line in meta["method"]], ""]
    if meta.get("reach"):
        parts += ["The search's refusals (lowest reachable latency):", ""]
        parts += [f"- {r['label']}: {r['message']}" for r in meta["reach"]] + [""]
    if meta.get("notes"):
        parts += ["Notes on this run:", "", *[f"- {n}" for n in meta["notes"]], ""]
    parts += [
        "## Machine",
        "",
        f"- start: {_facts(meta['facts_start'])}",
        f"- end: {_facts(machine_facts())}",
        f"- wall time: {float(meta.get('wall_s', math.nan)) / 60:.1f} min",
        "",
    ]
    return "\n".join(parts)
