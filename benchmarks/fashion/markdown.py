"""The markdown file of a Fashion-MNIST benchmark run (from its rows, studies and meta)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.common.report import machine_facts, md_table
from benchmarks.fashion import report
from benchmarks.fashion.searches import SearchRun


def render(
    meta: dict[str, Any], rows: list[dict[str, Any]], runs: list[SearchRun], curves: Path
) -> str:
    """The markdown file: the answer (goals and the head table) first, then the details.

    Args:
        meta: What :func:`benchmarks.fashion.__main__.dump` writes as ``fashion_meta.json``
            (task, settings, machine facts, dense + FT accuracies, peer lines, wall time).
        rows: Every measured row (the seed recipe's has ``budget`` None).
        runs: Every search study.
        curves: The best-so-far plot, linked from the file.
    """
    facts_end = machine_facts()
    facts_start = meta["facts_start"]
    task = meta["task"]
    budgets = meta["budgets"]
    dense_ft = meta["dense_ft"]
    seed_row = next((r for r in rows if r["budget"] is None), {})
    goal_lines = report.goals(
        rows,
        runs,
        budgets,
        dense_test=task["dense_test_accuracy"],
        seed_row=seed_row,
        dense_ft=dense_ft,
    )
    head = []
    for b in budgets:
        groups = report.by_label(rows, b)
        for label in ("search_tpe", "search_random", "torch_pruning (peer)"):
            accs = [r["test_accuracy"] for r in groups.get(label, [])]
            head.append([f"{b:.0%}", label, report.mean_std(accs)])
        others = {
            k: [r["test_accuracy"] for r in g]
            for k, g in groups.items()
            if k not in (*report.SEARCH_ROWS, "torch_pruning (peer)")
            and not any(r.get("over_budget") for r in g)
        }
        if not others:  # a --searches-only run: the other rows come with --combine
            continue
        best = max(others, key=lambda k: report._mean(others[k]) if others[k] else -1.0)
        head.append([f"{b:.0%}", f"best other: {best}", report.mean_std(others[best])])
    parts = [
        "# Benchmark: Fashion-MNIST",
        "",
        "Written by `python -m benchmarks.fashion`; do not edit by hand. Reproduce with:",
        "",
        f"```\n{meta['command']}\n```",
        "",
        f"{task['model_name']} on {task['data_name']} (dense test accuracy "
        f"{task['dense_test_accuracy']:.4f}, {task['dense_macs']} MACs, "
        f"{task['dense_params']} params), "
        f"budgets {', '.join(f'{b:.0%}' for b in budgets)} of dense MACs, seeds "
        f"{', '.join(map(str, meta['seeds']))}. Every row: the same BatchNorm calibration and "
        "final fine-tune, test accuracy on the official 10,000 test images, mean ± std over "
        "the seeds.",
        "",
        "## The answer",
        "",
        md_table(["budget", "row", "test accuracy after the final FT"], head),
        "",
        *[f"- {line}" for line in goal_lines],
        "",
        *(
            ["Notes on this run:", "", *[f"- {line}" for line in meta["notes"]], ""]
            if meta.get("notes")
            else []
        ),
        "## Machine and run",
        "",
        md_table(
            ["", ""],
            [
                ["CPU / cores", f"{facts_start['cpu']} / {facts_start['cores']}"],
                [
                    "torch / rankopt / Python",
                    f"{facts_start['torch']} / {facts_start['rankopt']} / {facts_start['python']}",
                ],
                ["torch threads", facts_start["torch_threads"]],
                ["date", facts_start["date"]],
                [
                    "load average (1/5/15 min) at start; at end",
                    f"{facts_start['load']}; {facts_end['load']}",
                ],
                ["wall time", f"{meta['wall_s'] / 60:.1f} min"],
                ["splits", "55,000 train / 5,000 val (searches rank plans on it) / 10,000 test"],
                ["trials per search", f"{meta['trials']} (rankopt.search defaults otherwise)"],
                ["final fine-tune", meta["finetune"]],
                [
                    "latency",
                    "ratio to dense at 1 thread, timed side by side "
                    "(rankopt.latency.compare_latency_ms), first seed's model; ORT = ONNX "
                    "Runtime CPU, torch = eager PyTorch",
                ],
            ],
        ),
        "",
        "## 1. The seed recipe (Kim et al. 2016: Tucker-2 + VBMF ranks, no budget)",
        "",
        md_table(
            [
                "layers decomposed",
                "MACs ratio",
                "params ratio",
                "accuracy dense",
                "after decomposition",
                "calibrated, before FT",
                "after final FT",
            ],
            [
                [
                    f"{seed_row.get('layers_decomposed')} / {seed_row.get('layers_searchable')}",
                    seed_row.get("macs_ratio", math.nan),
                    seed_row.get("params_ratio", math.nan),
                    task["dense_test_accuracy"],
                    seed_row.get("accuracy_decomposed", math.nan),
                    seed_row.get("accuracy_calibrated", math.nan),
                    seed_row.get("test_accuracy", math.nan),
                ]
            ],
        ),
        "",
        f"Ranks: {seed_row.get('detail', '')}",
        "",
        f"Dense + the same final fine-tune: {report.mean_std(dense_ft)} "
        f"(dense {task['dense_test_accuracy']:.4f}).",
        "",
        "## 2. Budgets (sorted by accuracy after the final FT)",
        "",
    ]
    for b in budgets:
        parts += [f"### {b:.0%} of dense MACs", "", report.budget_table(rows, b), ""]
    parts += [
        "## 3. The searches",
        "",
        f"Best-so-far curves: [{curves.name}]({curves.name}).",
        "",
        report.search_table(runs),
        "",
        "## 4. Peers",
        "",
        "Every peer's model gets the same calibration and final fine-tune as rankopt's plans.",
        "",
        "- **torch-pruning** (`benchmarks/peer_pruning.py`): structured channel pruning, "
        "L2 group magnitude importance per layer, iterative steps until fvcore MACs meet the "
        "budget; the classifier is kept.",
        "- **musco-pytorch** (`benchmarks/peer_musco.py`, its own venv): one-stage VBMF ranks "
        "with the weakening factor bisected to the budget.",
        "- **aimet-torch** (`benchmarks/bench_aimet.py`, its own venv): spatial-SVD greedy "
        "ratio selection aimed at the budget.",
        "- **tensorly-torch** (`benchmarks/common/peers.py`): Tucker on every kxk conv but "
        "the input conv, one rank fraction, bisected to the budget.",
        "",
        *[f"- {line}" for line in meta["peer_lines"]],
        "",
    ]
    return "\n".join(parts) + "\n"
