"""Benchmarks side by side: rankopt search vs the seed method and the usual baselines.

Usage::

    python benchmarks/run.py --quick     # < 15 min on 2 CPU cores (resnet8 only)
    python benchmarks/run.py             # full mode: hours (all models, 3 budgets, 3 seeds)

Writes ``BENCHMARKS.md``, ``bench_accuracy.html``, ``bench_latency.html`` and
``plotly.min.js`` into ``--out`` (default: this directory). See :func:`run` for what is
measured; BENCHMARKS.md states the settings of the run that wrote it.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_plans import (
    UNIFORM_METHODS,
    PlannedModel,
    greedy_plan,
    greedy_scores,
    latency_ratios,
    run_search,
    seed_plans,
    study_points,
    tltorch_model,
    vbmf_plan_unbudgeted,
)
from bench_report import machine_facts, md_table, mean_std, write_plots
from torch import nn

import rankopt
from rankopt.evaluators import compute_logits, evaluate_accuracy, full_finetune
from rankopt.search import Budget, SearchSpace

Data = tuple[torch.Tensor, torch.Tensor]
HERE = Path(__file__).resolve().parent


@dataclass
class BenchModel:
    """A trained model and its data.

    Attributes:
        name: Name used in tables.
        model: The trained dense model (eval mode).
        train: Training split (final fine-tunes; searches use a subset).
        val: Validation split (searches, greedy scoring).
        test: Test split (every reported accuracy).
    """

    name: str
    model: nn.Module
    train: Data
    val: Data
    test: Data

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image."""
        return tuple(self.train[0].shape[1:])


@dataclass
class BenchResult:
    """Everything a run measured (also written to BENCHMARKS.md).

    Attributes:
        seed_rows: The seed-recipe table, one dict per model.
        budget_rows: One dict per (budget, method, seed) with its ``plan`` (None for the
            peer library) and ``macs_ratio`` (fvcore count / dense fvcore count).
        hypervolumes: One dict per (budget, sampler, seed).
        latency_rows: Per-method uniform plans at ~50 % MACs with latency ratios.
        peer_notes: What happened with each peer library.
        expectation: Lines saying where the expectation held and where it did not.
        wall_time_s: Wall time of the run.
        files: Paths written.
    """

    seed_rows: list[dict[str, Any]] = field(default_factory=list)
    budget_rows: list[dict[str, Any]] = field(default_factory=list)
    hypervolumes: list[dict[str, Any]] = field(default_factory=list)
    latency_rows: list[dict[str, Any]] = field(default_factory=list)
    peer_notes: list[str] = field(default_factory=list)
    expectation: list[str] = field(default_factory=list)
    wall_time_s: float = math.nan
    files: list[Path] = field(default_factory=list)


def builtin_model(name: str, data: str = "mnist5k") -> BenchModel:
    """A built-in pretrained model (trained and cached on first use) with its data."""
    from rankopt.data import load_data
    from rankopt.models import get_pretrained

    splits = load_data(data)
    model, _ = get_pretrained(name, data, progress=_say)
    return BenchModel(name, model.eval(), splits.train, splits.val, splits.test)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    return rankopt.count_macs(model, shape)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _Finetuner:
    """The one final fine-tune every compared model gets, then test accuracy."""

    def __init__(
        self, bench: BenchModel, epochs: int, samples: int | None, lr: float = 0.01
    ) -> None:
        images, labels = bench.train
        if samples is not None and samples < images.shape[0]:
            order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
            images, labels = images[order[:samples]], labels[order[:samples]]
        self.train = (images.contiguous(), labels.contiguous())
        self.teacher = compute_logits(bench.model, self.train[0])
        self.epochs = epochs
        self.lr = lr
        self.bench = bench

    def __call__(self, student: nn.Module, seed: int) -> float:
        """Fine-tune ``student`` in place; its test accuracy (NaN when the loss diverged)."""
        if self.epochs > 0:
            try:
                full_finetune(
                    student, self.teacher, self.train, epochs=self.epochs, seed=seed, lr=self.lr
                )
            except rankopt.TrialFailedError:
                return math.nan
        return evaluate_accuracy(student, *self.bench.test)


