"""Helpers shared by the ``rankopt`` commands: common options, model/data loading, checks.

Heavy modules are imported inside the functions, so ``rankopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rankopt._defaults import DEFAULT_DATA, DEFAULT_LATENCY_RUNTIME, DEFAULT_MODEL

DEFAULT_BUDGET = "50%"
DEFAULT_RUN_DIR = "rankopt-runs"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_model_args(p: argparse.ArgumentParser, *, data: bool = True, seed: int = 0) -> None:
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
            help="built-in data set (mnist5k, digits, fashion-mnist), an ImageFolder directory "
            "(streamed from disk), a folder of MNIST-format idx files, or a .pt file of "
            "(images, labels) (default: %(default)s)",
        )
        for stat in ("mean", "std"):
            p.add_argument(
                f"--{stat}",
                help=f"ImageFolder: per-channel {stat} to normalise with, e.g. 0.485,0.456,0.406 "
                "(default: no normalisation, pixels in [0, 1])",
            )
    p.add_argument("--seed", type=int, default=seed, help="seed (default: %(default)s)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads for training, trials and fine-tunes (default: all cores; "
        "latency is timed at --latency-threads)",
    )


def add_latency_threads_arg(p: argparse.ArgumentParser) -> None:
    from rankopt.latency import DEFAULT_LATENCY_THREADS

    p.add_argument(
        "--latency-threads",
        type=int,
        default=DEFAULT_LATENCY_THREADS,
        help="threads latency is timed at (default: %(default)s, steady on a small or shared "
        "machine; at most the CPU cores this process may use)",
    )


def add_device_arg(p: argparse.ArgumentParser, *, default: str = "auto") -> None:
    p.add_argument(
        "--device",
        default=default,
        help="auto (CUDA when available), cpu, cuda or cuda:N: where the model, trials and "
        "fine-tunes run; decompositions are computed on the CPU (default: %(default)s)",
    )


def add_calibration_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="do not re-estimate BatchNorm statistics on training images after applying the "
        "plan (default: re-estimate when the data is at hand)",
    )


def calibrate(model: Any, data: Any, args: argparse.Namespace) -> bool:
    """Re-estimate BatchNorm statistics on up to 1,024 training images (unless
    --no-calibrate or no data); returns whether it did."""
    if data is None or getattr(args, "no_calibrate", False):
        return False
    from rankopt.data import as_split
    from rankopt.evaluators import calibrate_bn

    train = as_split(data.train, "training")
    images, _ = train.tensors or train.sample(min(1024, len(train)), args.seed)
    calibrate_bn(model, images[:1024])
    say(f"BatchNorm statistics re-estimated on {min(1024, images.shape[0])} training images")
    return True


def add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///<run-dir>/study.db when it exists)",
    )
    p.add_argument("--study-name", help="study name (default: the only study in the storage)")
    p.add_argument(
        "--run-dir", default=DEFAULT_RUN_DIR, help="run directory (default: %(default)s)"
    )


def storage_url(args: argparse.Namespace) -> str:
    from rankopt.storage import run_dir_url

    if args.storage:
        return str(args.storage)
    return run_dir_url(args.run_dir)


def add_worker_args(p: argparse.ArgumentParser) -> None:
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


def load_model_and_data(args: argparse.Namespace, *, need_data: bool = True) -> tuple[Any, Any]:
    """(model, DataSplits) from --model / --weights / --num-classes / --data."""
    import torch

    from rankopt.data import list_data, load_data
    from rankopt.models import get_pretrained, list_models, load_user_model

    check_common_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = (
        load_data(args.data, stream=True, mean=_floats(args, "mean"), std=_floats(args, "std"))
        if need_data
        else None
    )
    if args.model in list_models() and args.weights is None:
        from rankopt.errors import RankoptError

        if data is None:
            raise RankoptError("a built-in model needs --data to train or load its weights")
        if args.data not in list_data():
            raise RankoptError(
                f"--model {args.model} without --weights: a built-in model is trained on a "
                f"built-in data set ({', '.join(list_data())}), not on {args.data!r}; give "
                f"--weights with your trained state_dict (torch.save(model.state_dict(), path))"
            )
        model, test_acc = get_pretrained(args.model, args.data, seed=args.seed, progress=say)
        say(f"dense {args.model} on {data.name}: test accuracy {test_acc:.4f}")
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


def check_common_args(args: argparse.Namespace) -> None:
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
        from rankopt.evaluators import resolve_device

        resolve_device(args.device)  # an unknown or missing device fails before any work


def check_out(path: str | Path) -> None:
    """Fail before any work when an output file cannot be created where asked."""
    from rankopt.errors import StorageError

    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StorageError(
            f"--out {str(path)!r}: directory {str(parent)!r} does not exist; create it first "
            "or choose another path"
        )


def chosen_study_name(args: argparse.Namespace) -> str:
    """``--study-name``, or the name ``rankopt search`` derives from these search options."""
    from rankopt.storage import default_study_name

    if args.study_name:
        return str(args.study_name)
    name = default_study_name(args.model, args.data, *budget_args(args))
    latency = getattr(args, "max_latency", None)
    if latency is not None:
        tag = "".join(
            ch if ch.isalnum() or ch == "." else "" for ch in str(latency).replace("%", "pct")
        )
        name += f"-latency{tag}"
    runtime = getattr(args, "latency_runtime", DEFAULT_LATENCY_RUNTIME)
    if runtime != DEFAULT_LATENCY_RUNTIME:  # another table, another cap: another study
        name += f"-{runtime}"
    if getattr(args, "allow_slower", False):
        name += "-slower"
    if not getattr(args, "prune", True):  # another space: another study
        name += "-noprune"
    return name


def budget_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(max_macs, max_params) as given; ``DEFAULT_BUDGET`` MACs when neither is."""
    max_macs = args.max_macs
    if max_macs is None and args.max_params is None and getattr(args, "max_latency", None) is None:
        max_macs = DEFAULT_BUDGET
    return max_macs, args.max_params


