"""The ``rankopt`` command line: a thin layer over the public API.

Bad input prints one line ``rankopt: error: ...`` and exits with code 2; heavy imports
happen inside the commands so ``rankopt --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

DEFAULT_MODEL = "resnet8"
DEFAULT_DATA = "mnist5k"
DEFAULT_BUDGET = "50%"
DEFAULT_RUN_DIR = "rankopt-runs"
DEFAULT_TRIALS = 16


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers
def _add_model_args(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="built-in model (see `rankopt models`), a torchvision architecture name with "
        "--weights, or package.module:callable (default: %(default)s)",
    )
    p.add_argument("--weights", help="state_dict (.pt) of a user model")
    p.add_argument("--num-classes", type=int, help="classes of a user model")
    if data:
        p.add_argument(
            "--data",
            default=DEFAULT_DATA,
            help="built-in data set (mnist5k, digits), an ImageFolder directory (streamed from "
            "disk), or a .pt file of (images, labels) (default: %(default)s)",
        )
        for stat in ("mean", "std"):
            p.add_argument(
                f"--{stat}",
                help=f"ImageFolder: per-channel {stat} to normalise with, e.g. 0.485,0.456,0.406 "
                "(default: no normalisation, pixels in [0, 1])",
            )
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def _add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///<run-dir>/study.db when it exists)",
    )
    p.add_argument("--study-name", help="study name (default: the only study in the storage)")
    p.add_argument(
        "--run-dir", default=DEFAULT_RUN_DIR, help="run directory (default: %(default)s)"
    )


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu, cuda or cuda:N: where the model, trials and "
        "fine-tunes run; decompositions are computed on the CPU (default: %(default)s)",
    )


def _storage_url(args: argparse.Namespace) -> str:
    from rankopt._storage import run_dir_url

    if args.storage:
        return str(args.storage)
    return run_dir_url(args.run_dir)


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    """Options of one worker among several on a study (search)."""
    p.add_argument(
        "--worker-index",
        type=int,
        help="index of this worker among several on one study (0, 1, ...); its sampler seed is "
        "--seed + index (default: derived from host and process id on server storages, so "
        "workers started with the same command propose different trials)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=int,
        help="seconds between heartbeats on server storages (PostgreSQL); a trial without one "
        "for 3 intervals is marked failed and retried by another worker (default: 10; 0: off)",
    )


def _load_model_and_data(args: argparse.Namespace, *, need_data: bool = True) -> tuple[Any, Any]:
    """(model, DataSplits) from --model / --weights / --num-classes / --data."""
    import torch

    from rankopt.data import load_data
    from rankopt.models import get_pretrained, list_models, load_user_model

    _check_common_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = (
        load_data(args.data, stream=True, mean=_floats(args, "mean"), std=_floats(args, "std"))
        if need_data
        else None
    )
    if args.model in list_models() and args.weights is None:
        if data is None:
            from rankopt.errors import RankoptError

            raise RankoptError("a built-in model needs --data to train or load its weights")
        model, test_acc = get_pretrained(args.model, args.data, seed=args.seed, progress=_say)
        _say(f"dense {args.model} on {data.name}: test accuracy {test_acc:.4f}")
    else:
        num_classes = args.num_classes or (data.num_classes if data is not None else None)
        in_channels = data.input_shape[0] if data is not None else None
        model = load_user_model(
            args.model, weights=args.weights, num_classes=num_classes, in_channels=in_channels
        )
    model.eval()
    return model, data


def _floats(args: argparse.Namespace, flag: str) -> list[float] | None:
    """``--mean`` / ``--std``: comma-separated numbers, or None when not given."""
    from rankopt.errors import SettingsError

    text = getattr(args, flag, None)
    if text is None:
        return None
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise SettingsError(
            f"--{flag} {text!r}: give comma-separated numbers, e.g. 0.5 or 0.485,0.456,0.406"
        ) from None


def _check_common_args(args: argparse.Namespace) -> None:
    """Reject out-of-range --threads / --num-classes / --seed before any work."""
    from rankopt.errors import SettingsError

    for flag, low, high in (
        ("threads", 1, None),
        ("num_classes", 1, None),
        ("seed", 0, 2**32 - 1),
    ):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            rule = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise SettingsError(f"--{flag.replace('_', '-')}: {flag} = {value} must be {rule}")
    if getattr(args, "device", None) is not None:
        from rankopt._device import resolve_device

        resolve_device(args.device)  # an unknown or missing device fails before any work


def _check_out(path: str | Path) -> None:
    """Fail before any work when an output file cannot be created where asked."""
    from rankopt.errors import StorageError

    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StorageError(
            f"--out {str(path)!r}: directory {str(parent)!r} does not exist; create it first "
            "or choose another path"
        )


# --------------------------------------------------------------------------- commands
def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a budget-constrained search."""
    import optuna

    from rankopt._storage import mask_url, open_storage
    from rankopt.errors import StorageError
    from rankopt.search import search
    from rankopt.studies import pareto_front

    # rankopt prints its own line per trial (failures with their reason); Optuna's INFO
    # lines and caught-exception tracebacks would bury them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    max_macs, max_params = _budget_args(args)
    run_dir = Path(args.run_dir)
    if not args.storage:
        _check_run_dir(run_dir)
    storage = _storage_url(args)
    study_name = _study_name(args)
    # Connect first: a wrong URL or a server that is down fails before the model is built.
    opened = open_storage(storage, heartbeat_interval=args.heartbeat_interval)
    model, data = _load_model_and_data(args)
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
            model_name=str(args.model),
            data_name=str(args.data),
            n_threads=args.threads,
            worker_index=args.worker_index,
            progress=_say,
            device=args.device,
        )
    except KeyboardInterrupt:
        _say(
            f"interrupted: finished trials are kept in {mask_url(storage)} "
            f"(study {study_name!r}); "
            "run the same command again to resume"
        )
        return 130
    except StorageError:
        raise
    front = pareto_front(study)
    print(_format_table(front))
    shown = mask_url(storage)
    print(f"\nstudy {study_name!r} stored in {shown}")
    print(
        f"next: rankopt plot --storage {shown} --study-name {study_name}  |  "
        f"rankopt export --storage {shown} --study-name {study_name} --trial N --out plan.json"
    )
    return 0


