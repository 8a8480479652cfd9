"""Compression plans: which channels stay and which method and ranks each layer gets, as JSON.

A :class:`CompressionPlan` records one per-layer choice for one model (identified by a
fingerprint of its parameter names and shapes). :func:`apply_plan` builds the compressed
model from it. Plans are validated on load; every error names the field, the value and the
rule.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from rankopt.errors import InvalidPlanError
from rankopt.pruning import ChannelPruning

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "ChannelPruning",
    "CompressionPlan",
    "LayerPlan",
    "model_fingerprint",
]

SCHEMA_VERSION = 2
"""Version 2 added ``pruning`` (structured channel pruning before the decompositions)."""
READABLE_SCHEMA_VERSIONS = (1, 2)
"""Plans of these versions load (a version-1 plan prunes nothing)."""


def model_fingerprint(model: nn.Module) -> str:
    """Hash of a model's parameter names and shapes (16 hex digits).

    Two models with the same architecture share a fingerprint whatever their weights;
    a plan made for one applies to the other.
    """
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(f"{name}:{tuple(param.shape)};".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LayerPlan:
    """The choice for one layer.

    Attributes:
        layer: Qualified module name (``"layer1.0.conv1"``).
        method: Registered method name; ``"keep"`` leaves the layer dense.
        ranks: Rank name -> value, e.g. ``{"r_in": 12, "r_out": 16}``; empty for ``keep``.
        options: Method options, e.g. GKPD factor shape ``{"t1": 4, "s1": 4}``.
        weight_shape: Shape of the dense weight the plan was made for.
        full_ranks: Rank name -> its full (largest meaningful) value for this layer and
            method, recorded when the plan is made so that readers (figures, reports) need
            not know each method's rank rule; empty when not recorded (older plans).
    """

    layer: str
    method: str
    ranks: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    weight_shape: tuple[int, ...] = ()
    full_ranks: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (keys sorted on dump); ``full_ranks`` only when recorded."""
        out: dict[str, Any] = {
            "layer": self.layer,
            "method": self.method,
            "ranks": {k: int(v) for k, v in sorted(self.ranks.items())},
            "options": _jsonable(dict(sorted(self.options.items()))),
            "weight_shape": list(self.weight_shape),
        }
        if self.full_ranks:
            out["full_ranks"] = {k: int(v) for k, v in sorted(self.full_ranks.items())}
        return out

    def summary(self) -> str:
        """Short text such as ``tucker2(r_in=4,r_out=8)`` or ``keep``."""
        if not self.ranks:
            return self.method
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.ranks.items()))
        return f"{self.method}({inner})"