def _seed_table(
    bench: BenchModel, finetuner: _Finetuner, dense_acc: float, dense_macs: int
) -> dict[str, Any]:
    """Kim et al.'s Tucker-2 + VBMF recipe at the VBMF ranks: one row of the seed table."""
    prof = rankopt.profile(bench.model, bench.input_shape)
    space = SearchSpace(prof)
    plan = vbmf_plan_unbudgeted(bench.model, space, model_name=bench.name)
    student = rankopt.apply_plan(bench.model, plan)
    macs = _macs(student, bench.input_shape)
    acc_decomposed = evaluate_accuracy(student, *bench.test)
    acc_ft = finetuner(student, 0)
    methods = [
        f"{lp.layer}:{lp.method}{dict(lp.ranks)}" for lp in plan.layers if lp.method != "keep"
    ]
    return {
        "model": bench.name,
        "plan": plan,
        "layers_decomposed": len(methods),
        "layers_searchable": len(space.layer_names),
        "compression": prof.n_params / _n_params(student),
        "macs_ratio": macs / dense_macs,
        "dense_accuracy": dense_acc,
        "accuracy_decomposed": acc_decomposed,
        "accuracy_finetuned": acc_ft,
        "detail": ", ".join(methods),
    }


def _peer_check(package: str) -> str:
    """``pip install --dry-run package``: 'installs' or the error lines pip printed."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-input", package]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(cmd[2:])}` did not finish: {exc}"
    text = proc.stdout + proc.stderr
    if proc.returncode == 0:
        would = [line for line in text.splitlines() if line.startswith("Would install")]
        return f"`pip {shlex.join(cmd[3:])}` succeeds ({'; '.join(would) or 'nothing to do'})"
    keep = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith("WARNING: Location")
        and any(
            key in line
            for key in ("Collecting", "error", "Error", "NameError", "╰─>", "from ccompiler")
        )
    ]
    return (
        f"`pip {shlex.join(cmd[3:])}` fails (exit {proc.returncode}):\n\n```\n"
        + "\n".join(keep[-14:])
        + "\n```"
    )


def run(
    models: Sequence[str | BenchModel] = ("resnet8",),
    budgets: Sequence[float] = (0.5, 0.2),
    n_trials: int = 10,
    finetune_epochs: int = 1,
    out_dir: Path | str = HERE,
    *,
    compare_model: str | BenchModel | None = None,
    latency_model: str | BenchModel | None = None,
    seeds: Sequence[int] = (0,),
    finetune_samples: int | None = 1024,
    finetune_lr: float = 0.01,
    proxy_steps: int = 20,
    proxy_samples: int = 512,
    latency_rounds: int = 5,
    samplers: Sequence[str] = ("random", "tpe", "nsga2"),
    peer_check: bool = True,
    command: str = "",
    progress: Callable[[str], None] | None = _say,
) -> BenchResult:
    """Run every benchmark and write BENCHMARKS.md and the plots into ``out_dir``.

    1. Seed table: for each of ``models``, the VBMF Tucker-2 recipe at the VBMF ranks;
       params compression, MACs ratio, test accuracy dense / right after decomposition /
       after the final fine-tune.
    2. Budgeted comparison on ``compare_model`` (default: the first of ``models``) at each
       of ``budgets`` (fractions of dense MACs): the VBMF seed fitted by global rank
       scaling, uniform tucker2 / cp / svd / gkpd, greedy per-layer ratio selection,
       random / TPE / NSGA-II search with ``n_trials`` each, and tltorch when installed;
       every plan gets the same final fine-tune (``finetune_epochs`` on ``finetune_samples``
       training images, None = all) per seed, then test accuracy. Hypervolume of each
       search's (val accuracy, MACs ratio) points, reference (0, 1).
    3. Latency: every plan of the first seed, batch 1 and 64, interleaved with dense; and
       a per-method table of uniform plans at 50 % MACs on ``latency_model``.
    4. Peer libraries: ``pip install --dry-run`` for musco-pytorch and tensorly-torch.

    Args:
        models: Built-in model names (on mnist5k) or :class:`BenchModel` objects.
        budgets: MACs budgets as fractions of dense.
        n_trials: Trials of each search.
        finetune_epochs: Epochs of the final fine-tune.
        out_dir: Where BENCHMARKS.md and the plots go.
        compare_model: Model of the budgeted comparison (default ``models[0]``).
        latency_model: Model of the per-method latency table (default ``compare_model``).
        seeds: Seeds of searches and final fine-tunes (accuracy is averaged over them).
        finetune_samples: Training images of the final fine-tune (None: all).
        finetune_lr: Learning rate of the final fine-tune (a NaN accuracy in a row means
            its loss diverged at this rate).
        proxy_steps: Proxy fine-tune steps per search trial.
        proxy_samples: Proxy fine-tune training images.
        latency_rounds: Interleaved dense / compressed rounds per latency measurement.
        samplers: Search samplers compared.
        peer_check: Run the pip checks for the peer libraries.
        command: The command line recorded in BENCHMARKS.md.
        progress: One-line progress messages (None: silent).

    Returns:
        The :class:`BenchResult` (rows hold the plans, for checks).
    """
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    facts_start = machine_facts()
    result = BenchResult()
    cache: dict[str, BenchModel] = {}

    def get(spec: str | BenchModel) -> BenchModel:
        if isinstance(spec, BenchModel):
            return spec
        if spec not in cache:
            cache[spec] = builtin_model(spec)
        return cache[spec]

    # ------------------------------------------------------------------ 1. seed table
    for spec in models:
        bench = get(spec)
        say(f"[seed table] {bench.name}")
        dense_macs = _macs(bench.model, bench.input_shape)
        dense_acc = evaluate_accuracy(bench.model, *bench.test)
        finetuner = _Finetuner(bench, finetune_epochs, finetune_samples, finetune_lr)
        result.seed_rows.append(_seed_table(bench, finetuner, dense_acc, dense_macs))

    # ------------------------------------------------------------------ 2. budgets
    bench = get(compare_model if compare_model is not None else models[0])
    shape = bench.input_shape
    dense = bench.model
    dense_macs = _macs(dense, shape)
    dense_params = _n_params(dense)
    prof = rankopt.profile(dense, shape)
    space = SearchSpace(prof)
    finetuner = _Finetuner(bench, finetune_epochs, finetune_samples, finetune_lr)
    dense_test = evaluate_accuracy(dense, *bench.test)
    say(f"[greedy] scoring {len(space.layer_names)} layers alone at candidate ratios")
    scores = greedy_scores(dense, space, bench.val, model_name=bench.name)
    fronts: dict[tuple[float, str], list[tuple[float, float]]] = {}
    tl_available = True
    for budget_fraction in budgets:
        budget = Budget(max_macs=rankopt.parse_budget(budget_fraction, prof.macs))
        fixed: list[PlannedModel] = []
        seeds_fit = seed_plans(dense, space, budget, model_name=bench.name)
        for label in ("vbmf", *(f"uniform_{m}" for m in UNIFORM_METHODS)):
            plan = seeds_fit.get(label)
            note = "" if plan is not None else "cannot fit the budget"
            if label == "vbmf":
                note = "Kim et al. Tucker-2 + VBMF ranks, global rank scaling to fit"
            fixed.append(PlannedModel(label, plan, None, note))
        g_plan, g_note = greedy_plan(space, scores, budget, model_name=bench.name)
        fixed.append(PlannedModel("greedy", g_plan, None, f"AIMET-style; {g_note}"))
        if tl_available:
            try:
                tl_model, tl_note = tltorch_model(dense, space, budget, shape)
                fixed.append(PlannedModel("tltorch_tucker (peer)", None, tl_model, tl_note))
            except ImportError as exc:
                tl_available = False
                result.peer_notes.append(f"tltorch not importable here: {exc}")
            except rankopt.RankoptError as exc:
                fixed.append(PlannedModel("tltorch_tucker (peer)", None, None, str(exc)))
        for seed in seeds:
            candidates = list(fixed)
            for sampler in samplers:
                say(f"[search] {sampler} at {budget_fraction:.0%}, seed {seed}, {n_trials} trials")
                t0 = time.perf_counter()
                study, s_plan, hv = run_search(
                    dense,
                    bench.train,
                    bench.val,
                    budget_fraction=budget_fraction,
                    sampler=sampler,
                    n_trials=n_trials,
                    seed=seed,
                    finetune_steps=proxy_steps,
                    finetune_samples=proxy_samples,
                    model_name=bench.name,
                    progress=None,
                )
                n_done = len(study_points(study))
                if seed == seeds[0]:
                    fronts[(budget_fraction, sampler)] = study_points(study)
                result.hypervolumes.append(
                    {
                        "budget": budget_fraction,
                        "sampler": sampler,
                        "seed": seed,
                        "hypervolume": hv,
                        "n_trials": n_done,
                        "wall_time_s": time.perf_counter() - t0,
                    }
                )
                note = "no seed trials" if sampler == "random" else "VBMF + uniform seeds first"
                candidates.append(
                    PlannedModel(
                        f"search_{sampler}",
                        s_plan,
                        None,
                        f"{note}; trial {s_plan.provenance.get('trial')}",
                        {"val_accuracy": float(s_plan.metrics.get("accuracy", math.nan))},
                    )
                )
            for cand in candidates:
                result.budget_rows.append(
                    _evaluate(
                        cand,
                        bench,
                        finetuner,
                        seed,
                        budget_fraction,
                        dense_macs,
                        dense_params,
                        latency=seed == seeds[0],
                        latency_rounds=latency_rounds,
                    )
                )
                row = result.budget_rows[-1]
                say(
                    f"  {budget_fraction:.0%} seed {seed} {cand.label}: test acc "
                    f"{row['test_accuracy']:.4f}, macs {row['macs_ratio']:.3f}"
                )

    # ------------------------------------------------------------------ 3. per-method latency
    lat_bench = get(latency_model) if latency_model is not None else bench
    say(f"[latency] uniform plans at 50% MACs on {lat_bench.name}")
    lat_prof = rankopt.profile(lat_bench.model, lat_bench.input_shape)
    lat_space = SearchSpace(lat_prof)
    lat_dense_macs = _macs(lat_bench.model, lat_bench.input_shape)
    half = Budget(max_macs=rankopt.parse_budget(0.5, lat_prof.macs))
    for label, plan in seed_plans(
        lat_bench.model, lat_space, half, model_name=lat_bench.name
    ).items():
        if not (label == "vbmf" or label.startswith("uniform_")):
            continue
        student = rankopt.apply_plan(lat_bench.model, plan)
        row: dict[str, Any] = {
            "label": label,
            "plan": plan,
            "macs_ratio": _macs(student, lat_bench.input_shape) / lat_dense_macs,
        }
        for batch in (1, 64):
            ms, ratio = latency_ratios(
                lat_bench.model,
                student,
                lat_bench.input_shape,
                batch_size=batch,
                rounds=latency_rounds,
            )
            row[f"latency_ms_b{batch}"] = ms
            row[f"latency_ratio_b{batch}"] = ratio
        result.latency_rows.append(row)

    # ------------------------------------------------------------------ 4. peers
    if peer_check:
        for package in ("musco-pytorch", "tensorly-torch"):
            say(f"[peer] pip install --dry-run {package}")
            result.peer_notes.append(f"**{package}**: {_peer_check(package)}")

    result.expectation = _expectation(result, samplers)
    result.wall_time_s = time.perf_counter() - started
    out = Path(out_dir)
    result.files = write_plots(out, result.budget_rows, fronts, result.latency_rows)
    md = _markdown(
        result,
        facts_start=facts_start,
        facts_end=machine_facts(),
        settings={
            "models (seed table)": ", ".join(get(m).name for m in models),
            "model (budgets)": f"{bench.name} (dense test accuracy {dense_test:.4f}, "
            f"{dense_macs} MACs, {dense_params} params)",
            "model (per-method latency)": lat_bench.name,
            "budgets (fraction of dense MACs)": ", ".join(f"{b:.0%}" for b in budgets),
            "trials per search": str(n_trials),
            "seeds": ", ".join(map(str, seeds)),
            "search proxy fine-tune": f"{proxy_steps} steps on {proxy_samples} images",
            "final fine-tune": f"full_finetune, {finetune_epochs} epoch(s) on "
            f"{finetune_samples or len(bench.train[1])} training images, lr {finetune_lr}, "
            "SGD + cosine, distillation from "
            "dense, same for every row",
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


def _evaluate(
    cand: PlannedModel,
    bench: BenchModel,
    finetuner: _Finetuner,
    seed: int,
    budget_fraction: float,
    dense_macs: int,
    dense_params: int,
    *,
    latency: bool,
    latency_rounds: int,
) -> dict[str, Any]:
    """Final fine-tune + test accuracy (+ latency) of one candidate."""
    row: dict[str, Any] = {
        "budget": budget_fraction,
        "method": cand.label,
        "seed": seed,
        "plan": cand.plan,
        "note": cand.note,
        "val_accuracy": cand.extra.get("val_accuracy", math.nan),
        "test_accuracy": math.nan,
        "accuracy_decomposed": math.nan,
        "macs_ratio": math.nan,
        "params_ratio": math.nan,
        "latency_ratio_b1": math.nan,
        "latency_ratio_b64": math.nan,
    }
    if cand.plan is not None:
        student = rankopt.apply_plan(bench.model, cand.plan)
    elif cand.model is not None:
        student = copy.deepcopy(cand.model)
    else:
        return row
    row["macs_ratio"] = _macs(student, bench.input_shape) / dense_macs
    row["params_ratio"] = _n_params(student) / dense_params
    row["accuracy_decomposed"] = evaluate_accuracy(student, *bench.test)
    row["test_accuracy"] = finetuner(student, seed)
    if latency:
        for batch in (1, 64):
            _, ratio = latency_ratios(
                bench.model, student, bench.input_shape, batch_size=batch, rounds=latency_rounds
            )
            row[f"latency_ratio_b{batch}"] = ratio
    return row


def _by_method(rows: Sequence[dict[str, Any]], budget: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["budget"] == budget:
            out.setdefault(str(r["method"]), []).append(r)
    return out


def _expectation(result: BenchResult, samplers: Sequence[str]) -> list[str]:
    """Where 'rankopt search >= every baseline' and 'HV(search) > HV(random)' held."""
    lines: list[str] = []
    budgets = sorted({r["budget"] for r in result.budget_rows}, reverse=True)
    ours = [f"search_{s}" for s in samplers if s != "random"]
    for budget in budgets:
        groups = _by_method(result.budget_rows, budget)
        means = {
            m: statistics.mean(r["test_accuracy"] for r in rs)
            for m, rs in groups.items()
            if all(math.isfinite(r["test_accuracy"]) for r in rs)
        }
        for mine in ours:
            if mine not in means:
                continue
            losses = [
                f"{m} {acc:.4f}" for m, acc in means.items() if m not in ours and acc > means[mine]
            ]
            if losses:
                lines.append(
                    f"- {budget:.0%}: **{mine} ({means[mine]:.4f}) is beaten by** "
                    + ", ".join(losses)
                )
            else:
                lines.append(f"- {budget:.0%}: {mine} ({means[mine]:.4f}) >= every baseline")
        hv = {
            s: statistics.mean(
                h["hypervolume"]
                for h in result.hypervolumes
                if h["budget"] == budget and h["sampler"] == s
            )
            for s in samplers
            if any(h["budget"] == budget and h["sampler"] == s for h in result.hypervolumes)
        }
        if "random" in hv:
            for s in samplers:
                if s == "random" or s not in hv:
                    continue
                verdict = "beats" if hv[s] > hv["random"] else "**does not beat**"
                lines.append(
                    f"- {budget:.0%}: hypervolume {s} {hv[s]:.4f} {verdict} random "
                    f"{hv['random']:.4f}"
                )
    return lines


def _markdown(
    result: BenchResult,
    *,
    facts_start: dict[str, str],
    facts_end: dict[str, str],
    settings: dict[str, str],
    command: str,
) -> str:
    parts = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run.py`; do not edit by hand. Reproduce with:",
        "",
        f"```\n{command or 'python benchmarks/run.py'}\n```",
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
        "## 1. The seed recipe on our data (Kim et al. 2016: Tucker-2 + VBMF ranks)",
        "",
        "Tucker-2 at the VBMF ranks (R3 from the input-channel unfolding, R4 from the",
        "output-channel unfolding) on every kxk conv; 1x1 convs: channel SVD at the VBMF rank",
        "of the T x S matrix (Tucker-2 of a 1x1 conv is the same matrix factorisation); the",
        "Linear head: SVD at its VBMF rank. The input conv (<= 3 input channels, as Kim et",
        "al.) and layers where VBMF finds no component above the noise (rank <= 1) stay",
        "dense; so do layers whose decomposition would cost more MACs than dense. No budget:",
        "the ranks are VBMF's own. Accuracies are on the test split.",
        "",
        md_table(
            [
                "model",
                "layers decomposed",
                "compression (params dense/compressed)",
                "MACs ratio (compressed/dense)",
                "accuracy dense",
                "right after decomposition",
                "after fine-tune",
            ],
            [
                (
                    r["model"],
                    f"{r['layers_decomposed']} / {r['layers_searchable']}",
                    f"{r['compression']:.2f}x",
                    r["macs_ratio"],
                    r["dense_accuracy"],
                    r["accuracy_decomposed"],
                    r["accuracy_finetuned"],
                )
                for r in result.seed_rows
            ],
        ),
        "",
        "Ranks per layer:",
        "",
        *[f"- {r['model']}: {r['detail']}" for r in result.seed_rows],
        "",
        "## 2. Budgeted comparison (same final fine-tune for every row)",
        "",
        "`vbmf`: the seed recipe scaled down by one global factor on all rank fractions",
        "until it fits (`SearchSpace.repair`). `uniform_<m>`: method m on every kxk conv",
        "(1x1 convs: SVD, Linear: SVD) at the largest uniform rank fraction that fits.",
        "`greedy`: each layer decomposed alone (Tucker-2 / SVD) at rank ratios 0.1, 0.25,",
        "0.5, 0.75 and scored by validation accuracy without fine-tune; for an accuracy-loss",
        "threshold each layer takes its cheapest ratio within it; the smallest threshold that",
        "meets the budget wins (AIMET's greedy compression-ratio selection).",
        "`search_random`: `rankopt.search(sampler='random', seed_with_vbmf=False)`;",
        "`search_tpe` / `search_nsga2`: rankopt's default recipe (VBMF and uniform seed",
        "trials first, then the sampler), same number of trials. The plan taken from each",
        "search is its most accurate trial (validation accuracy after the proxy fine-tune)",
        "within the budget. `tltorch_tucker (peer)`: see section 4. Test accuracy after the",
        "final fine-tune is mean ± std over the seeds; MACs ratio is fvcore's count of the",
        "built model over the dense count; latency ratios are from the first seed",
        "(< 1 = faster than dense).",
        "",
    ]
    budgets = sorted({r["budget"] for r in result.budget_rows}, reverse=True)
    for budget in budgets:
        groups = _by_method(result.budget_rows, budget)
        rows = []
        for method, rs in groups.items():
            first = rs[0]
            rows.append(
                (
                    method,
                    mean_std([r["test_accuracy"] for r in rs]),
                    first["accuracy_decomposed"],
                    first["val_accuracy"],
                    statistics.mean(r["macs_ratio"] for r in rs)
                    if all(math.isfinite(r["macs_ratio"]) for r in rs)
                    else math.nan,
                    first["params_ratio"],
                    first["latency_ratio_b1"],
                    first["latency_ratio_b64"],
                    first["note"],
                )
            )
        parts += [
            f"### Budget {budget:.0%} of dense MACs",
            "",
            md_table(
                [
                    "method",
                    "test accuracy (final FT)",
                    "test acc. before FT",
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
        "### Hypervolume of each search's (val accuracy, MACs ratio) points",
        "",
        "2-D hypervolume, accuracy maximised, MACs ratio minimised, reference point",
        "(accuracy 0, MACs ratio 1); all completed trials of the study (within the budget).",
        "",
        md_table(
            ["budget", "sampler", "seed", "hypervolume", "trials", "wall time (s)"],
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
        "### Expectation: rankopt search >= every baseline; its hypervolume > random's",
        "",
        *(result.expectation or ["- nothing to compare"]),
        "",
        "## 3. Realised speed: which methods turn MAC savings into wall-clock savings",
        "",
        "One plan per method, each at the largest uniform rank fraction within 50 % of dense",
        "MACs (`vbmf`: the seed recipe scaled to fit), CPU latency median over interleaved",
        "rounds, ratio to dense (< 1 = faster). `saving realised` = (1 - latency ratio) /",
        "(1 - MACs ratio): 1 means the wall clock shrinks as much as the MACs.",
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
        "load `plotly.min.js` from this directory and work offline.",
        "",
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python benchmarks/run.py [--quick] [--out DIR] [--threads N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="< 15 min on 2 cores: resnet8")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    if args.threads != 1:
        command += f" --threads {args.threads}"
    if args.quick:
        run(
            models=("resnet8",),
            budgets=(0.5, 0.2),
            n_trials=10,
            finetune_epochs=1,
            out_dir=args.out,
            seeds=(0,),
            finetune_samples=1024,
            proxy_steps=20,
            proxy_samples=512,
            latency_rounds=5,
            command=command,
        )
    else:
        run(
            models=("resnet8", "resnet20", "vgg_small", "mobilenet_small"),
            budgets=(0.5, 0.3, 0.2),
            n_trials=40,
            finetune_epochs=5,
            out_dir=args.out,
            compare_model="resnet8",
            latency_model="resnet20",
            seeds=(0, 1, 2),
            finetune_samples=None,
            proxy_steps=120,
            proxy_samples=2048,
            latency_rounds=15,
            command=command,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
