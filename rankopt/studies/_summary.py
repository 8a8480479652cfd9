"""The recommended plan in a few numbers, and the commands that reproduce it.

Computed here once, rendered by the HTML report (its first screen) and by the closing lines
of ``rankopt search``: what the plan gains over the dense model, its per-layer methods, and
the ``rankopt export`` / ``apply`` / ``finetune`` commands written as a user types them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial

from rankopt._defaults import DEFAULT_DATA, DEFAULT_MODEL
from rankopt.errors import BudgetError, SelectionError
from rankopt.storage import SEED_ATTR, StudyRecord

from . import _methods
from ._front import _float, dense_metrics, layer_label, pruning_labels

__all__ = ["LayerChoice", "PlanSummary", "next_commands", "plan_summary"]


@dataclass(frozen=True)
class LayerChoice:
    """One layer of the recommended plan.

    Attributes:
        layer: Module name, e.g. ``"layer1.0.conv1"``.
        method: Method name (``"tucker2"``, ``"keep"``, ...).
        label: The method's label, e.g. ``"Tucker-2"``.
        short: Compact form, e.g. ``"T2(4,8)"`` or ``"keep"``.
        rank_fraction: Mean rank / full rank (1.0 kept dense; NaN unknown).
    """

    layer: str
    method: str
    label: str
    short: str
    rank_fraction: float


@dataclass(frozen=True)
class PlanSummary:
    """What the recommended plan gains over the dense model.

    Attributes:
        trial: Trial number of the recommended plan.
        seed: Seed name when the trial was an enqueued seed, else ``""``.
        accuracy: Validation accuracy after the proxy fine-tune, in [0, 1].
        dense_accuracy: The dense model's validation accuracy (NaN when unknown).
        macs_ratio: MACs / dense MACs.
        params_ratio: Parameters / dense parameters.
        macs: MACs per image.
        n_params: Parameters.
        latency_ratio: ``batch size -> latency / dense latency`` where the study has both
            (predicted by the latency table, or measured at batch 1); empty otherwise.
        latency_source: ``"predicted"`` or ``"measured"`` (``""`` without latency).
        layers: The plan's layers in model order.
        pruned: ``(group, "kept/dense")`` of each pruned channel group.
    """

    trial: int
    seed: str
    accuracy: float
    dense_accuracy: float
    macs_ratio: float
    params_ratio: float
    macs: float
    n_params: float
    latency_ratio: Mapping[int, float] = field(default_factory=dict)
    latency_source: str = ""
    layers: tuple[LayerChoice, ...] = ()
    pruned: tuple[tuple[str, str], ...] = ()

    @property
    def accuracy_change_points(self) -> float:
        """Accuracy minus dense accuracy, in percentage points (NaN when dense is unknown)."""
        return 100.0 * (self.accuracy - self.dense_accuracy)

    def gains(self) -> str:
        """One line: ``accuracy 98.20 % (-0.40 points vs dense), MACs 44.9 % of dense, ...``."""
        parts = [f"accuracy {100 * self.accuracy:.2f} %"]
        if math.isfinite(self.dense_accuracy):
            parts[0] += f" ({self.accuracy_change_points:+.2f} points vs dense)"
        parts.append(f"MACs {100 * self.macs_ratio:.1f} % of dense")
        if self.latency_ratio:
            lat = ", ".join(
                f"{100 * r:.0f} % at batch {b}" for b, r in sorted(self.latency_ratio.items())
            )
            parts.append(f"{self.latency_source} latency {lat}")
        parts.append(f"params {100 * self.params_ratio:.1f} %")
        return ", ".join(parts)

    def methods_line(self, limit: int = 6) -> str:
        """The decomposed layers, then how many stay dense:
        ``layer1.0.conv1 CP(11), layer2.0.conv2 T2(7,9); 3 layers kept dense``."""
        changed = [f"{c.layer} {c.short}" for c in self.layers if c.method != "keep"]
        kept = len(self.layers) - len(changed)
        line = ", ".join(changed[:limit]) or "no layer decomposed"
        if len(changed) > limit:
            line += f", ... ({len(changed) - limit} more)"
        if kept:
            line += f"; {kept} layer{'s' if kept > 1 else ''} kept dense"
        if self.pruned:
            shown = ", ".join(f"{g} {k}" for g, k in self.pruned[:limit])
            more = f", ... ({len(self.pruned) - limit} more)" if len(self.pruned) > limit else ""
            line = f"channels kept: {shown}{more}; {line}"
        return line


def _latency(trial: FrozenTrial, dense_ms: Mapping[int, float]) -> tuple[dict[int, float], str]:
    """Latency / dense latency per batch size, and where the numbers come from."""
    ratios: dict[int, float] = {}
    for batch, ms in dense_ms.items():
        mine = _float(trial.user_attrs.get(f"latency_ms_batch{batch}"))
        base = _float(ms)
        if math.isfinite(mine) and base > 0:
            ratios[int(batch)] = mine / base
    return ratios, "predicted" if ratios else ""


def plan_summary(study: optuna.Study) -> PlanSummary | None:
    """The recommended trial (:func:`rankopt.studies.select_trial`'s pick) summarised.

    Args:
        study: A loaded study.

    Returns:
        The summary, or None when the study has no recommended trial (no complete trial
        with a plan, or none within the study's budget).
    """
    from ._export import select_trial  # _export builds on _front, as this module does

    try:
        chosen = select_trial(study)
    except (BudgetError, SelectionError):
        return None
    attrs = chosen.user_attrs
    dense = dense_metrics(study)
    macs, n_params = _float(attrs.get("macs")), _float(attrs.get("n_params"))
    macs_ratio = _float(attrs.get("macs_ratio"))
    if math.isnan(macs_ratio) and dense.get("macs"):
        macs_ratio = macs / dense["macs"]
    params_ratio = _float(attrs.get("params_ratio"))
    if math.isnan(params_ratio) and dense.get("n_params"):
        params_ratio = n_params / dense["n_params"]
    latency, source = _latency(chosen, StudyRecord.of(study).dense.latency_ms)
    plan = attrs.get("plan") or {}
    layers = tuple(
        LayerChoice(
            layer=str(e.get("layer", "?")),
            method=str(e.get("method", "?")),
            label=_methods.label(str(e.get("method", "?"))),
            short=layer_label(e),
            rank_fraction=_methods.rank_fraction(e),
        )
        for e in plan.get("layers") or []
    )
    return PlanSummary(
        trial=chosen.number,
        seed=str(attrs.get(SEED_ATTR) or ""),
        accuracy=_float(attrs.get("accuracy", (chosen.values or [math.nan])[0])),
        dense_accuracy=dense.get("accuracy", math.nan),
        macs_ratio=macs_ratio,
        params_ratio=params_ratio,
        macs=macs,
        n_params=n_params,
        latency_ratio=latency,
        latency_source=source,
        layers=layers,
        pruned=tuple(pruning_labels(plan)),
    )


def _model_args(study: optuna.Study) -> list[str]:
    """``--model`` / ``--data`` as the search had them, left out where they are defaults."""
    out: list[str] = []
    record = StudyRecord.of(study)
    defaults = (("--model", record.model, DEFAULT_MODEL), ("--data", record.data, DEFAULT_DATA))
    for flag, value, default in defaults:
        if value and str(value) != default:
            out += [flag, str(value)]
    return out


def _join(words: Sequence[str]) -> str:
    import shlex

    return " ".join(shlex.quote(w) for w in words)


def next_commands(
    study: optuna.Study,
    *,
    study_args: Sequence[str] = (),
    model_args: Sequence[str] | None = None,
    plan_path: str = "plan.json",
) -> list[str]:
    """The commands that export, apply and fine-tune the recommended plan.

    Written as a user types them: ``rankopt export --out plan.json`` (no ``--trial``: export
    picks the recommended plan), then ``apply`` and ``finetune`` with the model and data of
    the search where they are not the defaults.

    Args:
        study: The study.
        study_args: What ``rankopt export`` needs to find the study (empty when the default
            run directory holds only this study), e.g. ``["--study-name", "x"]``.
        model_args: The model and data options of ``apply`` / ``finetune`` (None: ``--model``
            and ``--data`` from the study's attributes where they are not the defaults).
        plan_path: Where the plan is written.

    Returns:
        Three command lines.
    """
    model = _model_args(study) if model_args is None else list(model_args)
    return [
        _join(["rankopt", "export", *study_args, "--out", plan_path]),
        _join(["rankopt", "apply", plan_path, *model, "--out", "small.onnx"]),
        _join(["rankopt", "finetune", plan_path, *model, "--epochs", "5"]),
    ]
