"""Per-layer latency table: measured CPU time of each method's module, inside the model.

For every eligible layer of a profiled model, every requested method and a grid of ranks
(rank 1 up to the largest rank whose MACs are below the dense layer's, the ranks of a
multi-rank method scaled together), the method's module (random weights: latency does not
depend on the values) is swapped into the **whole model** in place of the layer, and the
model is timed **interleaved** with the dense model (one forward of each per round, the
order rotated), after a warm-up, at the current torch thread count, for each batch size.
A grid point stores the change of the whole model's time, so what the layer costs in
context (cache state, memory layout, the neighbouring ops) is what is measured; timing a
layer alone mispredicted whole resnet8 plans by 40-170 % at batch 64.

Each layer's dense time is the model's time apportioned by MACs share; a grid point's ratio is
``(dense share + measured change) / dense share`` (it may be below 0: a layer whose
replacement saves more than its share); the change is measured against the dense model in the
same rounds, round by round, and scaled to the table's dense model time (the median of the
dense model over all layers' rounds). Prediction interpolates the ratio piecewise-linearly
in the module's analytic MACs, extrapolating beyond the grid along its last segment. A
whole plan is predicted as the measured dense model time plus, per changed layer, its
predicted change, times a per-batch-size factor fitted on a few whole plans timed once
(:mod:`rankopt.latency._plans`: swaps need not add up). A layer timed while the
machine ran slow is timed again (:mod:`rankopt.latency._units`).

Measurements are cached on disk (JSON, ``schema_version``) in ``$RANKOPT_CACHE_DIR/latency``
(else ``~/.cache/rankopt/latency``), a file per machine (OS, architecture, CPU), torch version,
threads and dtype, keyed inside by model (fingerprint, input shape), batch size, layer and
method: a second run, or a new method, only measures what is missing.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rankopt.errors import SettingsError
from rankopt.evaluators import ModelProfile, profile
from rankopt.latency._entries import load_cache, missing_units, ratio_curves
from rankopt.latency._grid import (
    machine_signature,
    rank_grid,
    time_interleaved_ms,
    time_swapped_ms,
)
from rankopt.latency._measure import timing_threads
from rankopt.latency._plans import PLAN_TIME_FACTOR, table_plan_scales
from rankopt.latency._runtimes import DEFAULT_LATENCY_THREADS, get_runtime
from rankopt.latency._units import measure_units, timed_rounds
from rankopt.plan import model_fingerprint
from rankopt.spaces import LayerInfo, get_method, list_methods
from rankopt.storage import atomic_write, default_cache_dir

__all__ = [
    "LATENCY_SCHEMA_VERSION",
    "LatencyTable",
    "latency_table",
    "machine_signature",
    "rank_grid",
    "time_interleaved_ms",
    "time_swapped_ms",
]

LATENCY_SCHEMA_VERSION = 5
MIN_TIMED_S = 0.3
"""Each variant is timed for at least this long in all (more rounds at small batches)."""

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, what)`` called after each measured unit."""


