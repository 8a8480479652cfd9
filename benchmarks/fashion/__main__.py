"""Command line: ``python -m benchmarks.fashion [--quick] ...`` (see the package docstring).

Writes ``BENCHMARKS_FASHION.md``, ``fashion_best_so_far.html`` and ``fashion_rows.json``
(every row, for re-reading) into ``--out`` (default: ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common.harness import Candidate, FinalFinetune, say
from benchmarks.common.report import machine_facts, md_table
from benchmarks.common.searches import shared_sensitivity
from benchmarks.fashion import report
from benchmarks.fashion.harness import Task, load_task, measure_row
from benchmarks.fashion.rows import Rows, make_peer_models
from benchmarks.fashion.searches import SAMPLERS, SearchRun, run_study

HERE = Path(__file__).resolve().parent.parent


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options; ``--quick`` sets the defaults of the short run."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.fashion", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the short run (about 90 min on 2 cores)")
    p.add_argument("--model", default="resnet8")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--budgets", type=_floats, default=[0.5, 0.25, 0.1])
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=16, help="trials per search")
    p.add_argument("--ft-images", type=int, default=None, help="final fine-tune sample")
    p.add_argument("--ft-epochs", type=int, default=None, help="final fine-tune passes")
    p.add_argument("--uniform", default=None, help="methods of the uniform rows")
    p.add_argument(
        "--peers-dir",
        type=Path,
        default=Path("/tmp/rankopt_peers"),
        help="where the musco and AIMET models are written (made when missing)",
    )
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = p.parse_args(argv)
    args.ft_images = args.ft_images or (16384 if args.quick else 55000)
    args.ft_epochs = args.ft_epochs or (1 if args.quick else 2)
    quick_methods = "tucker2,cp"
    args.uniform = (
        args.uniform or (quick_methods if args.quick else "tucker2,cp,svd,gkpd,spatial_svd")
    ).split(",")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its files."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m benchmarks.fashion " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    facts_start = machine_facts()
    task = load_task(args.model, args.data)
    finetune = FinalFinetune(task, n_images=args.ft_images, epochs=args.ft_epochs)
    rows: list[dict[str, Any]] = []
    runs: list[SearchRun] = []
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    first = args.seeds[0]
    min_timed_s = 0.5 if args.quick else 1.0

    def save() -> None:
        (out / "fashion_rows.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")

    say(f"[dense + final FT] {task.model_name}: test accuracy {task.dense_test_accuracy:.4f}")
    dense_ft: list[float] = []
    for seed in args.seeds:
        copy_ = copy.deepcopy(task.model)
        finetune.calibrate(copy_)
        acc, _ = finetune(copy_, seed)
        dense_ft.append(acc)
        say(f"  dense + FT seed {seed}: {acc:.4f}")

    peer_lines: list[str] = []
    builder = Rows(
        task,
        uniform_methods=args.uniform,
        peer_dirs={"aimet": args.peers_dir, "musco": args.peers_dir},
        progress=say,
    )
    say("[seed recipe]")
    seed_row = measure_row(
        builder.seed_recipe(),
        task,
        finetune,
        seed=first,
        budget=None,
        latency=True,
        min_timed_s=min_timed_s,
    )
    rows.append(seed_row)
    with shared_sensitivity():
        for b in args.budgets:
            # the file peers (None) are made, when missing, after the in-process rows
            cands: list[Candidate | None] = [*builder.for_budget(b, finetune.calibration), None]
            for cand in cands:
                if cand is None:
                    peer_lines += make_peer_models(task, [b], args.peers_dir, say)
                    cands += builder.file_peers(b)
                    continue
                say(f"[{b:.0%}] {cand.label}")
                for seed in args.seeds:
                    rows.append(
                        measure_row(
                            cand,
                            task,
                            finetune,
                            seed=seed,
                            budget=b,
                            latency=seed == first,
                            min_timed_s=min_timed_s,
                        )
                    )
                save()
            for seed in args.seeds:
                for sampler in SAMPLERS:
                    say(f"[{b:.0%}] search {sampler}, seed {seed}, {args.trials} trials")
                    run = run_study(
                        task,
                        sampler=sampler,
                        budget=b,
                        seed=seed,
                        n_trials=args.trials,
                        finetune_steps=120,
                        progress=None,
                    )
                    runs.append(run)
                    rows.append(
                        measure_row(
                            run.candidate,
                            task,
                            finetune,
                            seed=seed,
                            budget=b,
                            latency=seed == first,
                            min_timed_s=min_timed_s,
                        )
                    )
                    save()
    wall_s = time.perf_counter() - started
    curves = report.write_curves(runs, args.budgets, out)
    md = render(
        args,
        task,
        finetune,
        rows,
        runs,
        seed_row,
        dense_ft,
        facts_start,
        wall_s,
        command,
        curves,
        peer_lines,
    )
    (out / "BENCHMARKS_FASHION.md").write_text(md)
    say(f"wrote {out / 'BENCHMARKS_FASHION.md'} and {curves} in {wall_s / 60:.1f} min")
    return 0


def render(
    args: argparse.Namespace,
    task: Task,
    finetune: FinalFinetune,
    rows: list[dict[str, Any]],
    runs: list[SearchRun],
    seed_row: dict[str, Any],
    dense_ft: list[float],
    facts_start: dict[str, str],
    wall_s: float,
    command: str,
    curves: Path,
    peer_lines: list[str],
) -> str:
    """The markdown file: the answer (goals and the head table) first, then the details."""
    facts_end = machine_facts()
    goal_lines = report.goals(
        rows,
        runs,
        args.budgets,
        dense_test=task.dense_test_accuracy,
        seed_row=seed_row,
        dense_ft=dense_ft,
    )
    head = []
    for b in args.budgets:
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
        best = max(others, key=lambda k: report._mean(others[k]) if others[k] else -1.0)
        head.append([f"{b:.0%}", f"best other: {best}", report.mean_std(others[best])])
    parts = [
        "# Benchmark: Fashion-MNIST",
        "",
        "Written by `python -m benchmarks.fashion`; do not edit by hand. Reproduce with:",
        "",
        f"```\n{command}\n```",
        "",
        f"{task.model_name} on {task.data_name} (dense test accuracy "
        f"{task.dense_test_accuracy:.4f}, {task.dense_macs} MACs, {task.dense_params} params), "
        f"budgets {', '.join(f'{b:.0%}' for b in args.budgets)} of dense MACs, seeds "
        f"{', '.join(map(str, args.seeds))}. Every row: the same BatchNorm calibration and "
        "final fine-tune, test accuracy on the official 10,000 test images, mean ± std over "
        "the seeds.",
        "",
        "## The answer",
        "",
        md_table(["budget", "row", "test accuracy after the final FT"], head),
        "",
        *[f"- {line}" for line in goal_lines],
        "",
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
                ["wall time", f"{wall_s / 60:.1f} min"],
                ["splits", "55,000 train / 5,000 val (searches rank plans on it) / 10,000 test"],
                ["trials per search", f"{args.trials} (rankopt.search defaults otherwise)"],
                ["final fine-tune", finetune.describe()],
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
                    task.dense_test_accuracy,
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
        f"(dense {task.dense_test_accuracy:.4f}).",
        "",
        "## 2. Budgets (sorted by accuracy after the final FT)",
        "",
    ]
    for b in args.budgets:
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
        "- **tensorly-torch** (`benchmarks/bench_plans.py`): Tucker on every kxk conv but "
        "the input conv, one rank fraction, bisected to the budget.",
        "",
        *[f"- {line}" for line in peer_lines],
        "",
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
