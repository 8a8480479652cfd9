"""A MACs-budget search against a latency-budget search (issue 14), side by side in one run.

For the built-in resnet8 on mnist5k: ``rankopt.search(max_macs=...)`` and
``rankopt.search(max_latency=...)`` with the same trials and seed; from each study its most
accurate trial's plan gets the same BatchNorm calibration and final fine-tune. Reports
test accuracy, MACs ratio, the latency table's predicted whole-model latency and the
measured one (interleaved with the dense model, same process) at batch 1 and 64, the
prediction error, and the realised saving ``(1 - latency ratio) / (1 - MACs ratio)``.
Writes ``BENCHMARKS_LATENCY.md`` next to this file.

Usage: ``python benchmarks/bench_latency_search.py [--trials 12] [--macs 50%] [--latency 70%]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

import rankopt
from rankopt.data import load_data
from rankopt.evaluators import (
    calibrate_bn,
    evaluate_accuracy,
    full_finetune,
    latency_table,
    time_interleaved_ms,
)
from rankopt.models import get_pretrained
from rankopt.plan import CompressionPlan

HERE = Path(__file__).resolve().parent
INPUT = (1, 28, 28)


def best_plan(study: optuna.Study) -> tuple[CompressionPlan, optuna.trial.FrozenTrial]:
    """The most accurate complete trial's plan (validation accuracy after the proxy)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: float(t.user_attrs["accuracy"]))
    return CompressionPlan.from_dict(best.user_attrs["plan"]), best


def final_accuracy(
    dense: nn.Module, plan: CompressionPlan, splits: Any, epochs: int, seed: int
) -> tuple[nn.Module, float]:
    """Calibrate, fine-tune ``epochs`` over the whole training split, test accuracy."""
    student = rankopt.apply_plan(dense, plan)
    calibrate_bn(student, splits.train[0][:1024])
    full_finetune(student, dense, splits.train, epochs=epochs, seed=seed, max_grad_norm=10.0)
    return student.eval(), evaluate_accuracy(student, *splits.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--macs", default="50%")
    parser.add_argument("--latency", default="70%")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=25, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=HERE / "BENCHMARKS_LATENCY.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    splits = load_data("mnist5k")
    dense, dense_acc = get_pretrained("resnet8", "mnist5k")
    common: dict[str, Any] = dict(n_trials=args.trials, model_name="resnet8", seed=0, n_threads=1)
    table = latency_table(dense, INPUT)  # every method: the MACs-budget plan may use CP or GKPD
    studies = {
        f"max_macs={args.macs}": rankopt.search(
            dense, splits.train, splits.val, max_macs=args.macs, **common
        ),
        f"max_latency={args.latency}": rankopt.search(
            dense, splits.train, splits.val, max_latency=args.latency, **common
        ),
    }
    rows = []
    models = [dense]
    for name, study in studies.items():
        plan, trial = best_plan(study)
        student, acc = final_accuracy(dense, plan, splits, args.epochs, seed=0)
        models.append(student)
        predicted = {b: table.predict_model_ms(plan.layers, b) for b in table.batch_sizes}
        rows.append((name, plan, trial, acc, predicted))
    measured: dict[int, list[float]] = {}
    for b in table.batch_sizes:
        measured[b] = time_interleaved_ms(
            models, torch.randn(b, *INPUT), n_warmup=3, n_runs=args.runs
        )
    lines = [
        "# Latency: a MACs budget vs a latency budget (issue 14)",
        "",
        "Written by `benchmarks/bench_latency_search.py`; resnet8 on mnist5k, 1 torch thread, "
        f"{args.trials} trials per search, seed 0, final fine-tune {args.epochs} epochs over the "
        "whole training split after BatchNorm calibration (the same for both rows). "
        f"Dense test accuracy {dense_acc:.4f}. Wall time "
        f"{(time.perf_counter() - started) / 60:.1f} min; load average at the end "
        f"{' / '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}.",
        "",
        "Latency ratio = the compressed model's time / the dense model's, both measured in the "
        f"same process, interleaved ({args.runs} rounds, median). Predicted ratio = the latency "
        "table's prediction for the plan / the table's dense model time. Saving realised = "
        "(1 - latency ratio) / (1 - MACs ratio).",
        "",
        "| search | test acc. | MACs ratio | batch | predicted ratio | measured ratio | "
        "prediction error | saving realised | methods |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (name, plan, trial, acc, predicted) in enumerate(rows, start=1):
        macs_ratio = float(trial.user_attrs["macs_ratio"])
        methods = ", ".join(
            f"{lp.layer}:{lp.method}{list(lp.ranks.values())}"
            for lp in plan.layers
            if lp.method != "keep"
        )
        for b in table.batch_sizes:
            pred = predicted[b] / table.model_ms[b]
            meas = measured[b][i] / measured[b][0]
            saving = (1 - meas) / (1 - macs_ratio) if macs_ratio < 1 else float("nan")
            lines.append(
                f"| {name} | {acc:.4f} | {macs_ratio:.3f} | {b} | {pred:.3f} | {meas:.3f} | "
                f"{100 * (pred / meas - 1):+.1f}% | {saving:.2f} | {methods if b == 1 else ''} |"
            )
    lines += [
        "",
        "Smallest latency the table predicts reachable (each layer at its fastest choice): see "
        "the error message of `rankopt search --max-latency 1%`.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
