"""BENCHMARKS.md of the MNIST benchmark: machine, goals, the four sections, plots."""

from __future__ import annotations

import math

from benchmarks.common.report import md_table, mean_std
from benchmarks.mnist.goals import by_method
from benchmarks.mnist.result import BenchResult


def markdown(
    result: BenchResult,
    *,
    facts_start: dict[str, str],
    facts_end: dict[str, str],
    settings: dict[str, str],
    command: str,
) -> str:
    s = result.seed_row
    parts = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.mnist`; do not edit by hand. Reproduce with:",
        "",
        f"```\n{command or 'python -m benchmarks.mnist'}\n```",
        "",
        "## Machine and run",
        "",
        md_table(
            ["", ""],
            [
                ("CPU", facts_start["cpu"]),
                ("cores", facts_start["cores"]),
                (
                    "torch / rankopt / Python",
                    f"{facts_start['torch']} / {facts_start['rankopt']} / {facts_start['python']}",
                ),
                ("date", facts_start["date"]),
                ("load average (1/5/15 min) at start", facts_start["load"]),
                ("load average at end", facts_end["load"]),
                ("wall time", f"{result.wall_time_s / 60:.1f} min"),
                *settings.items(),
            ],
        ),
        "",
        "The machine is shared with other jobs: latencies are compared only within one run,",
        "dense and compressed measured alternately in the same process.",
        "",
        "## Goals (issue 13)",
        "",
        *(result.expectation or ["- nothing to compare"]),
        "",
        "## 1. The seed recipe (Kim et al. 2016: Tucker-2 + VBMF ranks, no budget)",
        "",
        "Tucker-2 at the VBMF ranks on every kxk conv, channel SVD on 1x1 convs, SVD on the",
        "Linear head (where the space searches it), ranks from `rankopt.vbmf_ranks`; the",
        "input conv (<= 3 input channels, as Kim et al.) and any layer whose VBMF ranks would",
        "cost at least its dense MACs or parameters stay dense. Then BatchNorm calibration and",
        "the final fine-tune. Test accuracy.",
        "",
        md_table(
            [
                "layers decomposed",
                "MACs ratio",
                "params ratio",
                "accuracy dense",
                "calibrated, before FT",
                "after final FT",
            ],
            [
                (
                    f"{s.get('layers_decomposed', 0)} / {s.get('layers_searchable', 0)}",
                    s.get("macs_ratio", math.nan),
                    s.get("params_ratio", math.nan),
                    s.get("dense_accuracy", math.nan),
                    s.get("accuracy_decomposed", math.nan),
                    s.get("test_accuracy", math.nan),
                )
            ]
            if s
            else [],
        ),
        "",
        f"Ranks: {s.get('detail', '')}",
        "",
        "## 2. Budgeted comparison (same calibration and final fine-tune for every row)",
        "",
        "`uniform_<m>`: method m on every searchable layer that offers it (1x1 convs: SVD,",
        "Linear: SVD), each layer at the costliest point of its useful rank path",
        "(`SearchSpace.candidates`) whose rank fraction is <= f, one f for all, the largest",
        "that fits. `greedy` (AIMET-style): each layer decomposed alone (Tucker-2 / SVD) at",
        "MACs ratios 3-75 % of the layer, BatchNorm calibrated, scored by validation accuracy",
        "without fine-tune; for an accuracy-loss threshold each layer takes its cheapest ratio",
        "within it; the smallest threshold that meets the budget wins. `tltorch_tucker",
        "(peer)`: tensorly-torch. `search_random`: `rankopt.search(sampler='random',",
        "seed_with_vbmf=False)`. `search_tpe`: `rankopt.search` with its defaults (seed",
        "trials, then TPE; sensitivity-profile allocation), same number of trials. The plan",
        "taken from each search is its recommended trial (lowest validation loss after the",
        "proxy fine-tune). Every row: mean ± std over the seeds "
        "(search rows: one study per seed; "
        "other rows: one final fine-tune per seed).",
        "MACs ratio: fvcore's count of the built model / dense. Latency ratios from the",
        "first seed (< 1 = faster than dense).",
        "",
    ]
    budgets = sorted({r["budget"] for r in result.budget_rows}, reverse=True)
    for budget in budgets:
        groups = by_method(result.budget_rows, budget)
        rows = []
        for method, rs in groups.items():
            f = rs[0]
            rows.append(
                (
                    method,
                    mean_std([r["test_accuracy"] for r in rs]),
                    f["accuracy_decomposed"],
                    mean_std([r["val_accuracy"] for r in rs])
                    if method.startswith("search")
                    else "n/a",
                    f["macs_ratio"],
                    f["params_ratio"],
                    f["latency_ratio_b1"],
                    f["latency_ratio_b64"],
                    f["note"],
                )
            )
        parts += [
            f"### Budget {budget:.0%} of dense MACs",
            "",
            md_table(
                [
                    "method",
                    "test accuracy (final FT)",
                    "calibrated, before FT (seed 0)",
                    "search val acc. (proxy FT)",
                    "MACs ratio",
                    "params ratio",
                    "latency ratio b1",
                    "latency ratio b64",
                    "note",
                ],
                rows,
            ),
            "",
        ]
    parts += [
        "### Hypervolume of each study's (val accuracy, MACs ratio) points",
        "",
        "2-D hypervolume, accuracy maximised, MACs ratio minimised, reference point",
        "(accuracy 0, MACs ratio 1); all completed trials of the study (all within the budget).",
        "",
        md_table(
            [
                "budget",
                "sampler",
                "seed",
                "hypervolume",
                "completed trials within budget",
                "wall time (s)",
            ],
            [
                (
                    f"{h['budget']:.0%}",
                    h["sampler"],
                    h["seed"],
                    h["hypervolume"],
                    h["n_trials"],
                    f"{h['wall_time_s']:.0f}",
                )
                for h in result.hypervolumes
            ],
        ),
        "",
        "### Proxy vs final: Spearman rank correlation",
        "",
        "Per study, a sample of trials (the recommended one and the rest spread over the",
        "search's ranking) gets the final fine-tune; rho of the proxy's validation accuracy,",
        "and of its validation loss (negated; it breaks accuracy ties), vs final test accuracy",
        "(`scipy.stats.spearmanr`).",
        "",
        md_table(
            [
                "budget",
                "sampler",
                "seed",
                "trials",
                "proxy accuracies",
                "proxy val losses",
                "final accuracies",
                "rho (accuracy)",
                "rho (-loss)",
            ],
            [
                (
                    f"{x['budget']:.0%}",
                    x["sampler"],
                    x["seed"],
                    len(x["proxy"]),
                    " ".join(f"{v:.3f}" for v in x["proxy"]),
                    " ".join(f"{v:.3f}" for v in x["val_loss"]),
                    " ".join(f"{v:.3f}" for v in x["final"]),
                    x["rho"],
                    x["rho_loss"],
                )
                for x in result.spearman
            ],
        ),
        "",
        "## 3. Realised speed: which methods turn MAC savings into wall-clock savings",
        "",
        "One plan per method at the largest uniform rank fraction within 50 % of dense MACs",
        "(`seed_recipe`: its own ranks), CPU latency median over interleaved rounds, ratio to",
        "dense (< 1 = faster). `saving realised` = (1 - latency ratio) / (1 - MACs ratio).",
        "",
        md_table(
            [
                "plan",
                "MACs ratio",
                "latency ratio b1",
                "latency ratio b64",
                "saving realised b1",
                "saving realised b64",
                "dense ms b64 / compressed ms b64",
            ],
            [
                (
                    r["label"],
                    r["macs_ratio"],
                    r["latency_ratio_b1"],
                    r["latency_ratio_b64"],
                    (1 - r["latency_ratio_b1"]) / (1 - r["macs_ratio"]),
                    (1 - r["latency_ratio_b64"]) / (1 - r["macs_ratio"]),
                    f"{r['latency_ms_b64'] / r['latency_ratio_b64']:.2f} / "
                    f"{r['latency_ms_b64']:.2f}",
                )
                for r in result.latency_rows
            ],
            digits=3,
        ),
        "",
        "## 4. Peer libraries",
        "",
        *[f"- {note}\n" for note in result.peer_notes],
        "",
        "## Plots",
        "",
        "`bench_accuracy.html` (accuracy vs MACs per budget, every search trial and every",
        "method's final plan) and `bench_latency.html` (latency ratio vs MACs ratio); both",
        "load `plotly.min.js` from this directory and work offline (the run writes it from the",
        "installed plotly; it is not committed: `python -c 'import plotly.offline as p;",
        "print(p.get_plotlyjs())' > plotly.min.js` writes it again).",
        "",
    ]
    return "\n".join(parts)
