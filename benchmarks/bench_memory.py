"""Peak resident memory of a search over an ImageFolder of 2,000 vs 8,000 images (64x64).

Usage: ``python benchmarks/bench_memory.py [--model resnet8|tiny] [--n-trials 2]
[--finetune-steps 20] [--sizes 2000 8000] [--no-write]``.

Writes two ImageFolders of synthetic 64x64 RGB PNGs (10 classes, one stripe pattern per
class plus noise) into a temporary directory, then runs the same search over each in a fresh
subprocess (``--data DIR`` streamed: ``load_data(dir, stream=True)``, SQLite storage, one
torch thread, default ``finetune_samples``) and reads the subprocess's peak resident memory
(``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` elsewhere). Every image of the validation
split is evaluated in every trial, so what scales with the data set shows up in the peak.
The goal (issue 16): 8,000 images peak at most 150 MB above 2,000. Only the proxy
fine-tune's sample (``min(finetune_samples, training images)``: 1,400 vs 2,048 images, 31 MB
more at 3x64x64 float32) may grow with the data set. Results go to
``benchmarks/BENCHMARKS_MEMORY.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MB = 150.0
"""Largest allowed growth of the peak from the smallest to the largest data set (MB)."""

IMAGE_SIZE = 64
"""Side of the square images (pixels)."""

N_CLASSES = 10
OUT_MD = Path(__file__).resolve().parent / "BENCHMARKS_MEMORY.md"


def make_image_folder(root: Path, n_images: int, *, seed: int = 0) -> Path:
    """Write ``n_images`` 64x64 RGB PNGs in ImageFolder layout (``root/c<k>/<i>.png``).

    Args:
        root: Directory to create (left as it is when it already holds ``n_images`` files).
        n_images: Number of images, spread round-robin over 10 classes.
        seed: Seed of the pixel noise.

    Returns:
        ``root``.
    """
    import numpy as np
    from PIL import Image

    if root.is_dir() and sum(1 for _ in root.glob("*/*.png")) == n_images:
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / IMAGE_SIZE
    for i in range(n_images):
        c = i % N_CLASSES
        folder = root / f"c{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack(
            [np.sin((c + 1) * xx * 3 + k) * np.cos((c % 3 + 1) * yy * 3) for k in range(3)], -1
        )
        noisy = (base * 0.5 + 0.5) * 200 + rng.normal(0, 25, base.shape)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            folder / f"{i:05d}.png", compress_level=1
        )
    return root


def tiny_cnn(num_classes: int = N_CLASSES) -> object:
    """A 3-conv CNN for 3x64x64 images (strides 2, 2, 1): seconds per search on one core."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB = 2**20 bytes)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child(folder: Path, model_name: str, n_trials: int, steps: int, methods: list[str]) -> None:
    """Run one search over ``folder`` in this process; print one JSON line with the peak."""
    import torch

    torch.set_num_threads(1)
    import rankopt
    from rankopt.data import load_data
    from rankopt.models import create_model
    from rankopt.storage import is_repeat

    data = load_data(folder, stream=True)
    torch.manual_seed(0)
    model = (
        tiny_cnn()
        if model_name == "tiny"
        else create_model(model_name, in_channels=3, num_classes=N_CLASSES)
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        study = rankopt.search(
            model,  # type: ignore[arg-type]
            data.train,
            data.val,
            n_trials=n_trials,
            finetune_steps=steps,
            methods=methods,
            max_macs=0.5,
            storage=f"sqlite:///{run_dir}/study.db",
            n_threads=1,
            latency_runtime=None,  # memory of the streamed data, not of a latency table
        )
        # trials that evaluated their own plan (a repeat reuses an earlier trial's values)
        values = [t.values for t in study.trials if not is_repeat(t)]
    print(
        json.dumps(
            {
                "peak_mb": peak_rss_mb(),
                "sizes": data.sizes(),
                "values": values,
                "wall_time_s": time.perf_counter() - started,
            }
        )
    )


def measure(
    sizes: tuple[int, ...] = (2000, 8000),
    *,
    model: str = "resnet8",
    n_trials: int = 2,
    finetune_steps: int = 20,
    methods: tuple[str, ...] = ("svd", "tucker2"),
    root: Path | None = None,
) -> list[dict[str, object]]:
    """Peak resident memory of the same search over ImageFolders of each size.

    Args:
        sizes: Images per data set.
        model: ``tiny`` (:func:`tiny_cnn`) or a built-in model name.
        n_trials: Trials per search.
        finetune_steps: Proxy fine-tune steps per trial.
        methods: Decomposition methods offered.
        root: Where the folders are written (default: a temporary directory, removed).

    Returns:
        One dict per size: ``n_images``, ``peak_mb``, ``sizes`` (split sizes), ``values``
        (trial values), ``wall_time_s``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        base = root or Path(tmp)
        rows = []
        for n in sizes:
            folder = make_image_folder(base / f"images{n}", n)
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(folder),
                "--model",
                model,
                "--n-trials",
                str(n_trials),
                "--finetune-steps",
                str(finetune_steps),
                "--methods",
                ",".join(methods),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"n_images": n, **result})
    return rows


def write_markdown(rows: list[dict[str, object]], args: argparse.Namespace, path: Path) -> None:
    """Write the table and the verdict to ``path``."""
    lines = [
        "# Peak resident memory vs data set size (issue 16)",
        "",
        f"`python benchmarks/bench_memory.py --model {args.model} --n-trials {args.n_trials} "
        f"--finetune-steps {args.finetune_steps} --methods {args.methods}`, on "
        f"{platform.machine()} with {os.cpu_count()} cores (shared), one torch thread; "
        "synthetic 64x64 RGB PNGs, 10 classes, `load_data(dir, stream=True)` (70/10/20 % "
        "split), default `finetune_samples` (2,048). Each search runs in a fresh process; "
        "the peak is its VmHWM (imports included).",
        "",
        "| images | train / val | peak RSS (MB) | search wall time (s) |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        sizes = r["sizes"]
        assert isinstance(sizes, dict)
        lines.append(
            f"| {r['n_images']:,} | {sizes['train']:,} / {sizes['val']:,} | "
            f"{float(r['peak_mb']):.0f} | {float(r['wall_time_s']):.0f} |"  # type: ignore[arg-type]
        )
    diff = float(rows[-1]["peak_mb"]) - float(rows[0]["peak_mb"])  # type: ignore[arg-type]
    verdict = "met" if diff <= GOAL_MB else "NOT met"
    lines += [
        "",
        f"Difference: {diff:+.0f} MB (goal: at most {GOAL_MB:.0f} MB): {verdict}.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    """Run the benchmark (or, with ``--child``, one search) and print the peaks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="resnet8", help="tiny or a built-in model")
    parser.add_argument("--n-trials", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=20)
    parser.add_argument("--methods", default="svd,tucker2")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--no-write", action="store_true", help="do not write the .md file")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.child is not None:
        child(args.child, args.model, args.n_trials, args.finetune_steps, methods)
        return
    rows = measure(
        tuple(args.sizes),
        model=args.model,
        n_trials=args.n_trials,
        finetune_steps=args.finetune_steps,
        methods=tuple(methods),
    )
    for r in rows:
        print(f"{r['n_images']:>6} images: peak {float(r['peak_mb']):.0f} MB")  # type: ignore[arg-type]
    diff = float(rows[-1]["peak_mb"]) - float(rows[0]["peak_mb"])  # type: ignore[arg-type]
    print(f"difference: {diff:+.0f} MB (goal <= {GOAL_MB:.0f} MB)")
    if not args.no_write:
        write_markdown(rows, args, OUT_MD)
        print(f"wrote {OUT_MD}")


if __name__ == "__main__":
    main()
