"""The MNIST benchmark's run: every section measured, BENCHMARKS.md and plots written."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import rankopt
from benchmarks.common.harness import (
    CALIBRATION_IMAGES,
    FINAL_MAX_GRAD_NORM,
    Candidate,
    FinalFinetune,
    n_params,
    say,
)
from benchmarks.common.peers import tltorch_model
from benchmarks.common.recipes import (
    UNIFORM_METHODS,
    bench_space,
    greedy_plan,
    greedy_scores,
    n_outputs_of,
    seed_recipe_plan,
    uniform_plan,
)
from benchmarks.common.report import machine_facts, write_plots
from benchmarks.common.searches import run_search, shared_sensitivity, study_points
from benchmarks.mnist.goals import expectation
from benchmarks.mnist.markdown import markdown
from benchmarks.mnist.peers import AIMET_NOTE
from benchmarks.mnist.result import BenchResult
from benchmarks.mnist.rows import BenchModel, builtin_model, evaluate_row, latency_ratios, macs
from benchmarks.mnist.spearman import spearman_row
from rankopt.evaluators import evaluate_accuracy
from rankopt.searching import Budget, SearchSettings

OUT_DIR = Path(__file__).resolve().parent.parent
"""Where BENCHMARKS.md and the plots go by default (``benchmarks/``)."""
SEARCH_DEFAULTS = SearchSettings()
"""The search's defaults: the proxy fine-tune of every search row is the default one."""
__all__ = ["OUT_DIR", "SEARCH_DEFAULTS", "BenchModel", "BenchResult", "builtin_model", "run"]


