"""Command line: ``python -m benchmarks.fashion_latency [--budgets ...] [--rows ...] ...``.

Writes ``BENCHMARKS_FASHION_LATENCY.md`` and ``fashion_latency_rows.json`` (every row and
the run's facts, re-rendered by ``--render-only``) into ``--out`` (default ``benchmarks/``).
The defaults (6 trials per search, a 1-epoch final fine-tune over 8,192 training images,
0.5 s per model per latency timing) aim at about 45 to 55 minutes for the whole run (3
budgets x 3 seeds x 2 searches + the peers) on a 2-core machine, estimated from a smoke run
there: one 4-trial search 124 s (its sensitivity profile included, measured once per seed
and shared), one fine-tune over 4,096 images 8 s (musco's, with oneDNN off, 24 s), the
torch-pruning bisection 40 s per budget, the tensorly-torch grid 150 s once. ``--trials 4``
shortens it; the first search on a machine also measures ONNX Runtime's latency table
(minutes, cached on disk).
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.common.harness import Candidate, FinalFinetune, say
from benchmarks.common.report import machine_facts
from benchmarks.common.searches import shared_sensitivity
from benchmarks.fashion.harness import Task, load_task, measure_row
from benchmarks.fashion_latency import grids
from benchmarks.fashion_latency.peers import GRID_MACS, GridPeer, LatencyPeer, PruningByLatency
from benchmarks.fashion_latency.report import render
from benchmarks.fashion_latency.searches import (
    PROBE_FRACTION,
    SEARCH_LABELS,
    lowest_reachable,
    search_candidate,
)

HERE = Path(__file__).resolve().parent.parent
ROWS = ("rankopt", "rankopt_decomposition", "torch_pruning", "tltorch", "musco", "aimet")
"""``--rows`` names: the joint search, the decomposition-only search, then the peers."""
MD_NAME = "BENCHMARKS_FASHION_LATENCY.md"
JSON_NAME = "fashion_latency_rows.json"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options (see the module docstring for the defaults' cost)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.fashion_latency", description=__doc__)
    p.add_argument("--model", default="resnet8")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument(
        "--budgets",
        type=_floats,
        default=[0.75, 0.5, 0.35],
        help="latency budgets, fractions of dense on ONNX Runtime",
    )
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=6, help="trials per search")
    p.add_argument("--ft-epochs", type=int, default=1, help="final fine-tune passes")
    p.add_argument("--ft-images", type=int, default=8192, help="final fine-tune sample")
    p.add_argument("--rows", type=_names, default=list(ROWS), help=f"of {','.join(ROWS)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument(
        "--min-timed-s",
        type=float,
        default=0.5,
        help="seconds each model is timed per latency measurement",
    )
    p.add_argument(
        "--peers-dir",
        type=Path,
        default=Path("/tmp/rankopt_peers_latency"),
        help="where musco / AIMET grid models are written (kept between runs)",
    )
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        help=f"merge the {JSON_NAME} of these runs (say one per budget, run side by side) "
        "into --out's, then render",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help=f"re-render {MD_NAME} from --out's {JSON_NAME}, no training",
    )
    return p.parse_args(argv)


def _peers(args: argparse.Namespace, task: Task) -> dict[str, LatencyPeer]:
    """The peer builders of the selected ``--rows`` (each measures lazily, once); musco and
    AIMET models fine-tune with oneDNN off (their convolutions crash its backward pass)."""
    shape, t = task.input_shape, args.min_timed_s
    folder = args.peers_dir / f"{task.model_name}_{task.data_name}"
    made: dict[str, LatencyPeer] = {
        "torch_pruning": PruningByLatency(task.model, shape, min_timed_s=t),
        "tltorch": GridPeer(
            "tensorly-torch", grids.tltorch_grid(task), task.model, shape, min_timed_s=t
        ),
        "musco": GridPeer(
            "musco",
            grids.musco_grid(task, folder),
            task.model,
            shape,
            min_timed_s=t,
            mkldnn_off=True,
        ),
        "aimet": GridPeer(
            "AIMET spatial SVD",
            grids.aimet_grid(task, folder),
            task.model,
            shape,
            min_timed_s=t,
            mkldnn_off=True,
        ),
    }
    return {k: v for k, v in made.items() if k in args.rows}


def _measure(
    cand: Candidate,
    task: Task,
    finetune: FinalFinetune,
    budget: float,
    seed: int,
    *,
    latency: bool,
    min_timed_s: float,
) -> dict[str, Any]:
    """One row: the shared fine-tune and (when asked) the measured latency ratios."""
    started = time.perf_counter()
    row = measure_row(
        cand, task, finetune, seed=seed, budget=None, latency=latency, min_timed_s=min_timed_s
    )
    row.pop("accuracy_decomposed", None)  # measure_row's seed-recipe extra
    row["budget"] = budget
    row["row_wall_s"] = time.perf_counter() - started + float(cand.extra.get("search_wall_s", 0))
    return row


def _peer_rows(
    peer: LatencyPeer,
    task: Task,
    finetune: FinalFinetune,
    budget: float,
    seeds: Sequence[int],
    min_timed_s: float,
) -> list[dict[str, Any]]:
    """A peer's rows: one model for every seed, its latency measured once and shared."""
    cand = peer.candidate(budget)
    say(f"[{budget:.0%}] {cand.label}: {cand.note[:160]}")
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        row = _measure(
            cand, task, finetune, budget, seed, latency=not rows, min_timed_s=min_timed_s
        )
        if rows:
            row.update({k: v for k, v in rows[0].items() if k.startswith("latency_")})
        row["row_wall_s"] += float(cand.extra.get("build_s", 0.0)) / len(seeds)
        rows.append(row)
    return rows


