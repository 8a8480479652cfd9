"""Completed trials per minute with 1 and 2 local workers on one PostgreSQL study.

Runs ``rankopt workers 1 ...`` and ``rankopt workers 2 ...`` one after the other, each on a
fresh database, with the same total of trials, on a tiny setting: a small CNN on sklearn's
8x8 digits (``tests/rankopt_testmodels.py``, trained in seconds) with the CLI's default proxy
fine-tune (120 steps of batch 64). ``rankopt workers`` gives each worker
``max(1, cores // N)`` torch threads, so 1 worker uses every core and 2 workers one core
each on a 2-core machine. Throughput is completed trials over the span from the first
trial's start to the last trial's end (from the study's timestamps); the wall time of the
whole command (process start, model and data loading included) is shown too. Other jobs on
the machine skew the numbers, so the load average is printed before and after each run.

Usage::

    python benchmarks/bench_workers.py [--trials 24] [--finetune-steps 120]
        [--server postgresql://postgres@127.0.0.1:5432] [--repeats 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


def _admin(server: str) -> object:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    return conn


def _run(
    n_workers: int, threads: int | None, args: argparse.Namespace, weights: Path, cache: Path
) -> dict[str, Any]:
    """One ``rankopt workers N`` run on a fresh database; its throughput numbers."""
    from optuna.trial import TrialState

    from rankopt.studies import load_study

    db = f"rankopt_bench_{uuid.uuid4().hex[:10]}"
    conn = _admin(args.server)
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f'CREATE DATABASE "{db}"')
    url = f"{args.server}/{db}"
    env = dict(os.environ, RANKOPT_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), str(REPO), env.get("PYTHONPATH")])
    )
    cmd = [
        sys.executable, "-m", "rankopt", "workers", str(n_workers),
        "--model", "rankopt_testmodels:digits_net", "--weights", str(weights), "--data", "digits",
        "--storage", url, "--study-name", "bench", "--n-trials", str(args.trials),
        "--finetune-steps", str(args.finetune_steps),
    ]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(threads)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    load_after = os.getloadavg()
    try:
        if proc.returncode != 0:
            raise SystemExit(f"rankopt workers {n_workers} failed:\n{proc.stderr[-3000:]}")
        study = load_study(url, "bench")
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
        first = min(t.datetime_start for t in done if t.datetime_start is not None)
        last = max(t.datetime_complete for t in done if t.datetime_complete is not None)
        span_s = (last - first).total_seconds()
        storage = getattr(study, "_storage", None)
        backend = getattr(storage, "_backend", storage)
        engine = getattr(backend, "engine", None)
        if engine is not None:
            engine.dispose()
    finally:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.close()  # type: ignore[attr-defined]
    return {
        "config": f"{n_workers} worker{'s' if n_workers > 1 else ''}, "
        + (f"{threads} thread(s) each" if threads else "cores // N threads"),
        "states": dict(states),
        "workers": n_workers,
        "completed": len(done),
        "span_s": span_s,
        "per_min": 60 * len(done) / span_s,
        "wall_s": wall_s,
        "wall_per_min": 60 * len(done) / wall_s,
        "load_before": load_before[0],
        "load_after": load_after[0],
    }


def main() -> None:
    """Run the benchmark and print the table and the 2-worker / 1-worker ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="total trials per run")
    parser.add_argument("--finetune-steps", type=int, default=120)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    args = parser.parse_args()

    # The tests' model helper, loaded from its file (tests/ is no package to import).
    spec = importlib.util.spec_from_file_location(
        "rankopt_testmodels", TESTS / "rankopt_testmodels.py"
    )
    assert spec is not None and spec.loader is not None, TESTS
    testmodels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(testmodels)
    train_digits_net = testmodels.train_digits_net

    tmp = Path(tempfile.mkdtemp(prefix="rankopt-bench-workers-"))
    weights = train_digits_net(tmp / "digits_net.pt", steps=300)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; {args.trials} trials per run; {args.finetune_steps} fine-tune steps")
    configs = [(1, None), (1, 1), (2, None)]  # (workers, --threads); None: cores // N
    rows: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        for n, threads in configs:
            r = _run(n, threads, args, weights, tmp / "cache")
            rows.append(r)
            print(
                f"  {r['config']}: {r['completed']} completed {r['states']} in "
                f"{r['span_s']:.1f} s -> {r['per_min']:.1f} trials/min (wall {r['wall_s']:.1f} s "
                f"-> {r['wall_per_min']:.1f}/min); load average {r['load_before']:.2f} -> "
                f"{r['load_after']:.2f}",
                flush=True,
            )
    means: dict[str, tuple[float, float]] = {}
    print(f"\n{'configuration':<34} {'trials/min':>10} {'wall trials/min':>15} {'load avg':>9}")
    for label in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == label]
        per_min = sum(r["per_min"] for r in mine) / len(mine)
        wall = sum(r["wall_per_min"] for r in mine) / len(mine)
        means[label] = (per_min, wall)
        load = max(max(r["load_before"], r["load_after"]) for r in mine)
        print(f"{label:<34} {per_min:>10.1f} {wall:>15.1f} {load:>9.2f}")
    two = means[rows[2]["config"]]
    for base in (rows[0]["config"], rows[1]["config"]):
        print(
            f"ratio 2 workers / ({base}): {two[0] / means[base][0]:.2f}x (trial span), "
            f"{two[1] / means[base][1]:.2f}x (wall)"
        )
    print(f"load average now: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
