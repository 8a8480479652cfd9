"""One model of the scale benchmark, run in its own process (its peak RSS is the model's).

``python -m benchmarks.scale.child --case resnet18@32 --result row.json [--profile-only]
[--n-trials 16] [--threads 2] [--n-train 2048] [--n-val 512] [--finetune-steps 120]
[--methods svd,tucker2] [--latency-runtime default|onnxruntime|torch|none]`` writes one
JSON row to ``--result``. The parent
(``python -m benchmarks.scale``) reads the peak RSS itself from ``os.wait4``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

NUM_CLASSES = 10
BUDGET = "50%"
"""The command line's default MACs budget (``rankopt search`` without ``--max-macs``)."""


def parse_case(case: str) -> tuple[str, int]:
    """``"resnet50@64"`` -> ``("resnet50", 64)``; without ``@`` the size is 32 pixels."""
    name, _, size = case.partition("@")
    return name, int(size) if size else 32


def build_model(spec: str) -> nn.Module:
    """A torchvision name (random weights, 10 classes) or ``package.module:callable``."""
    from rankopt.models import load_user_model

    torch.manual_seed(0)
    return load_user_model(spec, num_classes=NUM_CLASSES, in_channels=3)


def random_split(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standard-normal 3 x size x size images with uniform random labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    return images, labels


def rss_mb() -> float | None:
    """This process's resident memory now (MB = 2**20 bytes); None off Linux."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def floor_s(model: nn.Module, images: torch.Tensor, repeats: int = 3) -> float:
    """Fastest of ``repeats`` dense no-grad forwards over ``images`` (seconds).

    The same batched pass the profile scores with (:func:`rankopt.evaluators.compute_logits`).
    """
    from rankopt.evaluators import compute_logits

    compute_logits(model, images)  # warm-up (allocator, oneDNN primitives)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        compute_logits(model, images)
        times.append(time.perf_counter() - started)
    return min(times)


def profile_facts(stored: Mapping[str, Any]) -> dict[str, Any]:
    """What the stored profile (``study.user_attrs["sensitivity"]``) says about its cost.

    Pairs and points are counted from the profile itself when its ``timing`` does not give
    them; the seconds per method, in forward passes and the floor are None when not recorded.
    """
    points = stored.get("points", {})
    failed = stored.get("failed", {})
    timing = stored.get("timing") if isinstance(stored.get("timing"), Mapping) else None
    pairs = {(layer, m) for layer, methods in points.items() for m in methods}
    pairs |= {(layer, m) for layer, methods in failed.items() for m in methods}
    n_points = sum(len(pts) for methods in points.values() for pts in methods.values())
    t = timing or {}
    return {
        "profile_s": float(stored["wall_time_s"]) if "wall_time_s" in stored else None,
        "n_pairs": int(t.get("n_pairs", len(pairs))),
        "n_points": int(t.get("n_points", n_points)),
        "n_failed_pairs": sum(len(m) for m in failed.values()),
        "failed": {f"{layer}/{m}": why for layer, ms in failed.items() for m, why in ms.items()},
        "n_images": int(stored.get("n_images", 0)),
        "timing_recorded": timing is not None,
        "decompose_s": dict(t["decompose_s"]) if "decompose_s" in t else None,
        "forward_s": float(t["forward_s"]) if "forward_s" in t else None,
        "capture_s": float(t["capture_s"]) if "capture_s" in t else None,
        "recorded_floor_s": float(t["floor_s"]) if "floor_s" in t else None,
    }


def trial_facts(study: Any) -> dict[str, Any]:
    """Finished trials that evaluated their own plan, and their mean / max wall time (s).

    A trial that realised an already evaluated plan reuses its result (not counted, as in
    ``n_trials``); ``n_repeats`` counts those.
    """
    from optuna.trial import TrialState

    from rankopt.storage._attrs import is_repeat

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    done = [t for t in finished if not is_repeat(t)]
    times = [float(t.user_attrs["wall_time_s"]) for t in done if "wall_time_s" in t.user_attrs]
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return {
        "n_trials_done": len(done),
        "n_trials_failed": len(failed),
        "n_repeats": len(finished) - len(done),
        "mean_trial_s": statistics.mean(times) if times else None,
        "max_trial_s": max(times) if times else None,
        "trials_s": sum(times),
    }


def run_case(
    case: str,
    *,
    profile_only: bool,
    n_trials: int,
    threads: int,
    n_train: int,
    n_val: int,
    finetune_steps: int,
    methods: Sequence[str] | None,
    latency_runtime: str | None = "default",
) -> dict[str, Any]:
    """Build the model, run the search (or only its profile) and return the row.

    ``latency_runtime``: ``"default"`` leaves :func:`rankopt.search`'s default (a latency
    table on the deployment runtime), None measures no latency table.
    """
    import rankopt

    torch.set_num_threads(threads)
    _ = rankopt.search, rankopt.profile  # load the lazy parts (optuna, ...) before measuring
    import_rss_mb = rss_mb()  # torch, optuna and rankopt loaded; no model, no data
    name, size = parse_case(case)
    model = build_model(name).eval()
    prof = rankopt.profile(model, (3, size, size))
    train = random_split(n_train, size, seed=1)
    val = random_split(n_val, size, seed=2)

    bound_lines: list[str] = []
    latency_times: list[float] = []

    def say(line: str) -> None:
        now = time.perf_counter() - started
        print(f"[{case} {now:7.1f} s] {line}", file=sys.stderr)
        if "not offered" in line or "failed" in line:
            bound_lines.append(line.removeprefix("sensitivity profile: "))
        if line.startswith("latency table"):
            latency_times.append(now)

    runtime_kw: dict[str, Any] = {}
    if latency_runtime != "default":
        runtime_kw["latency_runtime"] = latency_runtime
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        study = rankopt.search(
            model,
            train,
            val,
            max_macs=BUDGET,
            methods=methods,
            **runtime_kw,
            n_trials=n_trials,
            # Optuna checks the timeout before each trial: a tiny one stops right after the
            # profile and the seeding, which run before the first trial.
            timeout=1e-6 if profile_only else None,
            finetune_steps=finetune_steps,
            storage=f"sqlite:///{run_dir}/study.db",
            model_name=name,
            data_name=f"random{size}",
            n_threads=threads,
            device="cpu",
            progress=say,
        )
        search_s = time.perf_counter() - started
        stored = dict(study.user_attrs.get("sensitivity", {}))
        settings = study.user_attrs.get("settings", {})
        trials = trial_facts(study)
    facts = profile_facts(stored)
    measured_floor_s = floor_s(model, train[0][: facts["n_images"] or 256])
    return {
        "case": case,
        "model": name,
        "input_size": size,
        "profile_only": profile_only,
        "threads": threads,
        "n_train": n_train,
        "n_val": n_val,
        "finetune_steps": finetune_steps,
        "n_trials": n_trials,
        "methods": list(methods) if methods else None,
        "budget": BUDGET,
        "dense_macs": prof.macs,
        "dense_n_params": prof.n_params,
        "n_layers_searched": len(settings.get("eligible_layers", [])),
        "import_rss_mb": import_rss_mb,
        "search_s": search_s,
        "latency_runtime": settings.get("latency_runtime"),
        # from its first to its last progress line (the table is not timed in the study)
        "latency_table_s": latency_times[-1] - latency_times[0] if latency_times else None,
        "bound_lines": bound_lines,
        "measured_floor_s": measured_floor_s,
        **facts,
        **trials,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one case and write its row as JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale.child", description=__doc__)
    p.add_argument("--case", required=True, help="model[@input size], e.g. resnet50@64")
    p.add_argument("--result", type=Path, required=True, help="where the JSON row goes")
    p.add_argument("--profile-only", action="store_true")
    p.add_argument("--n-trials", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-val", type=int, default=512)
    p.add_argument("--finetune-steps", type=int, default=120)
    p.add_argument("--methods", default=None, help="comma-separated (default: all)")
    p.add_argument("--latency-runtime", default="default", help="default, onnxruntime, torch, none")
    args = p.parse_args(argv)
    row = run_case(
        args.case,
        profile_only=args.profile_only,
        n_trials=args.n_trials,
        threads=args.threads,
        n_train=args.n_train,
        n_val=args.n_val,
        finetune_steps=args.finetune_steps,
        methods=args.methods.split(",") if args.methods else None,
        latency_runtime=None if args.latency_runtime == "none" else args.latency_runtime,
    )
    args.result.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