class _LayerPlanLike(Protocol):
    @property
    def layer(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def ranks(self) -> Mapping[str, int]: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class LatencyTable:
    """Measured per-layer latencies of one model on this machine (see the module docstring).

    Attributes:
        layers: The profiled layers by name (eligible ones).
        batch_sizes: Batch sizes measured.
        methods: Methods measured (where they support a layer).
        dense_ms: ``(layer, batch_size) -> latency_ms`` of the dense layer: the whole
            model's time apportioned by MACs share.
        curves: ``(layer, method, batch_size) -> ((macs, ratio_to_dense), ...)`` in
            increasing MACs, measured inside the model.
        model_ms: ``batch_size -> latency_ms`` of the whole dense model.
        n_threads: Torch intra-op threads during the measurements.
        runtime: Name of the runtime measured on (:data:`rankopt.latency._runtimes.RUNTIMES`).
        rank_multiple: The grid's ranks are multiples of this.
        cache_path: The JSON file the measurements were read from / written to.
        plan_scale: ``batch_size -> s``: every layer's predicted change is ``s`` times its
            measured single-swap change, ``s`` fitted on whole plans
            (:mod:`rankopt.latency._plans`); 1 where absent.
        plan_error: ``batch_size -> e``: those plans' scaled predictions erred by <= ``e``
            (a fraction of their measured times; nan: unknown).
    """

    layers: Mapping[str, LayerInfo]
    batch_sizes: tuple[int, ...]
    methods: tuple[str, ...]
    dense_ms: Mapping[tuple[str, int], float]
    curves: Mapping[tuple[str, str, int], tuple[tuple[int, float], ...]]
    model_ms: Mapping[int, float]
    n_threads: int
    runtime: str = "torch"
    rank_multiple: int = 1
    cache_path: Path | None = None
    plan_scale: Mapping[int, float] = field(default_factory=dict)
    plan_error: Mapping[int, float] = field(default_factory=dict)

    def with_layers(self, layers: Mapping[str, LayerInfo]) -> LatencyTable:
        """The table of the same model with some layers changed in shape (channel pruning).

        A changed layer's dense time scales with its MACs (``s = new / old``), its curves keep
        their ratios at the same share of the layer's MACs (each point's MACs times ``s``),
        and the model's time loses what its layers lose. Layers not in the table (ineligible
        ones) are not counted, so a pruned model is never predicted faster than that.

        Args:
            layers: New :class:`LayerInfo` by name (layers of the table only are used).
        """
        scale = {
            n: layers[n].macs / info.macs
            for n, info in self.layers.items()
            if n in layers and info.macs > 0
        }
        dense_ms = {(n, b): ms * scale.get(n, 1.0) for (n, b), ms in self.dense_ms.items()}
        curves = {
            (n, m, b): tuple((round(x * scale.get(n, 1.0)), y) for x, y in pts)
            for (n, m, b), pts in self.curves.items()
        }
        model_ms = {
            b: ms - sum(self.dense_ms[(n, b)] - dense_ms[(n, b)] for n in scale)
            for b, ms in self.model_ms.items()
        }
        changed = {n: layers[n] for n in scale}
        return dataclasses.replace(
            self,
            layers={**self.layers, **changed},
            dense_ms=dense_ms,
            curves=curves,
            model_ms=model_ms,
        )

    def _check(self, layer_name: str, batch_size: int) -> LayerInfo:
        if layer_name not in self.layers:
            raise SettingsError(
                f"layer {layer_name!r} is not in the latency table; it has {sorted(self.layers)}"
            )
        if batch_size not in self.batch_sizes:
            raise SettingsError(
                f"batch_size={batch_size} was not measured; the table has {self.batch_sizes}"
            )
        return self.layers[layer_name]

    def dense_layer_ms(self, layer_name: str, batch_size: int = 1) -> float:
        """Measured latency_ms of the dense layer at ``batch_size``.

        Raises:
            SettingsError: unknown layer or batch size.
        """
        self._check(layer_name, batch_size)
        return self.dense_ms[(layer_name, batch_size)]

    def predict_layer_ms(
        self,
        layer_name: str,
        method: str,
        ranks: Mapping[str, int],
        options: Mapping[str, Any] | None = None,
        batch_size: int = 1,
    ) -> float:
        """Predicted latency_ms of the layer replaced by ``method`` at ``ranks``.

        ``keep`` gives the dense layer's time. Otherwise the ratio to dense is interpolated
        in the module's analytic MACs between the measured grid points.

        Raises:
            SettingsError: unknown layer / batch size, or the method was not measured there.
        """
        layer = self._check(layer_name, batch_size)
        dense = self.dense_ms[(layer_name, batch_size)]
        if method == "keep":
            return dense
        curve = self.curves.get((layer_name, method, batch_size))
        if not curve:
            measured = sorted(m for (n, m, b) in self.curves if n == layer_name and b == batch_size)
            raise SettingsError(
                f"method {method!r} was not measured for layer {layer_name!r}; measured are "
                f"{measured}"
            )
        macs = get_method(method).macs(layer, ranks, options)
        xs = [float(p[0]) for p in curve]
        ys = [p[1] for p in curve]
        if len(xs) == 1:
            ratio = ys[0] * macs / xs[0] if xs[0] > 0 else ys[0]
        elif macs > xs[-1]:
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            ratio = ys[-1] + slope * (macs - xs[-1])
        else:
            ratio = float(np.interp(macs, xs, ys))
        return dense + self.plan_scale.get(batch_size, 1.0) * (ratio - 1.0) * dense

    def predict_model_ms(self, plan_layers: Iterable[_LayerPlanLike], batch_size: int = 1) -> float:
        """Predicted latency_ms of the whole model with ``plan_layers`` applied.

        Measured dense model time plus, per layer not kept, predicted minus dense layer time.

        Args:
            plan_layers: ``LayerPlan`` objects (``plan.layers``); absent layers stay dense.
            batch_size: A measured batch size.

        Raises:
            SettingsError: unknown layer / batch size or unmeasured method.
        """
        if batch_size not in self.model_ms:
            raise SettingsError(
                f"batch_size={batch_size} was not measured; the table has {self.batch_sizes}"
            )
        total = self.model_ms[batch_size]
        for lp in plan_layers:
            if lp.method == "keep":
                continue
            total += self.predict_layer_ms(
                lp.layer, lp.method, lp.ranks, lp.options, batch_size
            ) - self.dense_layer_ms(lp.layer, batch_size)
        return total


def _dense_model_ms(entry: Mapping[str, Any]) -> float:
    """The dense model's latency_ms at one batch size: the median over every measured
    layer's rounds (one layer's rounds alone can catch the machine slow)."""
    refs = [
        float(found["model_ms"])
        for per_layer in entry.get("layers", {}).values()
        for found in per_layer.values()
    ]
    return float(statistics.median(refs)) if refs else float(entry["model_ms"])


def _cache_file(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8)
    return cache_dir / "latency" / f"{digest.hexdigest()}.json"


def latency_table(
    model: nn.Module,
    input_shape: tuple[int, ...],
    methods: Sequence[str] | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    n_grid: int = 6,
    n_warmup: int = 3,
    n_runs: int = 15,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    progress: ProgressFn | None = None,
    model_profile: ModelProfile | None = None,
    runtime: str = "torch",
    rank_multiple: int = 1,
    min_timed_s: float = MIN_TIMED_S,
    n_threads: int | None = DEFAULT_LATENCY_THREADS,
) -> LatencyTable:
    """Measure (or load from the disk cache) the latency table of ``model`` on this machine.

    Runs at ``n_threads`` intra-op threads (default 1), on CPU, in float32.

    Args:
        model: The dense model (only its shapes matter; it is not modified).
        input_shape: One input, e.g. ``(1, 28, 28)``.
        methods: Methods to measure (default: every registered one but ``keep``); each layer
            gets those that support it.
        batch_sizes: Batch sizes (>= 1 each).
        n_grid: Rank grid points per layer and method (>= 2).
        n_warmup: Untimed rounds before each interleaved measurement.
        n_runs: Timed rounds (the median is kept).
        cache_dir: Cache root (default ``$RANKOPT_CACHE_DIR`` or ``~/.cache/rankopt``).
        refresh: Measure everything again, ignoring cached entries.
        progress: Called as ``progress(done, total, what)`` after each measured unit.
        model_profile: ``profile(model, input_shape)`` when the caller has it already.
        runtime: Where to measure: ``"torch"`` (eager PyTorch) or ``"onnxruntime"`` (the
            model exported to ONNX, as ``rankopt apply --out x.onnx`` writes it).
        rank_multiple: Grid ranks rounded to multiples of this (as the search rounds them;
            measured and cached apart from other multiples).
        min_timed_s: Each variant is timed for at least this many seconds in all (more
            rounds than ``n_runs`` when the model is fast, at most ``_latency_units.MAX_RUNS``).
        n_threads: Intra-op threads while timing (default 1, steady on a shared or small
            machine; None: torch's current count); at most the usable cores
            (:func:`rankopt.evaluators.check_latency_threads`). Cached apart per count.

    Returns:
        The :class:`LatencyTable`.

    Raises:
        SettingsError: bad batch sizes, grid or run counts.
        UnknownNameError: an unknown method or runtime.
        RankoptError: the runtime's packages are not installed.
    """
    if not batch_sizes or min(batch_sizes) < 1 or min(n_grid - 1, n_runs, rank_multiple) < 1:
        raise SettingsError(
            f"batch_sizes={list(batch_sizes)} must be non-empty and >= 1, n_grid={n_grid} "
            f">= 2, n_runs={n_runs} >= 1, rank_multiple={rank_multiple} >= 1"
        )
    methods = tuple(m for m in (methods or list_methods()) if m != "keep")
    for m in methods:
        get_method(m)
    rt = get_runtime(runtime)
    rt.check_available()
    with timing_threads(n_threads):
        n_threads = torch.get_num_threads()
        key = {**machine_signature(), **rt.signature(), "threads": n_threads, "dtype": "float32"}
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = _cache_file(root, key)
        data = load_cache(path, key, LATENCY_SCHEMA_VERSION, refresh)

        prof = model_profile if model_profile is not None else profile(model, input_shape)
        layers = {layer.name: layer for layer in prof.eligible_layers}
        model_key = f"{model_fingerprint(model)}:{tuple(input_shape)}"
        entries = data["models"].setdefault(model_key, {})

        def stored(method: str) -> str:  # the method's key in the cache for this rank multiple
            return method if rank_multiple == 1 else f"{method}@x{rank_multiple}"

        todo = missing_units(entries, layers, methods, batch_sizes, stored)
        # One CPU float32 copy of the dense model, made only when something is measured.
        host = functools.cache(lambda: copy.deepcopy(model).cpu().float().eval())
        if todo:  # slow units (the machine busy) are timed again (_latency_units)
            measure_units(
                rt,
                host(),
                layers,
                todo,
                entries,
                tuple(input_shape),
                stored,
                n_grid=n_grid,
                n_warmup=n_warmup,
                n_runs=n_runs,
                min_timed_s=min_timed_s,
                rank_multiple=rank_multiple,
                progress=progress,
            )
        model_ms = {bs: _dense_model_ms(entries[str(bs)]) for bs in batch_sizes}
        dense_ms, curves = ratio_curves(entries, layers, methods, model_ms, prof.macs, stored)
        table = LatencyTable(
            layers=layers,
            batch_sizes=tuple(batch_sizes),
            methods=methods,
            dense_ms=dense_ms,
            curves=curves,
            model_ms=model_ms,
            n_threads=n_threads,
            runtime=rt.name,
            rank_multiple=rank_multiple,
            cache_path=path,
        )
        # Whole plans timed once per rank multiple: what swaps save together (_latency_plans)
        scales, errors, calibrated = table_plan_scales(
            table,
            host,
            input_shape,
            entries,
            f"x{rank_multiple}",
            n_grid=n_grid,
            n_warmup=n_warmup,
            runs_for=lambda bs: timed_rounds(n_runs, PLAN_TIME_FACTOR * min_timed_s, model_ms[bs]),
            time_models_ms=rt.time_models_ms,
        )
        if todo or calibrated:
            atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
        return dataclasses.replace(table, plan_scale=scales, plan_error=errors)