def run(args: argparse.Namespace, meta: dict[str, Any], save: Callable[[], None]) -> None:
    """Every row of every budget into ``meta["rows"]`` (saved after each row)."""
    task = load_task(args.model, args.data)
    finetune = FinalFinetune(task, n_images=args.ft_images, epochs=args.ft_epochs)
    meta["task"] = {
        "model_name": task.model_name,
        "data_name": task.data_name,
        "dense_test_accuracy": task.dense_test_accuracy,
        "dense_macs": task.dense_macs,
    }
    meta["finetune"] = finetune.describe()
    rows: list[dict[str, Any]] = meta["rows"]
    for seed in args.seeds:
        student = copy.deepcopy(task.model)
        finetune.calibrate(student)
        meta["dense_ft"].append(finetune(student, seed)[0])
    peers = _peers(args, task)
    for budget in args.budgets:
        for peer in peers.values():
            rows += _peer_rows(peer, task, finetune, budget, args.seeds, args.min_timed_s)
            save()
    for prune in [name == "rankopt" for name in ROWS[:2] if name in args.rows]:
        # one profile cache per prune setting: shared_sensitivity keys on the layer names
        # only, and the joint search's profile also scores the pruning choices
        with shared_sensitivity():
            reach = lowest_reachable(task, prune=prune)
            say(f"[reach] {reach.label}: {reach.percent:.1f}% of dense at b{reach.batch_size}")
            meta["reach"].append({**asdict(reach), "probe": PROBE_FRACTION})
            for budget in args.budgets:
                for seed in args.seeds:
                    say(f"[{budget:.0%}] search prune={prune} seed {seed}, {args.trials} trials")
                    cand = search_candidate(
                        task, budget=budget, seed=seed, n_trials=args.trials, prune=prune
                    )
                    rows.append(
                        _measure(
                            cand,
                            task,
                            finetune,
                            budget,
                            seed,
                            latency=True,
                            min_timed_s=args.min_timed_s,
                        )
                    )
                    save()


def _method_lines(args: argparse.Namespace) -> list[str]:
    """How each row was made and what this run tried (for the file)."""
    return [
        f"{SEARCH_LABELS[0]}: rankopt.search with max_latency = the budget, "
        "latency_runtime='onnxruntime' (its per-layer latency table predicts each plan's "
        "batch-1 and batch-64 latency), prune=True (channel pruning mixed with "
        f"decomposition), sampler TPE, {args.trials} trials, proxy fine-tune 120 steps, the "
        "row's seed; the recommended plan (rankopt.export_plan).",
        f"{SEARCH_LABELS[1]}: the same search with prune=False.",
        "torch-pruning: benchmarks.peer_pruning.pruned_model (BasePruner, L2 group magnitude, "
        "per-layer ratio, classifier ignored); its MACs target bisected (first guess: the "
        "budget) for the largest target whose measured ORT latency at batch 1 and 64 is within "
        "the budget, at most 8 timings per budget, timings shared across budgets.",
        f"tensorly-torch / musco / AIMET: built at MACs {list(GRID_MACS)}, all timed in one "
        "side-by-side measurement; each budget takes the largest MACs whose measured ORT "
        "latency at batch 1 and 64 is within it (a row without a model says why).",
        f"Selection timings: {args.min_timed_s:g} s per model; the table's latency columns are "
        "a second measurement (after the fine-tune), so a chosen model may land a little over.",
        "Peers are one model for all seeds (latency measured once); search rows are one "
        "study per seed (latency measured per seed). Wall s: a search row's search plus "
        "fine-tune and timing; a peer row's share (1 / seeds) of its selection (torch-pruning: "
        "this budget's bisection; a grid peer: building and timing the whole grid, counted at "
        "every budget though done once) plus its fine-tune and timing.",
    ]


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One run's facts from several run side by side: their rows and budgets together, the
    first run's dense fine-tune and reach, every command, the longest wall time."""
    first = runs[0]
    budgets = sorted({b for r in runs for b in r["budgets"]}, reverse=True)
    return {
        **first,
        "command": " ; ".join(r["command"] for r in runs) + " (side by side, then --combine)",
        "budgets": budgets,
        "rows": [row for r in runs for row in r["rows"]],
        "wall_s": max(float(r.get("wall_s", 0.0)) for r in runs),
        "notes": [*first.get("notes", []), f"{len(runs)} runs side by side, combined"],
    }


def dump(out: Path, meta: dict[str, Any]) -> None:
    """``fashion_latency_rows.json``: every row and the run's facts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(meta, indent=1, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or re-render it) and write its files."""
    args = parse_args(argv)
    out: Path = args.out
    if args.combine:
        dump(out, combine([json.loads((d / JSON_NAME).read_text()) for d in args.combine]))
    if args.render_only or args.combine:
        saved: dict[str, Any] = json.loads((out / JSON_NAME).read_text())
        (out / MD_NAME).write_text(render(saved, saved["rows"]))
        say(f"wrote {out / MD_NAME}")
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    words = sys.argv[1:] if argv is None else list(argv)
    meta: dict[str, Any] = {
        "command": "python -m benchmarks.fashion_latency " + shlex.join(words),
        "facts_start": machine_facts(),
        "budgets": args.budgets,
        "seeds": args.seeds,
        "trials": args.trials,
        "method": _method_lines(args),
        "dense_ft": [],
        "reach": [],
        "rows": [],
        "notes": [f"rows run: {', '.join(args.rows)}"],
    }

    def save() -> None:
        meta["wall_s"] = time.perf_counter() - started
        dump(out, meta)

    run(args, meta, save)
    save()
    (out / MD_NAME).write_text(render(meta, meta["rows"]))
    say(f"wrote {out / MD_NAME} ({meta['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