def check_run_dir(run_dir: Path) -> None:
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


def format_table(df: Any) -> str:
    if df is None or len(df) == 0:
        return "(no completed trials yet)"
    from rankopt.storage import COUNT_METRICS, TABLE_METRICS

    cols = [c for c in ("kind", "trial", *TABLE_METRICS, "layers") if c in df.columns]
    view = df[cols].copy()
    for col in COUNT_METRICS:
        if col in view.columns:
            view[col] = view[col].round().astype("Int64")
    if "layers" in view.columns:
        view["layers"] = view["layers"].astype(str).str.slice(0, 60)
    return str(view.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def given_study_args(args: argparse.Namespace) -> list[str]:
    """``--storage`` / ``--run-dir`` / ``--study-name`` as the user gave them (password masked)."""
    from rankopt.storage import mask_url

    out: list[str] = []
    if args.storage:
        out += ["--storage", mask_url(str(args.storage))]
    elif str(args.run_dir) != DEFAULT_RUN_DIR:
        out += ["--run-dir", str(args.run_dir)]
    if args.study_name:
        out += ["--study-name", str(args.study_name)]
    return out


def find_study_args(args: argparse.Namespace, study_name: str, storage: Any) -> list[str]:
    """The fewest options with which ``rankopt export`` / ``report`` find ``study`` again.

    ``storage`` is the opened Optuna storage (or its URL). Nothing when the study is the
    only one in the default run directory; ``--run-dir`` for
    another run directory; ``--study-name`` when the storage holds other studies too; a
    storage URL given with ``--storage`` is repeated (password masked) with the study name.
    """
    import optuna

    from rankopt.storage import mask_url

    if args.storage:
        return ["--storage", mask_url(str(args.storage)), "--study-name", study_name]
    out = [] if str(args.run_dir) == DEFAULT_RUN_DIR else ["--run-dir", str(args.run_dir)]
    if len(optuna.get_all_study_names(storage=storage)) > 1:
        out += ["--study-name", study_name]
    return out


def open_study(args: argparse.Namespace) -> Any:
    from rankopt.studies import load_study

    return load_study(storage_url(args), args.study_name)


def builtin_models() -> list[str]:
    from rankopt.models import list_models

    return list_models()
