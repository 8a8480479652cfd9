"""Measuring the latency table's units: one layer at one batch size, every method's grid.

A unit swaps each grid point's module into the whole model in place of the layer and times
the variants interleaved with the dense model (the runtime's ``time_swapped_ms``); it stores
the dense model's time of its rounds (``model_ms``) beside each point's.

A shared machine has slow spells. Pairing each variant with the dense model round by round,
and scaling each layer's change to the table's dense time, cancels a spell only where it
slows every forward pass by one factor. On an AMD EPYC VM (ONNX Runtime, 1 thread) one build
timed the dense resnet8 at 190-274 us in its layers' rounds at batch 1 (another build,
184-191 us); it predicted plans up to 18.5 % pessimistic at batch 1 (the steady build:
within 5.4 %). So a unit whose dense model ran
more than :data:`DRIFT_TOLERANCE` slower than the fastest unit of its batch size is timed
again, up to :data:`MAX_RETRIES` times, and its fastest timing kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rankopt.latency._grid import method_module, rank_grid
from rankopt.spaces import LayerInfo, get_method

if TYPE_CHECKING:
    from rankopt.latency._runtimes import LatencyRuntime

__all__ = ["DRIFT_TOLERANCE", "MAX_RETRIES", "MAX_RUNS", "measure_units", "timed_rounds"]

DRIFT_TOLERANCE = 0.10
"""A unit whose dense model ran more than this fraction slower than the fastest unit's of its
batch size (cached ones included) is timed again."""
MAX_RETRIES = 2
"""Times a slow unit is timed again at most."""
MAX_RUNS = 5000
"""Most timed rounds of one unit."""


def timed_rounds(n_runs: int, min_timed_s: float, model_ms: float) -> int:
    """Timed rounds: ``n_runs``, or more so that each variant runs ``min_timed_s`` in all
    (at most :data:`MAX_RUNS`)."""
    return max(n_runs, min(MAX_RUNS, math.ceil(min_timed_s * 1000 / model_ms)))


def _fastest_ref(entries: Mapping[str, Any], bs: int) -> float:
    """The fastest dense model time (ms) of any unit at batch size ``bs`` (inf if none)."""
    found = entries.get(str(bs), {}).get("layers", {})
    return min(
        (float(v["model_ms"]) for per_method in found.values() for v in per_method.values()),
        default=math.inf,
    )


def _ref(entries: Mapping[str, Any], bs: int, name: str, method_key: str) -> float | None:
    """The dense model's time (ms) in the rounds that timed ``method_key`` on ``name``."""
    found = entries.get(str(bs), {}).get("layers", {}).get(name, {}).get(method_key)
    return None if found is None else float(found["model_ms"])


def measure_units(
    rt: LatencyRuntime,
    host: nn.Module,
    layers: Mapping[str, LayerInfo],
    todo: Mapping[tuple[int, str], list[str]],
    entries: dict[str, Any],
    input_shape: tuple[int, ...],
    stored: Callable[[str], str],
    *,
    n_grid: int,
    n_warmup: int,
    n_runs: int,
    min_timed_s: float,
    rank_multiple: int,
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """Time every unit of ``todo`` into ``entries``, then time again the slow ones.

    Args:
        rt: The runtime.
        host: The dense model (eval, CPU, float32; layers are swapped and put back).
        layers: The profiled layers by name.
        todo: ``(batch size, layer) -> methods`` to measure (empty: the dense model only).
        entries: The cache entries of the model (``str(batch size) -> entry``), updated.
        input_shape: One input.
        stored: A method's key in the cache (its rank multiple appended).
        n_grid: Grid points per method.
        n_warmup: Untimed rounds.
        n_runs: Timed rounds at least.
        min_timed_s: Each variant is timed about this long in all.
        rank_multiple: Grid ranks are multiples of this.
        progress: ``progress(done, total, what)`` after each timed unit.
    """
    gen = torch.Generator().manual_seed(0)
    probe_ms: dict[int, float] = {}
    done, total = 0, len(todo)

    def measure(bs: int, name: str, wanted: list[str], what: str) -> None:
        nonlocal done
        layer = layers[name]
        x = torch.randn((bs, *input_shape), generator=gen)
        modules: list[nn.Module] = [host.get_submodule(name)]
        points: list[tuple[str, dict[str, int], int]] = []
        for m in wanted:
            for ranks in rank_grid(m, layer, n_grid, multiple=rank_multiple):
                modules.append(method_module(m, layer, ranks, gen).eval())
                points.append((m, ranks, get_method(m).macs(layer, ranks)))
        # Enough rounds for each variant to run about min_timed_s in all: at batch 1 the
        # model takes ~0.2 ms and one layer's change is a few microseconds.
        if bs not in probe_ms:
            probe_ms[bs] = rt.time_swapped_ms(host, name, modules[:1], x, n_runs=3)[0]
        runs = timed_rounds(n_runs, min_timed_s, probe_ms[bs])
        times = rt.time_swapped_ms(host, name, modules, x, n_warmup=n_warmup, n_runs=runs)
        entry = entries.setdefault(str(bs), {})
        entry.setdefault("model_ms", times[0])
        per_layer = entry.setdefault("layers", {}).setdefault(name, {})
        previous = _ref(entries, bs, name, stored(wanted[0])) if wanted else None
        if previous is None or times[0] < previous:  # timed again: the faster timing stays
            for m in wanted:
                per_layer[stored(m)] = {"model_ms": times[0], "points": []}
            for (m, ranks, macs), ms in zip(points, times[1:], strict=True):
                per_layer[stored(m)]["points"].append(
                    {"ranks": ranks, "macs": macs, "model_ms": ms}
                )
        done += 1
        if progress is not None:
            progress(done, total, what)

    for (bs, name), wanted in todo.items():
        measure(bs, name, wanted, f"{name} batch {bs}")
    for _ in range(MAX_RETRIES):
        slow = []
        for (bs, name), wanted in todo.items():
            ref = _ref(entries, bs, name, stored(wanted[0])) if wanted else None
            fastest = _fastest_ref(entries, bs)
            if ref is not None and ref > (1.0 + DRIFT_TOLERANCE) * fastest:
                slow.append((bs, name, ref / fastest - 1.0))
        total += len(slow)
        for bs, name, excess in slow:
            what = f"{name} batch {bs} again (its dense model ran {100 * excess:.0f} % slow)"
            measure(bs, name, todo[(bs, name)], what)