def _study_name(args: argparse.Namespace) -> str:
    """``--study-name``, or the name ``rankopt search`` derives from these search options."""
    from rankopt._storage import default_study_name

    if args.study_name:
        return str(args.study_name)
    return default_study_name(args.model, args.data, *_budget_args(args))


def _budget_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(max_macs, max_params) as given; ``DEFAULT_BUDGET`` MACs when neither is."""
    max_macs = args.max_macs
    if max_macs is None and args.max_params is None:
        max_macs = DEFAULT_BUDGET
    return max_macs, args.max_params


def cmd_workers(args: argparse.Namespace) -> int:
    """Run N local ``rankopt search`` workers on one study; print the front at the end.

    Every worker is a ``python -m rankopt search`` process with the given search options, the
    same storage and study name, its own ``--worker-index`` (hence its own sampler seed) and
    ``max(1, cores // N)`` torch threads (unless ``--threads`` is given); see
    :mod:`rankopt._workers` for the supervision (relayed output, Ctrl-C forwarding).
    """
    from rankopt._storage import mask_url, open_storage
    from rankopt._workers import run_workers, threads_per_worker
    from rankopt.errors import RankoptError, StorageError

    n = int(args.n_workers)
    if n < 1:
        raise RankoptError(f"rankopt workers N: N = {n} must be >= 1")
    search_argv = list(args.search_args)
    if search_argv[:1] == ["--"]:
        search_argv = search_argv[1:]
    search_args = build_parser().parse_args(["search", *search_argv])
    storage = _storage_url(search_args)
    if storage.startswith("sqlite") and n > 1:
        raise StorageError(
            f"rankopt workers {n}: the storage {mask_url(storage)} is SQLite, which locks under "
            "concurrent writers; give a PostgreSQL database to share among the workers: "
            "--storage postgresql://USER:PASSWORD@HOST:5432/DB (create it first: createdb DB)"
        )
    if not search_args.storage:
        _check_run_dir(Path(search_args.run_dir))
    # Connect (and create Optuna's tables) once here: a bad URL fails with one line, and
    # the workers do not race on creating the tables.
    probe = open_storage(storage, heartbeat_interval=0)
    engine = getattr(probe, "engine", None)
    if engine is not None:
        engine.dispose()
    name = _study_name(search_args)
    if search_args.model in _builtin_models() and search_args.weights is None:
        _load_model_and_data(search_args)  # train (all cores) or load the dense model once
    threads = search_args.threads or threads_per_worker(n)
    _say(
        f"starting {n} workers on study {name!r} in {mask_url(storage)}, "
        f"{threads} torch thread(s) each"
    )
    outcome = run_workers(n, search_argv, study_name=name, threads=threads, say=_say)
    if outcome.interrupted:
        return outcome.exit_code
    if outcome.failed:
        _say("failed: " + ", ".join(outcome.failed))
    from rankopt.studies import load_study, pareto_front

    try:
        study = load_study(storage, name)
    except StorageError:
        return outcome.exit_code or 2
    print(_format_table(pareto_front(study)))
    shown = mask_url(storage)
    print(f"\nstudy {name!r} stored in {shown} ({n} workers)")
    print(f"next: rankopt report --storage {shown} --study-name {name} --out report.html")
    return outcome.exit_code


def _check_run_dir(run_dir: Path) -> None:
    """Fail before any trial when the run directory cannot be written."""
    import shutil
    import tempfile

    from rankopt.errors import StorageError

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StorageError(
            f"run directory {str(run_dir)!r} is not writable: {exc.strerror or exc}; "
            "choose another with --run-dir"
        ) from None
    free = shutil.disk_usage(run_dir).free
    if free < 10 * 2**20:
        raise StorageError(
            f"run directory {str(run_dir)!r} has only {free // 2**20} MiB free; "
            "at least 10 MiB are needed for the study database"
        )


def _format_table(df: Any) -> str:
    if df is None or len(df) == 0:
        return "(no completed trials yet)"
    from rankopt._metrics import COUNT_METRICS, TABLE_METRICS

    cols = [c for c in ("kind", "trial", *TABLE_METRICS, "layers") if c in df.columns]
    view = df[cols].copy()
    for col in COUNT_METRICS:
        if col in view.columns:
            view[col] = view[col].round().astype("Int64")
    if "layers" in view.columns:
        view["layers"] = view["layers"].astype(str).str.slice(0, 60)
    return str(view.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _open_study(args: argparse.Namespace) -> Any:
    from rankopt.studies import load_study

    return load_study(_storage_url(args), args.study_name)


def cmd_front(args: argparse.Namespace) -> int:
    """Print the Pareto front."""
    from rankopt.studies import pareto_front

    df = pareto_front(_open_study(args), include_reference=not args.no_reference)
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
    elif args.format == "json":
        print(df.to_json(orient="records", indent=2))
    else:
        print(_format_table(df))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Write the Pareto / layer-map / history figures as standalone HTML (and PNG)."""
    from rankopt.studies import (
        plot_history,
        plot_layer_map,
        plot_pareto_front,
        write_html,
        write_png,
    )

    _check_out(args.out)
    study = _open_study(args)
    figs = [plot_pareto_front(study), plot_layer_map(study), plot_history(study)]
    out = Path(args.out)
    write_html(figs, out, title=f"rankopt: {study.study_name}")
    print(f"wrote {out}")
    if args.png:
        png = out.with_suffix(".png")
        write_png(figs[0], png)
        print(f"wrote {png}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one HTML report of the study."""
    from rankopt.studies import report

    _check_out(args.out)
    path = report(_open_study(args), args.out)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a chosen trial's CompressionPlan as JSON."""
    from rankopt.studies import export_plan

    _check_out(args.out)
    if args.trial is None and args.max_macs is None:
        from rankopt.errors import RankoptError

        raise RankoptError("export needs --trial N or --max-macs X (best accuracy under X)")
    plan = export_plan(_open_study(args), trial=args.trial, max_macs=args.max_macs)
    plan.save(args.out)
    m = plan.metrics
    print(
        f"wrote {args.out}: trial {plan.provenance.get('trial')}, accuracy "
        f"{m.get('accuracy', float('nan')):.4f}, macs {m.get('macs')}, params {m.get('n_params')}"
    )
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply a plan to the model and save the compressed model (.onnx: checked ONNX)."""
    from rankopt._onnx import save_model
    from rankopt.evaluators import count_macs
    from rankopt.plan import CompressionPlan, apply_plan

    _check_out(args.out)
    plan = CompressionPlan.load(args.plan)
    model, _ = _load_model_and_data(args, need_data=args.model in _builtin_models())
    compressed = apply_plan(model, plan)
    macs = count_macs(compressed, tuple(plan.input_shape))
    n_params = sum(p.numel() for p in compressed.parameters())
    print(f"{macs} macs, {n_params} params")
    print(save_model(compressed, tuple(plan.input_shape), args.out))  # .onnx or torch.save
    return 0


def _builtin_models() -> list[str]:
    from rankopt.models import list_models

    return list_models()


def cmd_finetune(args: argparse.Namespace) -> int:
    """Full fine-tune of a plan; report test accuracy, macs, params and latency vs dense."""
    from rankopt.evaluators import count_macs, evaluate_accuracy, full_finetune, measure_latency_ms
    from rankopt.plan import CompressionPlan, apply_plan

    if args.out:
        _check_out(args.out)
    plan = CompressionPlan.load(args.plan)
    model, data = _load_model_and_data(args)
    compressed = apply_plan(model, plan)
    _say(f"fine-tuning for {args.epochs} epochs ...")
    from rankopt.data import as_split

    train, test = as_split(data.train, "training"), as_split(data.test, "test")
    compressed = full_finetune(
        compressed,
        model,
        train.tensors or train.sample(len(train), args.seed),  # whole split, in memory
        epochs=args.epochs,
        seed=args.seed,
        progress=_say,
        device=args.device,
    ).cpu()  # counted, timed (CPU latency) and saved on the CPU
    shape = tuple(plan.input_shape)
    rows = []
    for label, net in (("dense", model), ("compressed", compressed)):
        rows.append(
            (
                label,
                evaluate_accuracy(net, test.batches()),  # streamed
                count_macs(net, shape),
                sum(p.numel() for p in net.parameters()),
                measure_latency_ms(net, shape, batch_size=1),
            )
        )
    print(f"{'model':<11} {'test_acc':>8} {'macs':>12} {'params':>10} {'latency_ms':>10}")
    for label, acc, macs, params, lat in rows:
        print(f"{label:<11} {acc:>8.4f} {macs:>12d} {params:>10d} {lat:>10.3f}")
    d, c = rows
    print(
        f"ratios: macs {c[2] / d[2]:.3f}, params {c[3] / d[3]:.3f}, latency {c[4] / d[4]:.3f} "
        f"(measured on this CPU, batch 1); accuracy change {c[1] - d[1]:+.4f}"
    )
    if args.out:
        from rankopt._onnx import save_model

        print(save_model(compressed, shape, args.out))  # .onnx: checked ONNX; else torch.save
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """List every layer, its dense cost and whether (and why not) it can be decomposed."""
    from rankopt.evaluators import profile

    model, data = _load_model_and_data(args, need_data=True)
    prof = profile(model, data.input_shape)
    print(f"{'layer':<28} {'kind':<7} {'weight shape':<18} {'macs':>10} {'params':>8}  eligible")
    for info in prof.layers:
        shape = "x".join(map(str, info.weight_shape)) if info.kind != "other" else "-"
        flag = "yes" if info.eligible else f"no: {info.reason}"
        print(
            f"{info.name:<28} {info.kind:<7} {shape:<18} {info.macs:>10} {info.n_params:>8}  {flag}"
        )
    print(f"total: {prof.macs} macs, {prof.n_params} params; fingerprint {prof.fingerprint}")
    if prof.skipped_ops:
        print(
            "ops fvcore did not count: "
            + ", ".join(f"{k} x{v}" for k, v in prof.skipped_ops.items())
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List built-in models, data sets and methods."""
    from rankopt.data import list_data
    from rankopt.models import list_models
    from rankopt.spaces import list_methods

    print("models:  " + ", ".join(list_models()))
    print("data:    " + ", ".join(list_data()))
    print("methods: " + ", ".join(list_methods()))
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rankopt``."""
    parser = argparse.ArgumentParser(
        prog="rankopt",
        description="Search per-layer low-rank decompositions of a trained CNN under a budget.",
    )
    from rankopt._version import __version__

    parser.add_argument("--version", action="version", version=f"rankopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("search", help="run or resume a budget-constrained search")
    _add_model_args(p)
    _add_study_args(p)
    p.add_argument(
        "--max-macs",
        help="MACs budget: fraction (0.5), percent ('50%%') or absolute (4e6, 4M); default 50%%",
    )
    p.add_argument("--max-params", help="parameter budget, same forms")
    p.add_argument(
        "--objectives",
        default="accuracy,macs",
        help="comma list, accuracy first (default: %(default)s)",
    )
    p.add_argument("--methods", help="comma list of methods to offer (default: all)")
    p.add_argument(
        "--n-trials",
        type=int,
        default=DEFAULT_TRIALS,
        help="total trials in the study (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--sampler", default="tpe", help="tpe, nsga2 or random (default: %(default)s)")
    p.add_argument(
        "--repair",
        default="repair",
        choices=("repair", "constraint"),
        help="budget handling (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        default=120,
        help="proxy fine-tune steps per trial (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-samples",
        type=int,
        default=2048,
        help="training images for proxy fine-tunes (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="fine-tune batch size (default: %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=0.01, help="fine-tune learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--measure-latency", action="store_true", help="store batch-1 CPU latency per trial"
    )
    _add_worker_args(p)
    _add_device_arg(p)
    p.set_defaults(func=cmd_search)

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

    p = sub.add_parser("front", help="print the Pareto front")
    _add_study_args(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--no-reference", action="store_true", help="omit the dense and VBMF rows")
    p.set_defaults(func=cmd_front)

    p = sub.add_parser("plot", help="write the figures as a standalone HTML file")
    _add_study_args(p)
    p.add_argument("--out", default="pareto.html", help="output HTML (default: %(default)s)")
    p.add_argument("--png", action="store_true", help="also write a PNG of the Pareto front")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="write one HTML report of the study")
    _add_study_args(p)
    p.add_argument("--out", default="report.html", help="output HTML (default: %(default)s)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a trial's plan as JSON")
    _add_study_args(p)
    p.add_argument("--trial", type=int, help="trial number")
    p.add_argument(
        "--max-macs",
        help="best accuracy with macs <= X: fraction (0.5), percent ('50%%') or absolute "
        "(4e6, 4M), as in search",
    )
    p.add_argument("--out", default="plan.json", help="output JSON (default: %(default)s)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("apply", help="apply a plan and save the compressed model")
    p.add_argument("plan", help="plan JSON")
    _add_model_args(p)
    p.add_argument(
        "--out",
        default="model.pt",
        help="output file: .onnx exports ONNX (checked with onnxruntime), else torch.save "
        "(default: %(default)s)",
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("finetune", help="fully fine-tune a plan and compare with the dense model")
    p.add_argument("plan", help="plan JSON")
    _add_model_args(p)
    p.add_argument("--epochs", type=int, default=5, help="epochs (default: %(default)s)")
    _add_device_arg(p)
    p.add_argument("--out", help="save the fine-tuned model here (.onnx: ONNX, else torch.save)")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("profile", help="list layers, costs and eligibility")
    _add_model_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("models", help="list built-in models, data sets and methods")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rankopt`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    from rankopt.errors import RankoptError

    try:
        return func(args)
    except RankoptError as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"rankopt: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rankopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
