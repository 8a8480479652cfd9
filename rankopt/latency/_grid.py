"""Timing primitives and rank grids behind the latency table (:mod:`._table`)."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankopt.latency._timing import paired_medians_ms, time_runners_ms
from rankopt.spaces import LayerInfo, geometric_picks, get_method, round_ranks
from rankopt.spaces import ranks_at_fraction as ranks_at_fraction_of

__all__ = [
    "layer_input",
    "layer_signature",
    "machine_signature",
    "method_module",
    "monotone_ratios",
    "rank_grid",
    "ranks_at_fraction",
    "time_interleaved_ms",
    "time_swapped_ms",
]


def time_interleaved_ms(
    modules: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    n_warmup: int = 3,
    n_runs: int = 15,
) -> list[float]:
    """Median time of one forward pass of each module, measured interleaved, in ms.

    Each round calls every module once (the order rotated each round) on the same input, so
    slow drifts of a shared machine hit all modules alike.

    Args:
        modules: Modules taking ``x`` (run in eval mode under ``torch.inference_mode``).
        x: The input batch.
        n_warmup: Untimed rounds first.
        n_runs: Timed rounds.

    Returns:
        Median latency_ms of each module, in the order given.
    """
    for m in modules:
        m.eval()
    with torch.inference_mode():
        return time_runners_ms(modules, x, n_warmup=n_warmup, n_runs=n_runs)


def time_swapped_ms(
    model: nn.Module,
    layer_name: str,
    modules: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    n_warmup: int = 3,
    n_runs: int = 15,
) -> list[float]:
    """Median time of the whole ``model`` with layer ``layer_name`` replaced by each of
    ``modules`` in turn, measured interleaved, in ms.

    Each round runs the model once per module (swapped in place, the order rotated each
    round) on the same input, so slow drifts of a shared machine hit every variant alike.
    The layer is put back afterwards.

    Args:
        model: The model (eval mode; run under ``torch.inference_mode``).
        layer_name: Qualified name of the layer to swap.
        modules: Replacements (the layer itself first, for the dense time).
        x: The input batch.
        n_warmup: Untimed rounds first.
        n_runs: Timed rounds.

    Returns:
        Latency_ms of the model with each module, in the order given: the first module's
        median, the others paired with it round by round (``paired_medians_ms``).
    """
    parent_name, _, attr = layer_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attr)
    times: list[list[float]] = [[] for _ in modules]
    n = len(modules)
    try:
        with torch.inference_mode():
            for _ in range(n_warmup):
                for m in modules:
                    setattr(parent, attr, m)
                    model(x)
            for run in range(n_runs):
                for k in range(n):
                    i = (k + run) % n
                    setattr(parent, attr, modules[i])
                    start = time.perf_counter()
                    model(x)
                    times[i].append((time.perf_counter() - start) * 1000.0)
    finally:
        setattr(parent, attr, original)
    return paired_medians_ms(times)


def ranks_at_fraction(
    method: str, layer: LayerInfo, fraction: float, options: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Every rank of ``method`` at ``fraction`` of its full rank (rounded, in ``[1, full]``)."""
    return ranks_at_fraction_of(get_method(method).rank_space(layer, options), fraction)


def rank_grid(
    method: str,
    layer: LayerInfo,
    n_points: int = 6,
    options: Mapping[str, Any] | None = None,
    multiple: int = 1,
) -> list[dict[str, int]]:
    """Ranks from 1 up to the largest (all ranks scaled together) with MACs below dense.

    The points are spaced geometrically in MACs among the distinct (rounded) ranks below
    dense: the cheap end, where compressed plans live, gets as many points as the costly
    end. Evenly spaced rank fractions left one point between rank 4 and rank 24 of CP on a
    16-channel layer, whose latency at batch 64 bends in between, and mispredicted CP plans
    by up to 39 %.

    Args:
        method: A registered method supporting ``layer``.
        layer: A profiled layer (``macs`` > 0).
        n_points: Grid points (>= 2), the cheapest and the costliest included.
        options: Method options (defaults when None).
        multiple: Every rank rounded to a multiple of this (``round_ranks``, nearest), the
            ranks a search with ``rank_multiple`` realises: on ONNX Runtime a rank of 15 can
            run slower than one of 16.

    Returns:
        Distinct rank dicts in increasing MACs; empty when no rank is cheaper than dense.
    """
    impl = get_method(method)

    def macs(f: float) -> int:
        return impl.macs(layer, ranks_at_fraction(method, layer, f, options), options)

    if macs(0.0) >= layer.macs:
        return []
    low, high = 0.0, 1.0
    if macs(1.0) < layer.macs:
        low = 1.0
    else:
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if macs(mid) < layer.macs else (low, mid)
    full = impl.rank_space(layer, options)
    steps = 16 * n_points
    candidates: list[tuple[int, dict[str, int]]] = []
    for i in range(steps + 1):
        ranks = ranks_at_fraction(method, layer, low * i / steps, options)
        ranks = round_ranks(ranks, multiple, full)
        cost = impl.macs(layer, ranks, options)
        if cost < layer.macs and all(ranks != r for _, r in candidates):
            candidates.append((cost, ranks))
    candidates.sort(key=lambda c: c[0])
    picks = geometric_picks([max(1, c) for c, _ in candidates], n_points, fill=True)
    return [candidates[i][1] for i in picks]


def machine_signature() -> dict[str, str]:
    """OS, architecture, CPU model and torch version of this machine."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": cpu,
        "torch": torch.__version__,
    }


def layer_signature(layer: LayerInfo) -> str:
    """The key of a layer shape in the latency cache (kind, channels, kernel, input size)."""
    return (
        f"{layer.kind}:{layer.in_channels}->{layer.out_channels}:k{layer.kernel_size}"
        f":s{layer.stride}:p{layer.padding}:d{layer.dilation}:g{layer.groups}"
        f":b{int(layer.has_bias)}:in{layer.input_hw}"
    ).replace(" ", "")


def method_module(
    method: str, layer: LayerInfo, ranks: Mapping[str, int], gen: torch.Generator
) -> nn.Module:
    """``method``'s module for ``layer`` at ``ranks`` with random factors (float32)."""
    impl = get_method(method)
    options = impl.resolve_options(layer, None)
    factors = impl.random_factors(layer, ranks, options, gen)
    bias = torch.zeros(layer.out_channels, dtype=torch.float64) if layer.has_bias else None
    return impl.to_module(layer, factors, bias, options).to(torch.float32)


def layer_input(layer: LayerInfo, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """A random input batch of the layer's real size."""
    if layer.kind == "linear":
        return torch.randn(batch_size, layer.in_channels, generator=gen)
    return torch.randn(batch_size, layer.in_channels, *layer.input_hw, generator=gen)


def monotone_ratios(points: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    """Isotonic (non-decreasing in MACs) fit of one method's measured ratios by pool-adjacent-
    violators: more rank never runs faster, and a timing that dips below its neighbours is
    noise the allocation would otherwise exploit (it picks what looks fastest)."""
    blocks: list[list[float]] = []  # [sum, count] per pooled block
    for _, ratio in points:
        blocks.append([ratio, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted = [total / count for total, count in blocks for _ in range(int(count))]
    return tuple((macs, value) for (macs, _), value in zip(points, fitted, strict=True))