@dataclass(frozen=True)
class CompressionPlan:
    """A per-layer decomposition choice for one model, after optional channel pruning.

    Layers the plan does not list stay dense. With ``pruning``, the listed channel groups
    lose their other channels first, and ``layers`` describe the pruned layers (their
    ``weight_shape`` is the pruned one).

    Attributes:
        model_name: Name of the model the plan was made for (informative).
        fingerprint: :func:`model_fingerprint` of that model; checked by :func:`apply_plan`.
        input_shape: Shape of one input image, ``(C, H, W)``.
        layers: The per-layer choices.
        metrics: Measured numbers (``accuracy``, ``macs``, ``n_params``, ...).
        provenance: Where the plan came from (``study``, ``trial``, ``rankopt_version``).
        schema_version: Version of the JSON layout.
        pruning: Channel groups pruned before the decompositions (model order).
    """

    model_name: str
    fingerprint: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerPlan, ...]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    pruning: tuple[ChannelPruning, ...] = ()

    def layer(self, name: str) -> LayerPlan | None:
        """The plan for layer ``name``, or None when it stays dense."""
        for lp in self.layers:
            if lp.layer == name:
                return lp
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "schema_version": self.schema_version,
            "model": {"name": self.model_name, "fingerprint": self.fingerprint},
            "input_shape": list(self.input_shape),
            "layers": [lp.to_dict() for lp in self.layers],
            "pruning": [p.to_dict() for p in self.pruning],
            "metrics": _jsonable(dict(self.metrics)),
            "provenance": _jsonable(dict(self.provenance)),
        }

    def to_json(self) -> str:
        """Deterministic standard JSON text (sorted keys, 2-space indent, trailing newline).

        Non-finite metric values are written as ``null``.
        """
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON to ``path`` and return the path.

        Raises:
            InvalidPlanError: the file cannot be written (the message names the path).
        """
        path = Path(path)
        try:
            path.write_text(self.to_json(), encoding="utf-8")
        except OSError as exc:
            raise InvalidPlanError(
                f"cannot write plan file {str(path)!r}: {exc.strerror or exc}"
            ) from None
        return path

    @classmethod
    def from_dict(cls, data: Any) -> CompressionPlan:
        """Validate and build a plan from its dict form.

        Raises:
            InvalidPlanError: a field is missing or has the wrong type or value; the message
                names the field.
        """
        return _parse_plan(data)

    @classmethod
    def from_json(cls, text: str) -> CompressionPlan:
        """Parse JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidPlanError(f"plan is not valid JSON: {exc}") from None
        return _parse_plan(data)

    @classmethod
    def load(cls, path: str | Path) -> CompressionPlan:
        """Read a plan JSON file.

        Raises:
            InvalidPlanError: the file is missing, unreadable, or not a valid plan.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidPlanError(f"cannot read plan file {str(path)!r}: {exc}") from None
        try:
            return cls.from_json(text)
        except InvalidPlanError as exc:
            raise InvalidPlanError(f"{path}: {exc}") from None


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so metrics hold only standard JSON types.

    NaN and infinities (which standard JSON cannot hold) become ``None``.
    """
    return _finite(json.loads(json.dumps(value, default=float)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------ parsing
def _expect(cond: bool, field_name: str, value: Any, rule: str) -> None:
    if not cond:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise InvalidPlanError(f"plan field {field_name!r} = {shown}: {rule}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_layer(data: Any, where: str) -> LayerPlan:
    _expect(isinstance(data, dict), where, data, "must be an object")
    for key in ("layer", "method"):
        _expect(key in data, f"{where}.{key}", None, "is required")
        _expect(
            isinstance(data[key], str) and data[key] != "",
            f"{where}.{key}",
            data[key],
            "must be a non-empty string",
        )
    ranks = data.get("ranks", {})
    _expect(isinstance(ranks, dict), f"{where}.ranks", ranks, "must be an object")
    for k, v in ranks.items():
        _expect(_is_int(v), f"{where}.ranks.{k}", v, "must be an integer")
    options = data.get("options", {})
    _expect(isinstance(options, dict), f"{where}.options", options, "must be an object")
    shape = data.get("weight_shape", [])
    _expect(
        isinstance(shape, list) and all(_is_int(s) and s > 0 for s in shape),
        f"{where}.weight_shape",
        shape,
        "must be a list of positive integers",
    )
    full = data.get("full_ranks", {})
    _expect(isinstance(full, dict), f"{where}.full_ranks", full, "must be an object")
    for k, v in full.items():
        _expect(_is_int(v) and v >= 1, f"{where}.full_ranks.{k}", v, "must be an integer >= 1")
    return LayerPlan(
        layer=data["layer"],
        method=data["method"],
        ranks={str(k): int(v) for k, v in ranks.items()},
        options=dict(options),
        weight_shape=tuple(shape),
        full_ranks={str(k): int(v) for k, v in full.items()},
    )


def _parse_pruning(data: Any, where: str) -> ChannelPruning:
    _expect(isinstance(data, dict), where, data, "must be an object {group, n_channels, kept}")
    group, n, kept = data.get("group"), data.get("n_channels"), data.get("kept")
    _expect(isinstance(group, str) and group != "", f"{where}.group", group, "must be a layer name")
    _expect(_is_int(n) and n >= 1, f"{where}.n_channels", n, "must be an integer >= 1")
    _expect(
        isinstance(kept, list)
        and len(kept) >= 1
        and all(_is_int(i) and 0 <= i < n for i in kept)
        and len(set(kept)) == len(kept),
        f"{where}.kept",
        kept,
        f"must be distinct channel indices in 0..{n - 1}, at least one",
    )
    return ChannelPruning(group, n, tuple(sorted(kept)))


def _parse_plan(data: Any) -> CompressionPlan:
    _expect(isinstance(data, dict), "(root)", data, "a plan must be a JSON object")
    version = data.get("schema_version")
    _expect(
        version in READABLE_SCHEMA_VERSIONS and _is_int(version),
        "schema_version",
        version,
        f"this rankopt reads schema_version {' or '.join(map(str, READABLE_SCHEMA_VERSIONS))}",
    )
    model = data.get("model")
    _expect(isinstance(model, dict), "model", model, "must be an object {name, fingerprint}")
    for key in ("name", "fingerprint"):
        _expect(isinstance(model.get(key), str), f"model.{key}", model.get(key), "must be a string")
    shape = data.get("input_shape")
    _expect(
        isinstance(shape, list) and len(shape) >= 1 and all(_is_int(s) and s > 0 for s in shape),
        "input_shape",
        shape,
        "must be a non-empty list of positive integers, e.g. [1, 28, 28]",
    )
    layers = data.get("layers")
    _expect(isinstance(layers, list), "layers", layers, "must be a list")
    parsed = tuple(_parse_layer(item, f"layers[{i}]") for i, item in enumerate(layers))
    names = [lp.layer for lp in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    _expect(not dupes, "layers", dupes, "each layer may appear once")
    for key in ("metrics", "provenance"):
        _expect(isinstance(data.get(key, {}), dict), key, data.get(key), "must be an object")
    pruning = data.get("pruning", [])
    _expect(isinstance(pruning, list), "pruning", pruning, "must be a list")
    groups = tuple(_parse_pruning(item, f"pruning[{i}]") for i, item in enumerate(pruning))
    group_names = [g.group for g in groups]
    _expect(len(set(group_names)) == len(group_names), "pruning", group_names, "each group once")
    return CompressionPlan(
        model_name=model["name"],
        fingerprint=model["fingerprint"],
        input_shape=tuple(shape),
        layers=parsed,
        metrics=dict(data.get("metrics", {})),
        provenance=dict(data.get("provenance", {})),
        pruning=groups,
    )
