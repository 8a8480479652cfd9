"""How much a search can win at all: every plan of one study through the final fine-tune.

Usage::

    python -m benchmarks.bench_ceiling                       # resnet8 and vgg_small at 7 % MACs
    python -m benchmarks.bench_ceiling --models resnet8 --budgets 0.1,0.05 --ft-seeds 0,1,2

The search can only pick among the plans it tried. This script runs one default search
(``rankopt.search``: seed trials, then local moves and TPE) per model and budget, gives
*every* completed trial, and every uniform recipe of ``benchmarks.mnist``, the same
calibration + final fine-tune over several seeds, and reports:

- the **oracle**: the best final accuracy of any plan the study tried (what a perfect
  selector would pick), next to the search's own pick (the lowest validation loss after
  its proxy), the most accurate trial by the proxy, and the best recipe;
- the **spread** of final accuracy over the study's plans, against the **noise** of one
  plan's final accuracy over fine-tune seeds: when the spread of every sensible plan is
  about the noise, no selector can beat the recipes by much more than the noise;
- Spearman's rho of the proxy's validation accuracy and loss vs final accuracy, over all
  trials and over the better half of the search's ranking.

Writes ``BENCHMARKS_CEILING.md`` into ``--out`` (default: this directory).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

import rankopt
from benchmarks.common.harness import FinalFinetune
from benchmarks.common.recipes import (
    UNIFORM_METHODS,
    bench_space,
    n_outputs_of,
    uniform_plan,
)
from benchmarks.common.report import machine_facts, md_table
from benchmarks.common.searches import completed, run_search
from benchmarks.mnist.run import SEARCH_DEFAULTS, builtin_model
from rankopt.searching import Budget
from rankopt.storage import VAL_LOSS_ATTR, best_first, is_repeat

HERE = Path(__file__).resolve().parent


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) < 3:
        return float("nan")
    return float(spearmanr(xs, ys)[0])


def measure(
    model_name: str,
    budget: float,
    *,
    n_trials: int,
    proxy_steps: int,
    proxy_samples: int,
    epochs: int,
    ft_seeds: Sequence[int],
) -> dict[str, Any]:
    """One study at ``budget`` (fraction of dense MACs); every trial and recipe fine-tuned.

    Returns:
        ``{"trials": [...], "recipes": [...], "dense": test accuracy, ...}``; each trial row
        has ``number``, ``source``, ``proxy`` (validation accuracy after the proxy
        fine-tune) and ``finals`` (test accuracy after the final fine-tune, per seed).
    """
    bench = builtin_model(model_name)
    finetuner = FinalFinetune(bench, epochs=epochs)
    dense_macs = rankopt.count_macs(bench.model, bench.input_shape)
    space = bench_space(bench.model, bench.input_shape, n_outputs_of(bench.model, bench.val[0]))
    limit = Budget(max_macs=int(budget * dense_macs))
    recipes = []
    for method in UNIFORM_METHODS:
        plan, _note = uniform_plan(space, method, limit, model_name=model_name)
        if plan is None:
            continue
        finals = [finetuner.plan_accuracy(bench.model, plan, s) for s in ft_seeds]
        recipes.append({"name": f"uniform_{method}", "finals": finals})
        _say(f"[ceiling] {model_name} {budget:.0%} uniform_{method}: {finals}")
    started = time.perf_counter()
    study, _plan, _hv = run_search(
        bench.model,
        bench.train,
        bench.val,
        budget_fraction=budget,
        sampler="tpe",
        n_trials=n_trials,
        seed=0,
        finetune_steps=proxy_steps,
        finetune_samples=proxy_samples,
        model_name=model_name,
        progress=None,
    )
    search_s = time.perf_counter() - started
    trials = []
    ranking = [t.number for t in best_first(completed(study))]
    for t in completed(study):
        if is_repeat(t):
            continue  # the plan of an earlier trial: fine-tuning it again would count it twice
        plan = rankopt.export_plan(study, trial=t.number)
        finals = [finetuner.plan_accuracy(bench.model, plan, s) for s in ft_seeds]
        source = t.user_attrs.get("seed") or "sampled"
        trials.append(
            {
                "number": t.number,
                "source": source,
                "proxy": t.user_attrs["accuracy"],
                "val_loss": float(t.user_attrs.get(VAL_LOSS_ATTR, math.nan)),
                "rank": ranking.index(t.number),
                "finals": finals,
            }
        )
        _say(f"[ceiling] {model_name} {budget:.0%} trial {t.number} ({source}): {finals}")
    from rankopt.evaluators import evaluate_accuracy

    return {
        "model": model_name,
        "budget": budget,
        "dense": evaluate_accuracy(bench.model, *bench.test),
        "trials": trials,
        "recipes": recipes,
        "search_s": search_s,
    }


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs)


def summary(m: dict[str, Any]) -> list[str]:
    """The findings of one (model, budget) as markdown bullet lines."""
    trials = m["trials"]
    means = [_mean(t["finals"]) for t in trials]
    pick = min(trials, key=lambda t: t["rank"])  # the search's recommendation
    by_accuracy = max(trials, key=lambda t: (t["proxy"], -t["rank"]))
    oracle = max(trials, key=lambda t: _mean(t["finals"]))
    best_recipe = max(m["recipes"], key=lambda r: _mean(r["finals"]), default=None)
    noise = [statistics.stdev(t["finals"]) for t in trials + m["recipes"] if len(t["finals"]) > 1]
    sensible = [x for x in means if x >= max(means) - 0.02]
    by_rank = sorted(trials, key=lambda t: t["rank"])
    half = by_rank[: max(3, len(by_rank) // 2)]
    half_finals = [_mean(t["finals"]) for t in half]
    lines = [
        f"- dense test accuracy {m['dense']:.4f}; {len(trials)} completed trials "
        f"(search {m['search_s']:.0f} s)",
        f"- search's pick (trial {pick['number']}, {pick['source']}, proxy accuracy "
        f"{pick['proxy']:.3f}, validation loss {pick['val_loss']:.3f}): final "
        f"{_mean(pick['finals']):.4f}",
        f"- the most accurate by the proxy (trial {by_accuracy['number']}, "
        f"{by_accuracy['source']}, {by_accuracy['proxy']:.3f}): final "
        f"{_mean(by_accuracy['finals']):.4f}",
        f"- oracle (trial {oracle['number']}, {oracle['source']}): final "
        f"{_mean(oracle['finals']):.4f}",
    ]
    if best_recipe is not None:
        recipe = _mean(best_recipe["finals"])
        lines.append(
            f"- best recipe {best_recipe['name']}: final {recipe:.4f}; oracle - best recipe "
            f"= {100 * (_mean(oracle['finals']) - recipe):+.2f} points, pick - best recipe = "
            f"{100 * (_mean(pick['finals']) - recipe):+.2f} points"
        )
    lines += [
        f"- spread of the {len(sensible)} plans within 2 points of the oracle: "
        f"{100 * (max(sensible) - min(sensible)):.2f} points (std "
        f"{100 * statistics.pstdev(sensible):.2f}); one plan's std over fine-tune seeds: "
        + (f"{100 * _mean(noise):.2f} points" if noise else "n/a (one seed)"),
        f"- proxy vs final Spearman rho, validation accuracy: all trials "
        f"{_rho([t['proxy'] for t in trials], means):.3f}, better half "
        f"{_rho([t['proxy'] for t in half], half_finals):.3f}; validation loss (negated): "
        f"all trials {_rho([-t['val_loss'] for t in trials], means):.3f}, better half "
        f"{_rho([-t['val_loss'] for t in half], half_finals):.3f}",
    ]
    return lines


def markdown(results: Sequence[dict[str, Any]], command: str, wall_s: float) -> str:
    """BENCHMARKS_CEILING.md."""
    facts = machine_facts()
    seeds = len(results[0]["trials"][0]["finals"]) if results and results[0]["trials"] else 0
    out = [
        "# The ceiling: every plan of a study through the final fine-tune",
        "",
        "Written by `python -m benchmarks.bench_ceiling`; do not edit by hand. Reproduce with:",
        "",
        f"```\n{command}\n```",
        "",
        f"{facts['cpu']}, {facts['cores']} cores, torch {facts['torch']}, {facts['date']}, "
        f"wall time {wall_s / 60:.1f} min. Each plan: BatchNorm calibration, the final "
        f"fine-tune of `benchmarks.mnist` ({seeds} fine-tune seed(s)), test accuracy. The "
        "search: `rankopt.search` defaults (seed trials, then local moves and TPE), seed 0.",
        "",
    ]
    for m in results:
        out += [f"## {m['model']} at {m['budget']:.0%} of dense MACs", "", *summary(m), ""]
        rows = [
            (r["name"], "n/a", "n/a", *r["finals"], _mean(r["finals"])) for r in m["recipes"]
        ] + [
            (
                f"trial {t['number']} ({t['source']})",
                t["proxy"],
                t["val_loss"],
                *t["finals"],
                _mean(t["finals"]),
            )
            for t in sorted(m["trials"], key=lambda t: t["rank"])
        ]
        header = [
            "plan (search's ranking)",
            "proxy val acc.",
            "proxy val loss",
            *[f"final seed {i}" for i in range(seeds)],
            "mean",
        ]
        out += [md_table(header, rows), ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet8,vgg_small", help="built-in models")
    parser.add_argument("--budgets", default="0.07", help="fractions of dense MACs")
    parser.add_argument("--trials", type=int, default=16, help="trials per search")
    parser.add_argument(
        "--proxy-steps",
        type=int,
        default=SEARCH_DEFAULTS.finetune_steps,
        help="proxy fine-tune steps (search default)",
    )
    parser.add_argument(
        "--proxy-samples",
        type=int,
        default=SEARCH_DEFAULTS.finetune_samples,
        help="proxy fine-tune images (search default)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="final fine-tune epochs")
    parser.add_argument("--ft-seeds", default="0,1", help="final fine-tune seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.bench_ceiling " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    started = time.perf_counter()
    results = [
        measure(
            name,
            float(budget),
            n_trials=args.trials,
            proxy_steps=args.proxy_steps,
            proxy_samples=args.proxy_samples,
            epochs=args.epochs,
            ft_seeds=[int(s) for s in args.ft_seeds.split(",")],
        )
        for name in args.models.split(",")
        for budget in args.budgets.split(",")
    ]
    text = markdown(results, command, time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "BENCHMARKS_CEILING.md"
    path.write_text(text + "\n")
    _say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
