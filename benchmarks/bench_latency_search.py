"""A MACs-budget search against a latency-budget search (issue 14), side by side in one run.

For the built-in resnet8 on mnist5k: ``rankopt.search(max_macs=...)`` and
``rankopt.search(max_latency=...)`` with the same trials and seed; from each study its most
accurate trial's plan gets the same BatchNorm calibration and final fine-tune. Reports
test accuracy, MACs ratio, the latency table's predicted whole-model latency and the
measured one (interleaved with the dense model, same process) at batch 1 and 64, the
prediction error, and the realised saving ``(1 - latency ratio) / (1 - MACs ratio)``.
Writes ``BENCHMARKS_LATENCY.md`` next to this file.

Usage: ``python benchmarks/bench_latency_search.py [--trials 12] [--macs 50%] [--latency 70%]
[--runtime onnxruntime] [--threads 1]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

import rankopt
from rankopt.data import load_data
from rankopt.evaluators import calibrate_bn, evaluate_accuracy, full_finetune, profile
from rankopt.latency import compare_latency_ms, latency_table
from rankopt.latency._runtimes import RUNTIMES, get_runtime
from rankopt.models import get_pretrained
from rankopt.plan import CompressionPlan
from rankopt.searching.space._reach import min_latency_ms
from rankopt.searching.space._space import SearchSpace
from rankopt.storage import best_first

HERE = Path(__file__).resolve().parent
INPUT = (1, 28, 28)


def best_plan(study: optuna.Study) -> tuple[CompressionPlan, optuna.trial.FrozenTrial]:
    """The recommended complete trial's plan (the lowest validation loss after the proxy)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = best_first(done)[0]
    return CompressionPlan.from_dict(best.user_attrs["plan"]), best


def final_accuracy(
    dense: nn.Module, plan: CompressionPlan, splits: Any, epochs: int, seed: int
) -> tuple[nn.Module, float]:
    """Calibrate, fine-tune ``epochs`` over the whole training split, test accuracy."""
    student = rankopt.apply_plan(dense, plan)
    calibrate_bn(student, splits.train[0][:1024])
    full_finetune(student, dense, splits.train, epochs=epochs, seed=seed, max_grad_norm=10.0)
    return student.eval(), evaluate_accuracy(student, *splits.test)


