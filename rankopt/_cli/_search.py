"""``rankopt search`` and ``rankopt workers``.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rankopt._cli._common import (
    budget_args,
    builtin_models,
    check_run_dir,
    chosen_study_name,
    find_study_args,
    format_table,
    load_model_and_data,
    say,
    storage_url,
)


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a budget-constrained search."""
    import optuna

    from rankopt.errors import StorageError
    from rankopt.search import search
    from rankopt.storage._open import mask_url, open_storage
    from rankopt.studies import pareto_front

    # rankopt prints its own line per trial (failures with their reason); Optuna's INFO
    # lines and caught-exception tracebacks would bury them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    max_macs, max_params = budget_args(args)
    run_dir = Path(args.run_dir)
    if not args.storage:
        check_run_dir(run_dir)
    storage = storage_url(args)
    study_name = chosen_study_name(args)
    # Connect first: a wrong URL or a server that is down fails before the model is built.
    opened = open_storage(storage, heartbeat_interval=args.heartbeat_interval)
    model, data = load_model_and_data(args)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods is not None
        else None
    )
    try:
        study = search(
            model,
            data.train,
            data.val,
            max_macs=max_macs,
            max_params=max_params,
            max_latency=args.max_latency,
            rank_multiple=args.rank_multiple,
            min_layer_share=args.min_layer_share,
            objectives=objectives,
            methods=methods,
            n_trials=args.n_trials,
            timeout=args.timeout,
            sampler=args.sampler,
            storage=opened,
            study_name=study_name,
            seed=args.seed,
            repair=args.repair,
            finetune_steps=args.finetune_steps,
            finetune_samples=args.finetune_samples,
            batch_size=args.batch_size,
            lr=args.lr,
            measure_latency=args.measure_latency,
            latency_runtime=None if args.latency_runtime == "none" else args.latency_runtime,
            allow_slower=args.allow_slower,
            latency_threads=args.latency_threads,
            latency_tolerance=args.latency_tolerance,
            model_name=str(args.model),
            data_name=str(args.data),
            n_threads=args.threads,
            worker_index=args.worker_index,
            progress=say,
            device=args.device,
        )
    except KeyboardInterrupt:
        say(
            f"interrupted: finished trials are kept in {mask_url(storage)} "
            f"(study {study_name!r}); "
            "run the same command again to resume"
        )
        return 130
    except StorageError:
        raise
    print(format_table(pareto_front(study)))
    find = find_study_args(args, study_name, opened)
    model = model_args(args)
    print("\n" + "\n".join(closing_lines(study, mask_url(storage), find, model)))
    return 0


def model_args(args: argparse.Namespace) -> list[str]:
    """The model and data options of this search that ``apply`` / ``finetune`` need too
    (defaults left out)."""
    from rankopt._cli._common import DEFAULT_DATA, DEFAULT_MODEL

    out: list[str] = []
    for flag, value, default in (
        ("--model", args.model, DEFAULT_MODEL),
        ("--weights", args.weights, None),
        ("--num-classes", args.num_classes, None),
        ("--data", args.data, DEFAULT_DATA),
        ("--mean", args.mean, None),
        ("--std", args.std, None),
        ("--seed", args.seed, 0),
    ):
        if value is not None and value != default:
            out += [flag, str(value)]
    return out


def closing_lines(
    study: Any, shown_url: str, find: list[str], model: list[str] | None = None
) -> list[str]:
    """The short summary a search ends with: the recommended plan, its gains over dense,
    where the study is, and the next commands as the user would type them."""
    import shlex

    from rankopt.studies import next_commands, plan_summary

    lines = []
    summary = plan_summary(study)
    if summary is None:
        lines.append("no recommended plan: no complete trial within the study's budget")
    else:
        seed = f" (seed {summary.seed})" if summary.seed else ""
        lines.append(f"recommended plan: trial {summary.trial}{seed}: {summary.gains()}")
        lines.append(f"  layers: {summary.methods_line()}")
    lines.append(f"study {study.study_name!r} stored in {shown_url}")
    report = " ".join(["rankopt", "report", *map(shlex.quote, find), "--out", "report.html"])
    commands = [report]
    if summary is not None:
        commands[:0] = next_commands(study, study_args=find, model_args=model)
    lines.append("next:")
    lines += [f"  {c}" for c in commands]
    return lines


def cmd_workers(args: argparse.Namespace) -> int:
    """Run N local ``rankopt search`` workers on one study; print the front at the end.

    Every worker is a ``python -m rankopt search`` process with the given search options, the
    same storage and study name, its own ``--worker-index`` (hence its own sampler seed) and
    ``max(1, cores // N)`` torch threads (unless ``--threads`` is given); see
    :mod:`rankopt.storage._workers` for the supervision (relayed output, Ctrl-C forwarding).
    """
    from rankopt.errors import RankoptError, StorageError
    from rankopt.storage._open import mask_url, open_storage
    from rankopt.storage._workers import run_workers, threads_per_worker

    n = int(args.n_workers)
    if n < 1:
        raise RankoptError(f"rankopt workers N: N = {n} must be >= 1")
    search_argv = list(args.search_args)
    if search_argv[:1] == ["--"]:
        search_argv = search_argv[1:]
    search_args = args.parse_search(search_argv)
    storage = storage_url(search_args)
    if storage.startswith("sqlite") and n > 1:
        raise StorageError(
            f"rankopt workers {n}: the storage {mask_url(storage)} is SQLite, which locks under "
            "concurrent writers; give a PostgreSQL database to share among the workers: "
            "--storage postgresql://USER:PASSWORD@HOST:5432/DB (create it first: createdb DB)"
        )
    if not search_args.storage:
        check_run_dir(Path(search_args.run_dir))
    # Connect (and create Optuna's tables) once here: a bad URL fails with one line, and
    # the workers do not race on creating the tables.
    probe = open_storage(storage, heartbeat_interval=0)
    engine = getattr(probe, "engine", None)
    if engine is not None:
        engine.dispose()
    name = chosen_study_name(search_args)
    if search_args.model in builtin_models() and search_args.weights is None:
        load_model_and_data(search_args)  # train (all cores) or load the dense model once
    threads = search_args.threads or threads_per_worker(n)
    say(
        f"starting {n} workers on study {name!r} in {mask_url(storage)}, "
        f"{threads} torch thread(s) each"
    )
    outcome = run_workers(n, search_argv, study_name=name, threads=threads, say=say)
    if outcome.interrupted:
        return outcome.exit_code
    if outcome.failed:
        say("failed: " + ", ".join(outcome.failed))
    from rankopt.studies import load_study, pareto_front

    try:
        study = load_study(storage, name)
    except StorageError:
        return outcome.exit_code or 2
    print(format_table(pareto_front(study)))
    find = find_study_args(search_args, name, storage)
    shown = f"{mask_url(storage)} ({n} workers)"
    print("\n" + "\n".join(closing_lines(study, shown, find, model_args(search_args))))
    return outcome.exit_code
