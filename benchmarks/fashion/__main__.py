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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.common.harness import Candidate, FinalFinetune, say
from benchmarks.common.report import machine_facts
from benchmarks.common.searches import shared_sensitivity
from benchmarks.fashion import report
from benchmarks.fashion.harness import Task, load_task, measure_row
from benchmarks.fashion.markdown import render
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
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip dense + FT and the seed recipe (a run of more budgets to --combine with)",
    )
    p.add_argument(
        "--searches-only",
        action="store_true",
        help="only the two searches of each budget (their rows; to --combine with a run of "
        "the other rows)",
    )
    p.add_argument(
        "--samplers",
        type=lambda t: [x for x in t.split(",") if x],
        default=list(SAMPLERS),
        help="searches of each budget (default: tpe,random)",
    )
    p.add_argument(
        "--latency-runtime",
        choices=("default", "onnxruntime", "torch", "none"),
        default="default",
        help="the searches' latency runtime (none: the MACs budget alone, no latency table)",
    )
    p.add_argument(
        "--rows",
        type=lambda t: [x for x in t.split(",") if x],
        default=None,
        help="only these non-search rows, by label without ' (peer)' (e.g. "
        "uniform_tucker2,greedy,torch_pruning; default: all, peers included)",
    )
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        help="render one report from the JSON of these runs' --out folders (no training)",
    )
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
    if args.combine:
        return combine(args.combine, args.out)
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

    meta: dict[str, Any] = {
        "command": command,
        "facts_start": facts_start,
        "dense_ft": [],
        "peer_lines": [],
        "task": _task_info(task),
        "finetune": finetune.describe(),
        "budgets": args.budgets,
        "seeds": args.seeds,
        "trials": args.trials,
    }

    def save() -> None:
        meta["wall_s"] = time.perf_counter() - started
        dump(out, rows, runs, meta)

    say(f"[dense + final FT] {task.model_name}: test accuracy {task.dense_test_accuracy:.4f}")
    dense_ft: list[float] = meta["dense_ft"]
    for seed in args.seeds if not args.no_reference else []:
        copy_ = copy.deepcopy(task.model)
        finetune.calibrate(copy_)
        acc, _ = finetune(copy_, seed)
        dense_ft.append(acc)
        say(f"  dense + FT seed {seed}: {acc:.4f}")

    peer_lines: list[str] = meta["peer_lines"]
    builder = Rows(
        task,
        uniform_methods=args.uniform,
        peer_dirs={"aimet": args.peers_dir, "musco": args.peers_dir},
        progress=say,
    )
    if not args.no_reference:
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
            cands: list[Candidate | None] = (
                []
                if args.searches_only
                else [*builder.for_budget(b, finetune.calibration, args.rows), None]
            )
            if args.rows is not None and not {"musco", "aimet_spatial_svd"} & set(args.rows):
                cands = cands[:-1]  # no file peer asked for: none made
            for cand in cands:
                if cand is None:
                    peer_lines += make_peer_models(task, [b], args.peers_dir, say)
                    cands += [
                        c
                        for c in builder.file_peers(b)
                        if args.rows is None or c.label.removesuffix(" (peer)") in args.rows
                    ]
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
                for sampler in args.samplers:
                    say(f"[{b:.0%}] search {sampler}, seed {seed}, {args.trials} trials")
                    run = run_study(
                        task,
                        sampler=sampler,
                        budget=b,
                        seed=seed,
                        n_trials=args.trials,
                        finetune_steps=120,
                        progress=None,
                        latency_runtime=(
                            None if args.latency_runtime == "none" else args.latency_runtime
                        ),
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
    save()
    return write_report(out, meta, rows, runs)


def write_report(
    out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], runs: list[SearchRun]
) -> int:
    """Write BENCHMARKS_FASHION.md and the best-so-far plot into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    curves = report.write_curves(runs, meta["budgets"], out)
    (out / "BENCHMARKS_FASHION.md").write_text(render(meta, rows, runs, curves))
    say(f"wrote {out / 'BENCHMARKS_FASHION.md'} and {curves} ({meta['wall_s'] / 60:.1f} min)")
    return 0


def _task_info(task: Task) -> dict[str, Any]:
    return {
        "model_name": task.model_name,
        "data_name": task.data_name,
        "dense_test_accuracy": task.dense_test_accuracy,
        "dense_macs": task.dense_macs,
        "dense_params": task.dense_params,
    }


def dump(
    out: Path, rows: list[dict[str, Any]], runs: list[SearchRun], meta: dict[str, Any]
) -> None:
    """Write what the run measured so far as JSON (rows, studies, meta) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fashion_rows.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    studies = [{k: v for k, v in asdict(r).items() if k != "candidate"} for r in runs]
    (out / "fashion_runs.json").write_text(json.dumps(studies, indent=1) + "\n")
    (out / "fashion_meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")


def combine(folders: Sequence[Path], out: Path) -> int:
    """One report from the JSON of several runs (e.g. budgets run in parallel processes).

    The reference rows (dense + FT, the seed recipe) and the machine facts come from the
    first folder that has them; the budgets, rows and studies of all are joined; the wall
    time is the longest run's.
    """
    metas, rows, runs = [], [], []
    for folder in folders:
        metas.append(json.loads((folder / "fashion_meta.json").read_text()))
        rows += json.loads((folder / "fashion_rows.json").read_text())
        runs_path = folder / "fashion_runs.json"
        for r in json.loads(runs_path.read_text()) if runs_path.exists() else []:
            runs.append(SearchRun(candidate=None, **{**r, "best_so_far": tuple(r["best_so_far"])}))
    meta = dict(next((m for m in metas if m.get("dense_ft")), metas[0]))
    meta["budgets"] = sorted({b for m in metas for b in m["budgets"]}, reverse=True)
    meta["wall_s"] = max(float(m.get("wall_s", math.nan)) for m in metas)
    meta["peer_lines"] = [line for m in metas for line in m.get("peer_lines", [])]
    meta["notes"] = [line for m in metas for line in m.get("notes", [])]
    meta["command"] = "\n".join(str(m["command"]) for m in metas) + (
        "\npython -m benchmarks.fashion --combine " + " ".join(str(f) for f in folders)
    )
    return write_report(out, meta, rows, runs)


if __name__ == "__main__":
    raise SystemExit(main())