def interpolate_accuracy(points: list[tuple[float, float]], latency: float) -> float | None:
    """Accuracy of the MACs-budget plans at ``latency`` (piecewise linear in measured latency
    ratio between the two nearest plans; None outside their range)."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= latency <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (latency - x0) / (x1 - x0)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument(
        "--macs", default="50%,35%,25%", help="MACs budgets (comma list); the first is the main one"
    )
    parser.add_argument("--latency", default="50%")
    parser.add_argument(
        "--both", default="60%", help="latency budget added to the first MACs budget in one row"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=25, help="interleaved timing rounds (at least)")
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="each model is timed about this long"
    )
    parser.add_argument(
        "--ft-seeds", type=int, default=3, help="final fine-tunes per plan (mean accuracy)"
    )
    parser.add_argument("--runtime", default="onnxruntime", choices=sorted(RUNTIMES))
    parser.add_argument(
        "--rank-multiple",
        type=int,
        help="default: the runtime's (onnxruntime: its channel block, 16 with AVX-512, 8 "
        "with AVX2; torch: 1)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch / ONNX Runtime threads (default 1)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "BENCHMARKS_LATENCY.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runtime = get_runtime(args.runtime)
    multiple = args.rank_multiple or runtime.rank_multiple
    splits = load_data("mnist5k")
    dense, dense_acc = get_pretrained("resnet8", "mnist5k")
    common: dict[str, Any] = dict(
        n_trials=args.trials,
        model_name="resnet8",
        seed=0,
        n_threads=args.threads,
        latency_threads=args.threads,
        # The benchmark measures the table's error itself: the search must not refuse it.
        latency_tolerance=1.0,
        latency_runtime=args.runtime,
        # The MACs-budget rows show what a MACs budget alone gives (issue 37's default cap
        # would keep them no slower than dense).
        allow_slower=True,
        rank_multiple=multiple,
        progress=lambda line: print(line, flush=True),
    )
    # Every method: the MACs-budget plans may use CP or GKPD.
    table = latency_table(
        dense, INPUT, runtime=args.runtime, rank_multiple=multiple, n_threads=args.threads
    )
    friendly = [
        m for m in rankopt.list_methods() if rankopt.get_method(m).latency_friendly_on(args.runtime)
    ]
    macs_budgets = [b.strip() for b in args.macs.split(",")]
    searches: dict[str, dict[str, Any]] = {}
    for b in macs_budgets:
        searches[f"max_macs={b}"] = dict(max_macs=b)
    searches[f"max_macs={macs_budgets[0]}, latency-friendly methods"] = dict(
        max_macs=macs_budgets[0], methods=friendly
    )
    searches[f"max_latency={args.latency}"] = dict(max_latency=args.latency)
    # Both budgets at once: the allocation meets the MACs and the latency budget.
    searches[f"max_macs={macs_budgets[0]} + max_latency={args.both}"] = dict(
        max_macs=macs_budgets[0], max_latency=args.both
    )
    rows = []
    models = [dense]
    unreachable: list[str] = []
    for name, extra in searches.items():
        print(f"== {name}", flush=True)
        try:
            study = rankopt.search(dense, splits.train, splits.val, **extra, **common)
        except rankopt.BudgetError as exc:
            unreachable.append(f"- {name}: {exc}")
            continue
        plan, trial = best_plan(study)
        # One plan's test accuracy varies by about 0.5 points over fine-tune seeds: the mean
        # of --ft-seeds fine-tunes (the model of seed 0 is timed; latency ignores weights).
        accs = []
        for ft_seed in range(args.ft_seeds):
            student, acc = final_accuracy(dense, plan, splits, args.epochs, seed=ft_seed)
            accs.append(acc)
            if ft_seed == 0:
                models.append(student)
        acc = statistics.fmean(accs)
        acc_std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        predicted = {b: table.predict_model_ms(plan.layers, b) for b in table.batch_sizes}
        rows.append((name, plan, trial, acc, predicted, acc_std))
    # Each model timed for about --min-seconds in all (at batch 1 one forward pass is ~0.2 ms:
    # 25 rounds are 5 ms of timing, and two runs of this script measured the same plan at
    # 0.53x and 0.68x dense), every model paired with the dense one round by round, as the
    # latency table measures and `rankopt finetune` reports.
    measured = compare_latency_ms(
        models,
        INPUT,
        batch_sizes=table.batch_sizes,
        runtime=args.runtime,
        min_timed_s=args.min_seconds,
        n_runs=args.runs,
        n_threads=args.threads,
    )
    # The search's own reach: every layer at its fastest offered choice (keep included).
    lowest = min_latency_ms(
        SearchSpace(profile(dense, INPUT), friendly, rank_multiple=multiple, latency=table)
    )
    lines = [
        "# Latency: MACs budgets vs a latency budget (issue 14)",
        "",
        "Written by `benchmarks/bench_latency_search.py "
        f"--runtime {args.runtime}"
        + (f" --threads {args.threads}" if args.threads != 1 else "")
        + "`; resnet8 on mnist5k, latency measured on "
        f"**{runtime.description}**, {args.threads} thread(s), ranks rounded to multiples of "
        f"{multiple}, {args.trials} trials per search, seed 0, final "
        f"fine-tune {args.epochs} epochs over the whole training split after BatchNorm "
        f"calibration (the same for every row; test accuracy: mean ± std over "
        f"{args.ft_seeds} fine-tune seeds). "
        f"Dense test accuracy {dense_acc:.4f}; dense latency "
        + ", ".join(f"{measured[b][0]:.3f} ms at batch {b}" for b in table.batch_sizes)
        + f". Wall time {(time.perf_counter() - started) / 60:.1f} min; load average at the "
        f"end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}.",
        "",
        "Latency ratio = the compressed model's time / the dense model's, both measured in the "
        f"same process, interleaved (at least {args.runs} rounds and {args.min_seconds:g} s "
        "per model; each model's time = the dense median plus the median of its per-round "
        "difference to dense). Predicted ratio = the latency "
        "table's prediction for the plan / the table's dense model time. Saving realised = "
        "(1 - latency ratio) / (1 - MACs ratio).",
        "",
        "| search | test acc. | MACs ratio | batch | predicted ratio | measured ratio | "
        "prediction error | saving realised | methods |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios: dict[str, dict[int, float]] = {}
    for i, (name, plan, trial, acc, predicted, acc_std) in enumerate(rows, start=1):
        macs_ratio = float(trial.user_attrs["macs_ratio"])
        methods = ", ".join(
            f"{lp.layer}:{lp.method}{list(lp.ranks.values())}"
            for lp in plan.layers
            if lp.method != "keep"
        )
        ratios[name] = {}
        for b in table.batch_sizes:
            pred = predicted[b] / table.model_ms[b]
            meas = measured[b][i] / measured[b][0]
            ratios[name][b] = meas
            saving = (1 - meas) / (1 - macs_ratio) if macs_ratio < 1 else float("nan")
            lines.append(
                f"| {name} | {acc:.4f} ± {acc_std:.4f} | {macs_ratio:.3f} | {b} | {pred:.3f} | "
                f"{meas:.3f} | "
                f"{100 * (pred / meas - 1):+.1f}% | {saving:.2f} | {methods if b == 1 else ''} |"
            )
    lat_name = f"max_latency={args.latency}"
    lat_acc = next((r[3] for r in rows if r[0] == lat_name), float("nan"))
    lines += ["", "## Goals", "", *unreachable]
    worst = max(
        abs(p[4][b] / table.model_ms[b] / ratios[p[0]][b] - 1)
        for p in rows
        for b in table.batch_sizes
    )
    lines.append(f"- largest prediction error over these plans and batch sizes: {100 * worst:.1f}%")
    lines.append(
        "- the table's own check (its random calibration plans, timed with it): whole plans "
        "save "
        + ", ".join(
            f"{table.plan_scale.get(b, 1.0):.2f}x of their layers' sum, predicted within "
            f"{100 * table.plan_error.get(b, float('nan')):.1f}% (batch {b})"
            for b in table.batch_sizes
        )
    )
    for b in table.batch_sizes:
        if lat_name not in ratios:
            continue
        macs_points = [
            (ratios[r[0]][b], r[3])
            for r in rows
            if r[0].startswith("max_macs=") and "friendly" not in r[0]
        ]
        at = interpolate_accuracy(macs_points, ratios[lat_name][b])
        lines.append(
            f"- batch {b}: {lat_name} plan measured at {ratios[lat_name][b]:.3f}x dense, test "
            f"accuracy {lat_acc:.4f}; MACs-budget plans at the same measured latency "
            + (f"(interpolated): {at:.4f}" if at is not None else "(outside their range)")
        )
        lines.append(
            f"- batch {b}: smallest latency the table predicts reachable with the "
            f"latency-friendly methods: {lowest[b] / table.model_ms[b]:.3f}x dense"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
