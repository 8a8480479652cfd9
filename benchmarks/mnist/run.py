"""Benchmarks side by side: rankopt's search vs the seed recipe, the usual baselines, a peer.

Usage::

    python benchmarks/run.py --quick     # 3 seeds x 8 trials, 2-epoch final FT (~20 min)
    python benchmarks/run.py --quick --seeds 0,1,2 --trials 16 --epochs 5   # closer to full
    python benchmarks/run.py             # full: 40 trials, 120 proxy steps, 5 epochs

Both modes run resnet8 on mnist5k at budgets 10 / 7 / 5 % of dense MACs (``--budgets``): budgets
where the best baseline loses at least 2 points from dense (at 20 % it lost 0.4, so a +1 point
goal there would have asked for more than dense).

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
    bench_space,
    greedy_plan,
    greedy_scores,
    latency_ratios,
    n_outputs_of,
    run_search,
    seed_recipe_plan,
    shared_sensitivity,
    spearman_sample,
    study_points,
    tltorch_model,
    uniform_plan,
)
from bench_report import machine_facts, md_table, mean_std, write_plots
from scipy.stats import spearmanr
from torch import nn

import rankopt
from rankopt.evaluators import compute_logits, evaluate_accuracy, full_finetune
from rankopt.search import Budget, SearchSettings
from rankopt.storage._attrs import VAL_LOSS_ATTR

Data = tuple[torch.Tensor, torch.Tensor]
HERE = Path(__file__).resolve().parent
CALIBRATION_IMAGES = 1024
FINAL_MAX_GRAD_NORM = 10.0
"""Final fine-tune clipping: a guard against divergence only (the library default 2.0 cut
every step of the old benchmark's fine-tune)."""
_SEARCH_DEFAULTS = SearchSettings()
"""The search's defaults: the proxy fine-tune of every search row is the default one."""
AIMET_NOTE = (
    "**aimet-torch** 2.42.0: installs into its own venv (`python -m venv /tmp/aimet && "
    "/tmp/aimet/bin/pip install aimet-torch`; it pulls its own torch stack) and its "
    "spatial-SVD greedy (`ModelCompressor.compress_model`, `CompressionScheme.spatial_svd`, "
    "`CostMetric.mac`, auto mode, 10 ratio candidates per layer, input conv ignored) runs on "
    "resnet8 in 40-65 s per budget: `benchmarks/bench_aimet.py` writes the compressed "
    "models, and `run.py --aimet-dir DIR` adds them as `aimet_spatial_svd (peer)` rows "
    "(calibration + the same final fine-tune). Its models (kx1 then 1xk convs, the stride "
    "split (2,1) / (1,2), rank-1 1x1 shortcuts) crash torch 2.14.1's CPU oneDNN convolution "
    "backward ('malloc(): unaligned tcache chunk detected' / segfault in the first fine-tune "
    "step, also after rebuilding them as fresh Conv2d modules; every conv alone is fine), so "
    "these rows are evaluated with `torch.backends.mkldnn` off (their latency ratios too). "
    "A run without `--aimet-dir` has no aimet row."
)


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
        seed_row: The seed recipe (Kim et al., unbudgeted) row.
        budget_rows: One dict per (budget, method, seed) with its ``plan`` (None for the
            peer library) and ``macs_ratio`` (fvcore count / dense fvcore count).
        hypervolumes: One dict per (budget, sampler, seed).
        spearman: One dict per sampled study: proxy vs final accuracies and rho.
        latency_rows: Per-method uniform plans at ~50 % MACs with latency ratios.
        peer_notes: What happened with each peer library.
        expectation: Lines saying where the goals held and where they did not.
        split_sizes: Images in the validation and test splits (for the noise line).
        dense_val_accuracy: Validation accuracy of the dense model (the hypervolume bound).
        wall_time_s: Wall time of the run.
        files: Paths written.
    """

    seed_row: dict[str, Any] = field(default_factory=dict)
    budget_rows: list[dict[str, Any]] = field(default_factory=list)
    hypervolumes: list[dict[str, Any]] = field(default_factory=list)
    spearman: list[dict[str, Any]] = field(default_factory=list)
    latency_rows: list[dict[str, Any]] = field(default_factory=list)
    peer_notes: list[str] = field(default_factory=list)
    expectation: list[str] = field(default_factory=list)
    split_sizes: dict[str, int] = field(default_factory=dict)
    dense_val_accuracy: float = math.nan
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
    """What every compared model gets: BatchNorm calibration, the final fine-tune, test
    accuracy (the same for every row, peers included)."""

    def __init__(self, bench: BenchModel, epochs: int, lr: float = 0.01) -> None:
        images, labels = bench.train
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        self.calibration = images[order[:CALIBRATION_IMAGES]].contiguous()
        self.train = (images.contiguous(), labels.contiguous())
        self.teacher = compute_logits(bench.model, self.train[0])
        self.epochs = epochs
        self.lr = lr
        self.bench = bench

    def calibrate(self, student: nn.Module) -> float:
        """Re-estimate BatchNorm statistics in place; test accuracy right after."""
        rankopt.calibrate_bn(student, self.calibration)
        return evaluate_accuracy(student, *self.bench.test)

    def __call__(self, student: nn.Module, seed: int) -> float:
        """Fine-tune ``student`` in place; its test accuracy (NaN when the loss diverged)."""
        if self.epochs > 0:
            try:
                full_finetune(
                    student,
                    self.teacher,
                    self.train,
                    epochs=self.epochs,
                    seed=seed,
                    lr=self.lr,
                    max_grad_norm=FINAL_MAX_GRAD_NORM,
                )
            except rankopt.TrialFailedError:
                return math.nan
        return evaluate_accuracy(student, *self.bench.test)

    def plan_accuracy(self, model: nn.Module, plan: rankopt.CompressionPlan, seed: int) -> float:
        """Apply, calibrate, fine-tune, test accuracy."""
        student = rankopt.apply_plan(model, plan)
        self.calibrate(student)
        return self(student, seed)


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
    model: str | BenchModel = "resnet8",
    budgets: Sequence[float] = (0.1, 0.07, 0.05),
    n_trials: int = 12,
    finetune_epochs: int = 2,
    out_dir: Path | str = HERE,
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
    progress: Callable[[str], None] | None = _say,
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
    dense_macs = _macs(dense, shape)
    dense_params = _n_params(dense)
    dense_test = evaluate_accuracy(dense, *bench.test)
    space = bench_space(dense, shape, n_outputs_of(dense, bench.train[0]))
    finetuner = _Finetuner(bench, finetune_epochs, finetune_lr)

    def evaluate(cand: PlannedModel, budget: float | None, seed: int, latency: bool) -> dict:
        row = _evaluate(
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
        PlannedModel("seed_recipe", recipe, None, "Kim et al., VBMF ranks"), None, seeds[0], False
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
            fixed: list[PlannedModel] = []
            for method in UNIFORM_METHODS:
                plan, note = uniform_plan(space, method, budget, model_name=bench.name)
                fixed.append(PlannedModel(f"uniform_{method}", plan, None, note))
            g_plan, g_note = greedy_plan(space, scores, budget, model_name=bench.name)
            fixed.append(PlannedModel("greedy", g_plan, None, f"AIMET-style; {g_note}"))
            if tl_available:
                try:
                    tl_model, tl_note = tltorch_model(dense, space, budget, shape)
                    fixed.append(PlannedModel("tltorch_tucker (peer)", None, tl_model, tl_note))
                except ImportError as exc:
                    tl_available = False
                    result.peer_notes.append(f"**tensorly-torch**: not importable here: {exc}")
                except rankopt.RankoptError as exc:
                    fixed.append(PlannedModel("tltorch_tucker (peer)", None, None, str(exc)))
            aimet_file = Path(aimet_dir or "/nonexistent") / f"aimet_{fraction:g}.pt"
            if aimet_file.exists():
                fixed.append(
                    PlannedModel(
                        "aimet_spatial_svd (peer)",
                        None,
                        torch.load(aimet_file, weights_only=False).eval(),
                        "aimet-torch spatial-SVD greedy (bench_aimet.py); oneDNN off",
                        {"mkldnn_off": True},
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
                    cand = PlannedModel(
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
                            _spearman(
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
            "macs_ratio": _macs(student, shape) / dense_macs,
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
        result.peer_notes.append(f"**musco-pytorch**: {_peer_check('musco-pytorch')}")

    result.split_sizes = {"val": len(bench.val[1]), "test": len(bench.test[1])}
    result.dense_val_accuracy = evaluate_accuracy(dense, *bench.val)
    result.expectation = _expectation(result)
    result.wall_time_s = time.perf_counter() - started
    out = Path(out_dir)
    plot_rows = [r for r in result.budget_rows if r["budget"] is not None]
    result.files = write_plots(out, plot_rows, fronts, result.latency_rows)
    md = _markdown(
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


def _spearman(
    study: Any,
    k: int,
    finetuner: _Finetuner,
    dense: nn.Module,
    seed: int,
    fraction: float,
    sampler: str,
    best_trial: Any,
    best_acc: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Final fine-tune of a sample of the study's trials; Spearman's rho proxy vs final."""
    proxy: list[float] = []
    losses: list[float] = []
    final: list[float] = []
    for t in spearman_sample(study, k):
        plan = rankopt.export_plan(study, trial=t.number)
        acc = best_acc if t.number == best_trial else finetuner.plan_accuracy(dense, plan, seed)
        proxy.append(float(t.user_attrs["accuracy"]))
        losses.append(float(t.user_attrs.get(VAL_LOSS_ATTR, math.nan)))
        final.append(acc)
        say(
            f"    spearman sample trial {t.number}: proxy {proxy[-1]:.4f} (val loss "
            f"{losses[-1]:.4f}), final {acc:.4f}"
        )
    return {
        "budget": fraction,
        "sampler": sampler,
        "seed": seed,
        "proxy": proxy,
        "val_loss": losses,
        "final": final,
        "rho": _rho(proxy, final),
        "rho_loss": _rho([-x for x in losses], final),
    }


def _rho(scores: Sequence[float], final: Sequence[float]) -> float:
    """Spearman's rho of ``scores`` vs ``final`` over the pairs where both are finite."""
    ok = [(p, f) for p, f in zip(scores, final, strict=True) if math.isfinite(p + f)]
    if len(ok) >= 3 and len({p for p, _ in ok}) > 1 and len({f for _, f in ok}) > 1:
        return float(spearmanr([p for p, _ in ok], [f for _, f in ok]).statistic)
    return math.nan


def _evaluate(
    cand: PlannedModel,
    bench: BenchModel,
    finetuner: _Finetuner,
    seed: int,
    dense_macs: int,
    dense_params: int,
    *,
    latency: bool,
    latency_rounds: int,
) -> dict[str, Any]:
    """Calibration, final fine-tune, test accuracy (+ latency) of one candidate."""
    row: dict[str, Any] = {
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
    if cand.extra.get("mkldnn_off"):
        with torch.backends.mkldnn.flags(enabled=False):
            return _evaluate(
                PlannedModel(cand.label, cand.plan, cand.model, cand.note),
                bench,
                finetuner,
                seed,
                dense_macs,
                dense_params,
                latency=latency,
                latency_rounds=latency_rounds,
            )
    if cand.plan is not None:
        student = rankopt.apply_plan(bench.model, cand.plan)
    elif cand.model is not None:
        student = copy.deepcopy(cand.model)
    else:
        return row
    row["macs_ratio"] = _macs(student, bench.input_shape) / dense_macs
    row["params_ratio"] = _n_params(student) / dense_params
    row["accuracy_decomposed"] = finetuner.calibrate(student)
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


def _expectation(result: BenchResult) -> list[str]:
    """Where the issue's goals held and where they did not."""
    lines: list[str] = []
    budgets = sorted({r["budget"] for r in result.budget_rows}, reverse=True)
    for budget in budgets:
        groups = _by_method(result.budget_rows, budget)
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
    lines += _noise(result)
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


def _noise(result: BenchResult) -> list[str]:
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
        for m, rs in _by_method(result.budget_rows, budget).items()
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


def _markdown(
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
        groups = _by_method(result.budget_rows, budget)
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
        "load `plotly.min.js` from this directory and work offline.",
        "",
    ]
    return "\n".join(parts)


def _floats(text: str) -> list[float]:
    return [float(x.rstrip("%")) / (100 if x.endswith("%") else 1) for x in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python benchmarks/run.py [--quick] [--trials N] [--epochs N] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (~50 min, 2 cores)")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--trials", type=int, default=None, help="trials per search")
    parser.add_argument("--epochs", type=int, default=None, help="final fine-tune epochs")
    parser.add_argument("--budgets", type=str, default=None, help="e.g. 0.1,0.07,0.05")
    parser.add_argument("--seeds", type=str, default=None, help="e.g. 0,1,2")
    parser.add_argument(
        "--proxy-steps", type=int, default=None, help="proxy fine-tune steps (search default)"
    )
    parser.add_argument(
        "--proxy-samples", type=int, default=None, help="proxy fine-tune images (search default)"
    )
    parser.add_argument(
        "--aimet-dir", type=Path, default=None, help="models written by bench_aimet.py"
    )
    parser.add_argument("--spearman", type=int, default=None, help="trials sampled per study")
    parser.add_argument(
        "--model",
        default="resnet8",
        help="built-in model trained on mnist5k (rankopt.models; default resnet8)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    quick = args.quick
    budgets = _floats(args.budgets) if args.budgets else [0.1, 0.07, 0.05]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [0, 1, 2]
    run(
        args.model,
        budgets=budgets,
        n_trials=args.trials or (16 if quick else 40),
        finetune_epochs=args.epochs or (3 if quick else 5),
        out_dir=args.out,
        seeds=seeds,
        proxy_steps=args.proxy_steps or _SEARCH_DEFAULTS.finetune_steps,
        proxy_samples=args.proxy_samples or _SEARCH_DEFAULTS.finetune_samples,
        spearman_trials=args.spearman or (4 if quick else 8),
        latency_rounds=5 if quick else 15,
        aimet_dir=args.aimet_dir,
        command=command,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
