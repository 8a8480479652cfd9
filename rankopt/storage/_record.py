"""The study record: what a search says about its study, typed, written once (JSON on disk).

The search builds one :class:`StudyRecord` and writes it into the study's user attributes
(:meth:`StudyRecord.to_user_attrs`: one attribute per field, ``schema_version`` among them),
where Optuna keeps it and optuna-dashboard shows it under the study's user attributes. The
readers (export, front, figures, report, summary) read it back with :meth:`StudyRecord.of`
instead of string keys.

Schema versions: 1, studies written before the record existed (the same attributes,
without ``schema_version``); 2, the record. Both read the same way; a field an old study
lacks reads as None (or empty).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STUDY_SCHEMA_VERSION", "DenseReference", "StudyRecord"]

STUDY_SCHEMA_VERSION = 2
"""Version of :class:`StudyRecord` the search writes (1: before the record, no version key)."""

_RECORD_KEYS = (
    "schema_version",
    "rankopt_version",
    "model",
    "data",
    "fingerprint",
    "input_shape",
    "dense",
    "budget",
    "objectives",
    "settings",
)


@dataclass(frozen=True)
class DenseReference:
    """The dense model the study compresses, measured once by the search.

    Attributes:
        accuracy: Validation accuracy (fraction).
        macs: Multiply-accumulates per image.
        n_params: Parameter count.
        latency_ms: Whole-model latency in milliseconds by batch size (empty when the
            search measured none).
    """

    accuracy: float | None = None
    macs: int | None = None
    n_params: int | None = None
    latency_ms: Mapping[int, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """``{"accuracy", "macs", "n_params"}`` as floats, leaving out what is unknown."""
        out = {"accuracy": self.accuracy, "macs": self.macs, "n_params": self.n_params}
        return {k: float(v) for k, v in out.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accuracy": self.accuracy,
            "macs": self.macs,
            "n_params": self.n_params,
        }
        if self.latency_ms:
            out["latency_ms"] = {str(b): ms for b, ms in self.latency_ms.items()}
        return out


@dataclass(frozen=True)
class StudyRecord:
    """Everything the search records about its study (not its trials).

    Attributes:
        model: The model's name as the search was given it.
        data: The data's name.
        fingerprint: The dense model's fingerprint (a resumed study must match it).
        input_shape: One image's shape, ``(C, H, W)``.
        dense: The dense reference.
        max_macs: MACs budget (absolute), None when unlimited.
        max_params: Parameter budget (absolute), None when unlimited.
        max_latency_ms: ``((batch_size, latency_ms), ...)``; empty when unlimited.
        latency_cap_ms: ``((batch_size, latency_ms), ...)``: the cap that keeps plans no
            slower than dense (:func:`rankopt.budget.latency_cap`); empty when none.
        objectives: The study's objectives, accuracy first (also Optuna's metric names).
        settings: The search's settings as :meth:`SearchSettings.to_study_attr` writes them.
        rankopt_version: The version that created the study.
        schema_version: 1 for studies from before the record, else :data:`STUDY_SCHEMA_VERSION`.
    """

    model: str | None = None
    data: str | None = None
    fingerprint: str | None = None
    input_shape: tuple[int, ...] = ()
    dense: DenseReference = field(default_factory=DenseReference)
    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: tuple[tuple[int, float], ...] = ()
    latency_cap_ms: tuple[tuple[int, float], ...] = ()
    objectives: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    rankopt_version: str | None = None
    schema_version: int = STUDY_SCHEMA_VERSION

    def budget_json(self) -> dict[str, Any]:
        """The ``budget`` attribute: ``max_macs``, ``max_params`` and, when the search had a
        latency table, ``max_latency_ms`` and ``latency_cap_ms`` as ``[[batch_size, ms], ...]``
        (the latter when set)."""
        out: dict[str, Any] = {"max_macs": self.max_macs, "max_params": self.max_params}
        if self.max_latency_ms or self.latency_cap_ms:
            out["max_latency_ms"] = [list(p) for p in self.max_latency_ms]
        if self.latency_cap_ms:
            out["latency_cap_ms"] = [list(p) for p in self.latency_cap_ms]
        return out

    def to_user_attrs(self) -> dict[str, Any]:
        """The study user attributes that hold the record (JSON values)."""
        return {
            "schema_version": self.schema_version,
            "rankopt_version": self.rankopt_version,
            "model": self.model,
            "data": self.data,
            "fingerprint": self.fingerprint,
            "input_shape": list(self.input_shape),
            "dense": self.dense.to_json(),
            "budget": self.budget_json(),
            "objectives": list(self.objectives),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_user_attrs(cls, attrs: Mapping[str, Any]) -> StudyRecord:
        """The record in a study's user attributes, any schema version; what is missing or
        malformed reads as None / empty (a study made by hand, or an old one)."""
        dense = _dict(attrs.get("dense"))
        budget = _dict(attrs.get("budget"))
        return cls(
            model=_str(attrs.get("model")),
            data=_str(attrs.get("data")),
            fingerprint=_str(attrs.get("fingerprint")),
            input_shape=tuple(int(n) for n in _list(attrs.get("input_shape"))),
            dense=DenseReference(
                accuracy=_number(dense.get("accuracy")),
                macs=_count(dense.get("macs")),
                n_params=_count(dense.get("n_params")),
                latency_ms={int(b): float(ms) for b, ms in _dict(dense.get("latency_ms")).items()},
            ),
            max_macs=_count(budget.get("max_macs")),
            max_params=_count(budget.get("max_params")),
            max_latency_ms=_pairs(budget.get("max_latency_ms")),
            latency_cap_ms=_pairs(budget.get("latency_cap_ms")),
            objectives=tuple(str(o) for o in _list(attrs.get("objectives"))),
            settings=_dict(attrs.get("settings")),
            rankopt_version=_str(attrs.get("rankopt_version")),
            schema_version=int(attrs.get("schema_version", 1)),
        )

    @classmethod
    def of(cls, study: Any) -> StudyRecord:
        """The record of an Optuna study (reads its user attributes once)."""
        return cls.from_user_attrs(study.user_attrs)

    @staticmethod
    def keys() -> tuple[str, ...]:
        """The user attribute names the record occupies."""
        return _RECORD_KEYS


def _dict(value: Any) -> dict[Any, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _pairs(value: Any) -> tuple[tuple[int, float], ...]:
    return tuple((int(p[0]), float(p[1])) for p in _list(value))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)
