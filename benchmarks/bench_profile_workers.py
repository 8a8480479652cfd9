"""Sensitivity profile wall time: one worker vs two workers on one PostgreSQL study.

Issue 36 item 4: the profile's (layer, method) units are claimed through the storage, so
several workers measure one profile in parallel. This times the profile of torchvision
``resnet18`` (10 classes, random weights, 32x32 random images: cost only) measured by one
worker process, then by two worker processes started together on a fresh study, each at one
torch thread, against PostgreSQL on 127.0.0.1:5432 (a fresh database per run, dropped after).
Goal: two workers' wall <= 0.6 x one worker's. Each worker runs in a session of its own (as
from separate terminals): on a CPU that other sessions keep busy, Linux shares the cores
between sessions (autogroups), so two workers in one session would get one session's share.

Usage: ``python -m benchmarks.bench_profile_workers [--model resnet18] [--size 32]``;
prints a markdown section (pasted into ``benchmarks/BENCHMARKS_SCALE.md``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid

HOST, PORT = "127.0.0.1", 5432


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def child(url: str, name: str, model_name: str, size: int, worker: str) -> None:
    """One worker: build the model, space and images, then take part in the profile."""
    import optuna
    import torch
    import torchvision

    from rankopt.evaluators import compute_logits, profile
    from rankopt.searching.objective._objective import TrialData
    from rankopt.searching.objective._sensitivity import study_sensitivity
    from rankopt.searching.space._space import SearchSpace
    from rankopt.storage import open_storage

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, weights=None, num_classes=10).eval()
    images = torch.randn(256, 3, size, size, generator=torch.Generator().manual_seed(0))
    logits = compute_logits(model, images)
    labels = logits.argmax(1)
    data = TrialData(images, labels, logits, images, labels, logits, images)
    space = SearchSpace(profile(model, (3, size, size)), None, n_outputs=10)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    started = time.perf_counter()
    prof = study_sensitivity(study, model, space, data, lambda _: None, worker=worker)
    print(json.dumps({"wall_s": time.perf_counter() - started, "timing": prof.timing}))


def _run(url: str, name: str, n_workers: int, model: str, size: int) -> list[dict[str, object]]:
    import optuna

    from rankopt.storage import open_storage

    optuna.create_study(
        storage=open_storage(url), study_name=name, directions=["maximize", "minimize"]
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_profile_workers",
                "--child",
                url,
                "--name",
                name,
                "--model",
                model,
                "--size",
                str(size),
                "--worker",
                f"w{i}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            # Each worker in a session of its own, as when started from separate terminals:
            # Linux shares a busy CPU between sessions (autogroups), not between processes.
            start_new_session=True,
        )
        for i in range(n_workers)
    ]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.name, args.model, args.size, args.worker)
        return
    db = f"rankopt_bench_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{db}"')
    url = f"postgresql://postgres@{HOST}:{PORT}/{db}"
    try:
        one = _run(url, "one", 1, args.model, args.size)
        two = _run(url, "two", 2, args.model, args.size)
    finally:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        )
        _admin(f'DROP DATABASE IF EXISTS "{db}"')
    wall_one = float(one[0]["wall_s"])  # type: ignore[arg-type]
    wall_two = max(float(r["wall_s"]) for r in two)  # type: ignore[arg-type]
    ratio = wall_two / wall_one
    timing = one[0]["timing"]
    print(f"### Profile with workers on PostgreSQL: {args.model} at {args.size}x{args.size}")
    print()
    print(
        f"{timing['n_pairs']} (layer, method) units, {timing['n_points']} points, score "  # type: ignore[index]
        f"`{timing['score']}`; each worker 1 torch thread."  # type: ignore[index]
    )
    print()
    print("| workers | profile wall (s) | ratio to one worker | goal |")
    print("|---|---|---|---|")
    print(f"| 1 | {wall_one:.1f} | 1.000 | |")
    verdict = "met" if ratio <= 0.6 else f"missed by {ratio - 0.6:.3f}"
    print(f"| 2 | {wall_two:.1f} | {ratio:.3f} | <= 0.600: {verdict} |")


if __name__ == "__main__":
    main()
