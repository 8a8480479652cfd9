"""Latency: where a model is timed (runtimes), the per-layer table, the whole-plan scale.

Everything about time lives here: the runtimes (:data:`RUNTIMES`: eager PyTorch, ONNX
Runtime and its in-memory export), the interleaved timing primitives, the rank grids timed
per layer, the cached per-layer table (:func:`latency_table`) with its whole-plan scale,
and one model's latency (:func:`measure_latency_ms`, :func:`compare_latency_ms`). A
decomposition method only says on which runtimes it is latency-friendly, by name
(:meth:`rankopt.spaces.DecompositionMethod.latency_friendly_on`).

The runtimes load eagerly and are light (no torch at import: the command line's
``--latency-runtime`` choices come from here); the rest loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rankopt._lazy import lazy_names
from rankopt.latency._runtimes import (
    DEFAULT_LATENCY_THREADS,
    RUNTIMES,
    LatencyRuntime,
    OnnxRuntime,
    TorchRuntime,
    get_runtime,
)

if TYPE_CHECKING:
    from rankopt.latency._measure import (
        check_latency_threads,
        compare_latency_ms,
        measure_latency_ms,
    )
    from rankopt.latency._onnx import check_onnx, export_onnx, onnx_session, save_model
    from rankopt.latency._pruned import pruned_table
    from rankopt.latency._table import (
        LATENCY_SCHEMA_VERSION,
        LatencyTable,
        latency_table,
        machine_signature,
        rank_grid,
        time_interleaved_ms,
    )

_LAZY: dict[str, str] = {
    "check_latency_threads": "rankopt.latency._measure",
    "compare_latency_ms": "rankopt.latency._measure",
    "measure_latency_ms": "rankopt.latency._measure",
    "check_onnx": "rankopt.latency._onnx",
    "export_onnx": "rankopt.latency._onnx",
    "onnx_session": "rankopt.latency._onnx",
    "save_model": "rankopt.latency._onnx",
    "pruned_table": "rankopt.latency._pruned",
    "LATENCY_SCHEMA_VERSION": "rankopt.latency._table",
    "LatencyTable": "rankopt.latency._table",
    "latency_table": "rankopt.latency._table",
    "machine_signature": "rankopt.latency._table",
    "rank_grid": "rankopt.latency._table",
    "time_interleaved_ms": "rankopt.latency._table",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "DEFAULT_LATENCY_THREADS",
    "LATENCY_SCHEMA_VERSION",
    "RUNTIMES",
    "LatencyRuntime",
    "LatencyTable",
    "OnnxRuntime",
    "TorchRuntime",
    "check_latency_threads",
    "check_onnx",
    "compare_latency_ms",
    "export_onnx",
    "get_runtime",
    "latency_table",
    "machine_signature",
    "measure_latency_ms",
    "onnx_session",
    "pruned_table",
    "rank_grid",
    "save_model",
    "time_interleaved_ms",
]