def run(
    model: str | BenchModel = "resnet8",
    budgets: Sequence[float] = (0.1, 0.07, 0.05),
    n_trials: int = 12,
    finetune_epochs: int = 2,
    out_dir: Path | str = OUT_DIR,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    finetune_lr: float = 0.01,
    proxy_steps: int = 30,
    proxy_samples: int = 1024,
    spearman_trials: int = 5,
    latency_rounds: int = 5,
    peer_check: bool = True,
    aimet_dir: Path | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = say,
) -> BenchResult:
    """Run every benchmark and write BENCHMARKS.md and the plots into ``out_dir``.

    Every row: the plan applied, BatchNorm re-calibrated (``rankopt.calibrate_bn`` on
    1,024 training images), the same final fine-tune (``finetune_epochs`` over the whole
    training split, distillation from dense, SGD + cosine, clipping only at norm 10), test
    accuracy.

    1. Seed recipe (Kim et al.: Tucker-2 / SVD at the VBMF ranks, input conv dense), no budget.
    2. At each of ``budgets`` (fractions of dense MACs): ``uniform_<method>``, ``greedy``
       (AIMET-style), tensorly-torch Tucker (peer), pure random search, and rankopt's
       default search (TPE, seeds first) with ``n_trials`` each, one study per seed.
       Hypervolume of each study's (val accuracy, MACs ratio) points.
    3. Proxy vs final: for the first seed's studies, ``spearman_trials`` trials (the best
       and the rest spread over the proxy order) get the final fine-tune; Spearman's rho of
       proxy accuracy vs final test accuracy.
    4. Latency: each uniform method at ~50 % MACs, batch 1 and 64, interleaved with dense.

    Returns:
        The :class:`BenchResult` (rows hold the plans, for checks).
    """
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    facts_start = machine_facts()
    result = BenchResult()
    bench = model if isinstance(model, BenchModel) else builtin_model(model)
    shape = bench.input_shape
    dense = bench.model.eval()
    dense_macs = macs(dense, shape)
    dense_params = n_params(dense)
    dense_test = evaluate_accuracy(dense, *bench.test)
    space = bench_space(dense, shape, n_outputs_of(dense, bench.train[0]))
    finetuner = FinalFinetune(bench, epochs=finetune_epochs, lr=finetune_lr)

    def evaluate(cand: Candidate, budget: float | None, seed: int, latency: bool) -> dict:
        row = evaluate_row(
            cand,
            bench,
            finetuner,
            seed,
            dense_macs,
            dense_params,
            latency=latency,
            latency_rounds=latency_rounds,
        )
        row["budget"] = budget
        if budget is not None and row["macs_ratio"] > budget + 1e-9:
            row["note"] = f"{row['note']}; over the budget, not compared"
        say(
            f"  {cand.label} seed {seed}: test acc {row['test_accuracy']:.4f} (calibrated "
            f"{row['accuracy_decomposed']:.4f}), macs {row['macs_ratio']:.3f}"
        )
        return row

    # ------------------------------------------------------------------ 1. seed recipe
    say(f"[seed recipe] {bench.name}")
    recipe = seed_recipe_plan(dense, space, model_name=bench.name)
    detail = ", ".join(
        f"{lp.layer}:{lp.method}{dict(lp.ranks)}" for lp in recipe.layers if lp.method != "keep"
    )
    row = evaluate(
        Candidate("seed_recipe", recipe, None, "Kim et al., VBMF ranks"), None, seeds[0], False
    )
    row.update(
        dense_accuracy=dense_test,
        detail=detail,
        layers_decomposed=sum(lp.method != "keep" for lp in recipe.layers),
        layers_searchable=len(space.layer_names),
    )
    result.seed_row = row

    # ------------------------------------------------------------------ 2. budgets
    say(f"[greedy] scoring {len(space.layer_names)} layers alone at candidate ratios")
    scores = greedy_scores(
        dense, space, bench.val, finetuner.calibration[:256], model_name=bench.name
    )
    fronts: dict[tuple[float, str], list[tuple[float, float]]] = {}
    tl_available = True
    first = seeds[0]
    with shared_sensitivity():
        for fraction in budgets:
            budget = Budget(max_macs=rankopt.parse_budget(fraction, dense_macs))
            fixed: list[Candidate] = []
            for method in UNIFORM_METHODS:
                plan, note = uniform_plan(space, method, budget, model_name=bench.name)
                fixed.append(Candidate(f"uniform_{method}", plan, None, note))
            g_plan, g_note = greedy_plan(space, scores, budget, model_name=bench.name)
            fixed.append(Candidate("greedy", g_plan, None, f"AIMET-style; {g_note}"))
            if tl_available:
                try:
                    tl_model, tl_note = tltorch_model(dense, space, budget, shape)
                    fixed.append(Candidate("tltorch_tucker (peer)", None, tl_model, tl_note))
                except ImportError as exc:
                    tl_available = False
                    result.peer_notes.append(f"**tensorly-torch**: not importable here: {exc}")
                except rankopt.RankoptError as exc:
                    fixed.append(Candidate("tltorch_tucker (peer)", None, None, str(exc)))
            aimet_file = Path(aimet_dir or "/nonexistent") / f"aimet_{fraction:g}.pt"
            if aimet_file.exists():
                fixed.append(
                    Candidate(
                        "aimet_spatial_svd (peer)",
                        None,
                        torch.load(aimet_file, weights_only=False).eval(),
                        "aimet-torch spatial-SVD greedy (bench_aimet.py); oneDNN off",
                        mkldnn_off=True,
                    )
                )
            for cand in fixed:
                say(f"[{fraction:.0%}] {cand.label}")
                # every seed (the final fine-tune's), like the search rows: a baseline's
                # single-seed number is as noisy as one search seed's (+-0.3-0.5 points here)
                for seed in seeds:
                    result.budget_rows.append(evaluate(cand, fraction, seed, seed == first))
            for seed in seeds:
                for sampler in ("tpe", "random"):
                    say(f"[{fraction:.0%}] search {sampler}, seed {seed}, {n_trials} trials")
                    t0 = time.perf_counter()
                    study, s_plan, hv = run_search(
                        dense,
                        bench.train,
                        bench.val,
                        budget_fraction=fraction,
                        sampler=sampler,
                        n_trials=n_trials,
                        seed=seed,
                        finetune_steps=proxy_steps,
                        finetune_samples=proxy_samples,
                        model_name=bench.name,
                        progress=None,
                    )
                    wall = time.perf_counter() - t0
                    points = study_points(study)
                    if seed == first:
                        fronts[(fraction, sampler)] = points
                    result.hypervolumes.append(
                        {
                            "budget": fraction,
                            "sampler": sampler,
                            "seed": seed,
                            "hypervolume": hv,
                            "n_trials": len(points),
                            "wall_time_s": wall,
                        }
                    )
                    label = "search_tpe" if sampler == "tpe" else "search_random"
                    note = (
                        "rankopt default (seed trials, then TPE)"
                        if sampler == "tpe"
                        else "random sampler, no seed trials"
                    )
                    trial_no = s_plan.provenance.get("trial")
                    cand = Candidate(
                        label,
                        s_plan,
                        None,
                        f"{note}; trial {trial_no}",
                        {"val_accuracy": float(s_plan.metrics.get("accuracy", math.nan))},
                    )
                    srow = evaluate(cand, fraction, seed, seed == first)
                    result.budget_rows.append(srow)
                    if seed == first and spearman_trials >= 2:
                        result.spearman.append(
                            spearman_row(
                                study,
                                spearman_trials,
                                finetuner,
                                dense,
                                seed,
                                fraction,
                                sampler,
                                trial_no,
                                srow["test_accuracy"],
                                say,
                            )
                        )

    # ------------------------------------------------------------------ 3. per-method latency
    say("[latency] uniform plans at 50% MACs")
    half = Budget(max_macs=rankopt.parse_budget(0.5, dense_macs))
    lat_plans: list[tuple[str, rankopt.CompressionPlan | None]] = [("seed_recipe", recipe)]
    for method in UNIFORM_METHODS:
        lat_plans.append(
            (f"uniform_{method}", uniform_plan(space, method, half, model_name=bench.name)[0])
        )
    for label, plan in lat_plans:
        if plan is None:
            continue
        student = rankopt.apply_plan(dense, plan)
        lrow: dict[str, Any] = {
            "label": label,
            "plan": plan,
            "macs_ratio": macs(student, shape) / dense_macs,
        }
        for batch in (1, 64):
            ms, ratio = latency_ratios(
                dense, student, shape, batch_size=batch, rounds=latency_rounds
            )
            lrow[f"latency_ms_b{batch}"] = ms
            lrow[f"latency_ratio_b{batch}"] = ratio
        result.latency_rows.append(lrow)

    # ------------------------------------------------------------------ 4. peers
    if tl_available:
        import tltorch

        result.peer_notes.append(
            f"**tensorly-torch** {getattr(tltorch, '__version__', '?')}: compared above "
            "(`tltorch_tucker (peer)`): Tucker on every kxk conv but the input conv, one "
            "rank fraction, the largest that fits (bisection on fvcore's count)."
        )
    result.peer_notes.append(AIMET_NOTE)
    if peer_check:
        say("[peer] pip install --dry-run musco-pytorch")
        result.peer_notes.append(f"**musco-pytorch**: {peer_check('musco-pytorch')}")

    result.split_sizes = {"val": len(bench.val[1]), "test": len(bench.test[1])}
    result.dense_val_accuracy = evaluate_accuracy(dense, *bench.val)
    result.expectation = expectation(result)
    result.wall_time_s = time.perf_counter() - started
    out = Path(out_dir)
    plot_rows = [r for r in result.budget_rows if r["budget"] is not None]
    result.files = write_plots(out, plot_rows, fronts, result.latency_rows)
    md = markdown(
        result,
        facts_start=facts_start,
        facts_end=machine_facts(),
        settings={
            "model": f"{bench.name} (dense test accuracy {dense_test:.4f}, "
            f"{dense_macs} MACs, {dense_params} params)",
            "budgets (fraction of dense MACs)": ", ".join(f"{b:.0%}" for b in budgets),
            "trials per search": f"{n_trials} (rankopt.search: seed trials <= 1/4 of them)",
            "seeds (every row; latency and Spearman: the first)": ", ".join(map(str, seeds)),
            "search proxy fine-tune": f"{proxy_steps} steps on {proxy_samples} images "
            "(other search settings: rankopt.search defaults)",
            "final fine-tune": f"calibrate_bn on {CALIBRATION_IMAGES} training images, then "
            f"full_finetune {finetune_epochs} epoch(s) over all {len(bench.train[1])} "
            f"training images, batch 64, lr {finetune_lr}, SGD + cosine, distillation "
            f"from dense (weight 0.5, T 4), gradient clipping at norm "
            f"{FINAL_MAX_GRAD_NORM:g} (a divergence guard); same for every row",
            "Spearman sample": f"{spearman_trials} trials per study of seed {first}",
            "latency": f"{latency_rounds} interleaved rounds x 5 runs, "
            f"{torch.get_num_threads()} torch thread(s)",
        },
        command=command,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "BENCHMARKS.md").write_text(md)
    result.files.append(out / "BENCHMARKS.md")
    say(f"wrote {', '.join(str(p) for p in result.files)} in {result.wall_time_s:.0f}s")
    return result
