"""A channel-pruned model in the latency table: its time measured, not scaled from MACs.

A pruned conv does not get faster in proportion to its MACs: on ONNX Runtime at 1 thread
resnet8 / Fashion-MNIST pruned to a quarter of its channels in every group (25.7 % of the
MACs) ran at 0.41x / 0.34x dense at batch 1 / 64, where a MACs-proportional table said
0.26x. So the pruned model's own time is measured (interleaved with the dense model, paired
round by round, at the table's threads and batch sizes) once per pruned configuration, and a
decomposition on top of it changes that time as the table's curves say
(:meth:`~rankopt.latency._table.LatencyTable.with_layers`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankopt.latency._entries import load_cache
from rankopt.latency._measure import timing_threads
from rankopt.latency._runtimes import get_runtime
from rankopt.latency._table import LATENCY_SCHEMA_VERSION, MIN_TIMED_S, LatencyTable
from rankopt.latency._units import timed_rounds
from rankopt.plan import model_fingerprint
from rankopt.spaces import LayerInfo
from rankopt.storage import atomic_write

__all__ = ["pruned_table", "time_pair_ms"]

_KEY = {"content": "pruned model / dense model latency ratios"}
"""The side file's key (its machine, threads and torch version are the table file's)."""
N_RUNS = 15
"""Timed rounds at least (more at small batches: each model runs >= ``MIN_TIMED_S``)."""


def time_pair_ms(
    runtime: str, models: Sequence[nn.Module], x: torch.Tensor, n_runs: int
) -> list[float]:
    """Median latency_ms of each model on ``x``, interleaved and paired with the first."""
    return get_runtime(runtime).time_models_ms(models, x, n_warmup=3, n_runs=n_runs, paired=True)


def pruned_table(
    table: LatencyTable,
    dense: nn.Module,
    pruned: nn.Module,
    layers: Mapping[str, LayerInfo],
    input_shape: Sequence[int],
) -> LatencyTable:
    """The table of the pruned model: its layers' shapes (:meth:`LatencyTable.with_layers`)
    and its whole-model time per batch size, measured against the dense model in the same
    rounds and scaled to the table's dense time.

    Args:
        table: The dense model's table.
        dense: The dense model (not modified; timed as a CPU float32 copy).
        pruned: The pruned model (likewise).
        layers: The pruned model's layers by name.
        input_shape: Shape of one image.
    """
    view = table.with_layers(layers)
    shapes = ";".join(f"{n}:{p.shape[0]}" for n, p in pruned.named_parameters() if p.dim() > 1)
    key = f"{model_fingerprint(dense)}|{tuple(input_shape)}|{table.runtime}|{shapes}"
    cache = _cache_file(table)
    stored = _load(cache)["models"].get(key, {})
    ratios = {int(b): float(r) for b, r in stored.items()}
    missing = [b for b in table.batch_sizes if b not in ratios]
    if missing:
        models = [copy.deepcopy(m).to("cpu", torch.float32).eval() for m in (dense, pruned)]
        gen = torch.Generator().manual_seed(0)
        with timing_threads(table.n_threads):
            for batch_size in missing:
                x = torch.randn((batch_size, *input_shape), generator=gen)
                runs = timed_rounds(N_RUNS, MIN_TIMED_S, table.model_ms[batch_size])
                dense_ms, pruned_ms = time_pair_ms(table.runtime, models, x, runs)
                ratios[batch_size] = pruned_ms / dense_ms
        if cache is not None:  # other processes and workers on this machine agree
            everything = _load(cache)  # read again: another process may have added to it
            everything["models"][key] = {str(b): r for b, r in ratios.items()}
            atomic_write(cache, (json.dumps(everything, sort_keys=True) + "\n").encode())
    model_ms = {b: table.model_ms[b] * ratios[b] for b in table.batch_sizes}
    return dataclasses.replace(view, model_ms=model_ms)


def _cache_file(table: LatencyTable) -> Path | None:
    """The pruned models' ratios beside the table's cache file (None: no cache)."""
    if table.cache_path is None:
        return None
    return table.cache_path.with_name(table.cache_path.stem + ".pruned.json")


def _load(path: Path | None) -> dict[str, Any]:
    """The side file's data (``schema_version``, ``key``, ``models``), empty when absent or
    of another schema (read as the table's own cache file is)."""
    empty: dict[str, Any] = {"schema_version": LATENCY_SCHEMA_VERSION, "key": _KEY, "models": {}}
    if path is None:
        return empty
    return load_cache(path, _KEY, LATENCY_SCHEMA_VERSION, refresh=False)
