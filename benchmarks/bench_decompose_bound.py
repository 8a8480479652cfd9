"""Every decomposition of every layer of the real-size models, timed and measured in memory.

Issue 36 item 2: no decomposition of any layer of torchvision ``resnet18``, ``resnet50``,
``vgg16_bn`` or ``mobilenet_v2`` (10 classes) may allocate more than 1 GB or take more than
10 s on this machine. For each distinct (weight shape, method) that the search offers, this
decomposes a seeded random weight at the method's **largest** offered rank (the costliest
point: CP-ALS's work grows with the rank; the other methods' basis does not depend on it),
in one process per model, with ``torch`` at 1 thread as rankopt's decompositions run. Memory
is the growth of the peak RSS during the call (``/proc/self/clear_refs`` resets the peak
before each one). Also prints each method's one-line bound note where it cut ranks.

Usage: ``python -m benchmarks.bench_decompose_bound [--models resnet18,...] [--size 32]``;
prints a markdown table (pasted into ``benchmarks/BENCHMARKS_SCALE.md``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

MODELS = ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2")
TIME_BOUND_S = 10.0
MEMORY_BOUND_BYTES = 2**30


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_model(name: str, size: int) -> None:
    """Child: one model's distinct (shape, method) decompositions, one table row each."""
    import torchvision

    from rankopt.evaluators import profile
    from rankopt.searching.space._space import SearchSpace
    from rankopt.spaces import clear_cache, decompose, get_method

    torch.set_num_threads(1)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    prof = profile(model, (3, size, size))
    space = SearchSpace(prof, None, n_outputs=10)
    seen: set[tuple[object, ...]] = set()
    gen = torch.Generator().manual_seed(0)
    for layer, methods in space.choices.items():
        info = space.layer(layer)
        for method in methods:
            key = (tuple(info.weight_shape), info.kind, method, info.stride, info.input_hw)
            if key in seen:
                continue
            seen.add(key)
            note = get_method(method).bound_note(info)
            cands = space.candidates(layer, method)
            top = max(cands, key=lambda c: c.macs)
            weight = torch.randn(info.weight_shape, generator=gen)
            clear_cache()
            _reset_peak()
            before = _rss_bytes("VmRSS")
            started = time.perf_counter()
            decompose(weight, info, method, top.ranks, top.options)
            wall = time.perf_counter() - started
            grew = max(0, _rss_bytes("VmHWM") - before)
            ok = wall <= TIME_BOUND_S and grew <= MEMORY_BOUND_BYTES
            share = top.macs / max(info.macs, 1)
            print(
                f"| {name} | {layer} {tuple(info.weight_shape)} | {method} | {top.ranks} "
                f"({share:.0%} MACs) | {wall:.2f} | {grew / 2**20:.0f} | "
                f"{'yes' if ok else '**no**'} | {note or ''} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_model(args.child, args.size)
        return
    print(f"### Decompositions at their largest offered rank ({args.size}x{args.size} inputs)")
    print()
    print("| model | layer (weight shape) | method | ranks | s | MB | within bounds | note |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_decompose_bound",
                "--child",
                name,
                "--size",
                str(args.size),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
