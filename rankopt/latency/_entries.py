"""The cached latency table's entries: loading the cache file, the units still to measure,
and each layer's ratio curves (used by :mod:`._table`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rankopt.latency._grid import monotone_ratios
from rankopt.spaces import LayerInfo, get_method

__all__ = ["load_cache", "missing_units", "ratio_curves"]


def load_cache(
    path: Path, key: Mapping[str, Any], schema_version: int, refresh: bool
) -> dict[str, Any]:
    """The cache file's data when it is of this schema and key, else an empty table."""
    data: dict[str, Any] = {"schema_version": schema_version, "key": key, "models": {}}
    if not refresh and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text())
            if loaded.get("schema_version") == schema_version and loaded.get("key") == key:
                data = loaded
    return data


def missing_units(
    entries: Mapping[str, Any],
    layers: Mapping[str, LayerInfo],
    methods: Sequence[str],
    batch_sizes: Sequence[int],
    stored: Callable[[str], str],
) -> dict[tuple[int, str], list[str]]:
    """Work still missing: ``(batch_size, layer) -> methods`` to measure."""
    todo: dict[tuple[int, str], list[str]] = {}
    for bs in batch_sizes:
        entry = entries.get(str(bs), {})
        for name, layer in layers.items():
            have = entry.get("layers", {}).get(name, {})
            wanted = [m for m in methods if get_method(m).supports(layer) and stored(m) not in have]
            if wanted or "model_ms" not in entry:
                todo[(bs, name)] = wanted
    return todo


def ratio_curves(
    entries: Mapping[str, Any],
    layers: Mapping[str, LayerInfo],
    methods: Sequence[str],
    model_ms: Mapping[int, float],
    model_macs: int,
    stored: Callable[[str], str],
) -> tuple[dict[tuple[str, int], float], dict[tuple[str, str, int], tuple[tuple[int, float], ...]]]:
    """Each layer's dense share of the model time and each (layer, method, batch)'s ratio
    curve: the change vs the dense model of the same rounds, scaled to the table's dense time
    (the machine's speed drifts between layers' rounds)."""
    dense_ms: dict[tuple[str, int], float] = {}
    curves: dict[tuple[str, str, int], tuple[tuple[int, float], ...]] = {}
    for name, layer in layers.items():
        for bs, total_ms in model_ms.items():
            share = total_ms * max(layer.macs, 1) / max(model_macs, 1)
            dense_ms[(name, bs)] = share
            found_layer = entries[str(bs)].get("layers", {}).get(name, {})
            for m in methods:
                found = found_layer.get(stored(m))
                if found and found["points"]:
                    ref = float(found["model_ms"])
                    measured = sorted(
                        (
                            int(p["macs"]),
                            (share + (float(p["model_ms"]) - ref) * total_ms / ref) / share,
                        )
                        for p in found["points"]
                    )
                    curves[(name, m, bs)] = monotone_ratios(measured)
    return dense_ms, curves


def _ratio(share_ms: float, change_ms: float, scale: float) -> float:
    """A grid point's latency ratio: the layer's dense share plus the measured change."""
    return (share_ms + change_ms * scale) / share_ms
