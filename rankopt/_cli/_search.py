"""``rankopt search`` and ``rankopt workers``.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankopt._cli._common import (
    add_device_arg,
    add_latency_threads_arg,
    add_model_args,
    add_study_args,
    add_worker_args,
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
from rankopt.latency import RUNTIMES
from rankopt.searching import setting_defaults

#: ``rankopt search``'s options that are settings, by argparse dest (the rest share a name)
_DEST_SETTING = {"threads": "n_threads"}


def add_search_parser(sub: Any) -> None:
    """Register ``rankopt search``; its defaults are :class:`SearchSettings`' fields."""
    d = setting_defaults()
    p = sub.add_parser("search", help="run or resume a budget-constrained search")
    add_model_args(p, seed=d["seed"])
    add_study_args(p)
    p.add_argument(
        "--max-macs",
        help="MACs budget: fraction (0.5), percent ('50%%') or absolute (4e6, 4M); default 50%%",
    )
    p.add_argument("--max-params", help="parameter budget, same forms")
    p.add_argument(
        "--max-latency",
        help="latency budget from this machine's per-layer latency table: '50%%' of dense at "
        "batch 1 and 64, or '2.5ms' at batch 1",
    )
    p.add_argument(
        "--rank-multiple",
        type=int,
        default=d["rank_multiple"],
        help="round ranks to multiples of this, for hardware-friendly shapes (default: with "
        "--latency-runtime onnxruntime its convolution channel block on this CPU, 16 with "
        "AVX-512, 8 with AVX2; else 1)",
    )
    p.add_argument(
        "--min-layer-share",
        type=float,
        default=d["min_layer_share"],
        help="layers below this share of the model's MACs and params stay dense "
        "(default: %(default)s; 0 searches every layer)",
    )
    p.add_argument(
        "--objectives",
        default=",".join(d["objectives"]),
        help="comma list, accuracy first (default: %(default)s)",
    )
    p.add_argument("--methods", help="comma list of methods to offer (default: all)")
    p.add_argument(
        "--n-trials",
        type=int,
        default=d["n_trials"],
        help="total trials in the study (default: %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=d["timeout"],
        help="stop starting trials after this many seconds",
    )
    p.add_argument(
        "--sampler", default=d["sampler"], help="tpe, nsga2 or random (default: %(default)s)"
    )
    p.add_argument(
        "--repair",
        default=d["repair"],
        choices=("repair", "constraint"),
        help="budget handling (default: %(default)s)",
    )
    _add_finetune_args(p, d)
    _add_latency_args(p, d)
    add_worker_args(p)
    add_device_arg(p, default=d["device"])
    p.set_defaults(func=cmd_search)


def add_workers_parser(sub: Any) -> None:
    """Register ``rankopt workers``."""
    p = sub.add_parser(
        "workers",
        help="run N local search workers on one study (PostgreSQL storage)",
        usage="rankopt workers N [search options]",
        description="Start N `rankopt search` processes with the given search options on one "
        "storage and study (each with its own --worker-index and max(1, cores // N) torch "
        "threads), wait for them, forward Ctrl-C, and print the Pareto front.",
    )
    p.add_argument("n_workers", type=int, metavar="N", help="number of worker processes")
    p.add_argument(
        "search_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options of `rankopt search` (see rankopt search --help)",
    )
    p.set_defaults(func=cmd_workers)


def parse_search_args(search_argv: Sequence[str]) -> argparse.Namespace:
    """``search_argv`` parsed as the options of ``rankopt search`` (``rankopt workers``
    checks its workers' options with it)."""
    parser = argparse.ArgumentParser(prog="rankopt")
    add_search_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["search", *search_argv])


def _add_finetune_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    p.add_argument(
        "--finetune-steps",
        type=int,
        default=d["finetune_steps"],
        help="proxy fine-tune steps per trial (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-samples",
        type=int,
        default=d["finetune_samples"],
        help="training images for proxy fine-tunes (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=d["batch_size"],
        help="fine-tune batch size (default: %(default)s)",
    )
    p.add_argument(
        "--lr", type=float, default=d["lr"], help="fine-tune learning rate (default: %(default)s)"
    )


def _add_latency_args(p: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    p.add_argument(
        "--measure-latency",
        action="store_true",
        default=d["measure_latency"],
        help="store batch-1 CPU latency per trial",
    )
    p.add_argument(
        "--latency-runtime",
        default=d["latency_runtime"],
        choices=[*sorted(RUNTIMES), "none"],
        help="where the plans will run: ONNX Runtime on the model as `rankopt apply --out "
        "x.onnx` exports it, or eager PyTorch; its per-layer latency table (measured once, "
        "cached) predicts every plan's latency for --max-latency, the latency_ms objective "
        "and the cap that keeps plans no slower than dense; none: no latency "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--allow-slower",
        action="store_true",
        help="let plans be slower than dense on the latency runtime (by default every plan's "
        "predicted latency at batch 1 and 64 is at most dense's)",
    )
    p.add_argument(
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=d["prune"],
        help="let trials also prune channels of each coupled channel group (torch-pruning's "
        "dependency graph), ranks then allocated on the pruned model; --no-prune: "
        "decomposition only (default: %(default)s)",
    )
    add_latency_threads_arg(p)
    p.add_argument(
        "--latency-tolerance",
        type=float,
        default=d["latency_tolerance"],
        help="the latency table times a few whole plans to check its predictions; a search "
        "with a latency budget or objective refuses to start when they err by more than this "
        "fraction (default: %(default)s)",
    )


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``rankopt search`` passes to :func:`rankopt.search`, by setting name
    (every option of the command that is a :class:`SearchSettings` field)."""
    names = setting_defaults()
    out = {
        _DEST_SETTING.get(dest, dest): value
        for dest, value in vars(args).items()
        if _DEST_SETTING.get(dest, dest) in names
    }
    out["objectives"] = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if out.get("latency_runtime") == "none":
        out["latency_runtime"] = None
    if args.methods is not None:
        out["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    return out


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a budget-constrained search."""
    import optuna

    from rankopt.errors import StorageError
    from rankopt.searching import search
    from rankopt.storage import mask_url, open_storage
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
    try:
        study = search(
            model,
            data.train,
            data.val,
            max_macs=max_macs,
            max_params=max_params,
            max_latency=args.max_latency,
            storage=opened,
            study_name=study_name,
            model_name=str(args.model),
            data_name=str(args.data),
            progress=say,
            **search_settings(args),
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
        ("--seed", args.seed, setting_defaults()["seed"]),
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
    from rankopt.storage import mask_url, open_storage, run_workers, threads_per_worker

    n = int(args.n_workers)
    if n < 1:
        raise RankoptError(f"rankopt workers N: N = {n} must be >= 1")
    search_argv = list(args.search_args)
    if search_argv[:1] == ["--"]:
        search_argv = search_argv[1:]
    search_args = parse_search_args(search_argv)
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
