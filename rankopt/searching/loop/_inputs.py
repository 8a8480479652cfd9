"""The model and data a search is given: checked, and the tensors every trial shares."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

from rankopt.budget import latency_cap, parse_latency_budget
from rankopt.data import Split
from rankopt.errors import DataError, ModelError, RankoptError, SettingsError
from rankopt.evaluators import ModelProfile, compute_logits, compute_logits_and_labels
from rankopt.latency import RUNTIMES, LatencyTable, get_runtime, latency_table
from rankopt.searching.loop._settings import SearchSettings
from rankopt.searching.objective._memory import release_free_memory
from rankopt.searching.objective._objective import TrialData
from rankopt.spaces import get_method, list_methods

__all__ = [
    "CALIBRATION_IMAGES",
    "Data",
    "check_data",
    "check_labels",
    "latency_budget",
    "prepare_data",
    "study_latency",
]

Data = tuple[torch.Tensor, torch.Tensor]
CALIBRATION_IMAGES = 256
"""Training images that re-estimate BatchNorm statistics and score the sensitivity profile."""


def check_data(name: str, split: Split, input_shape: tuple[int, ...]) -> None:
    images, labels = split.tensors if split.tensors is not None else split.first()
    if images.dim() != len(input_shape) + 1 or tuple(images.shape[1:]) != tuple(input_shape):
        raise RankoptError(
            f"{name} images have shape {tuple(images.shape)}; expected (N, "
            f"{', '.join(map(str, input_shape))}) to match the model input"
        )
    if labels.shape[0] != images.shape[0] or labels.dim() != 1:
        raise RankoptError(
            f"{name} labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},)"
        )


def check_labels(model: nn.Module, train_data: Split, val_data: Split) -> int:
    """Every label must index one of the model's outputs; returns the number of outputs.

    Labels of a ``Dataset`` without ``targets`` are checked when first streamed.
    """
    with torch.no_grad():
        out = model(train_data.first()[0])
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the model returns {shape} for one image; rankopt needs logits of shape "
            "(batch, classes)"
        )
    n_outputs = int(out.shape[1])
    for split in (train_data, val_data):
        check_label_range(split.name, split.known_labels(), n_outputs)
    return n_outputs


def check_label_range(name: str, labels: torch.Tensor | None, n_outputs: int) -> None:
    """Labels must lie in ``[0, n_outputs)``."""
    if labels is not None and labels.numel() > 0:
        low, top = int(labels.min()), int(labels.max())
        if low < 0 or top >= n_outputs:
            raise DataError(
                f"{name} labels range over {low}..{top} ({top + 1} classes) but the model "
                f"has {n_outputs} outputs; labels must lie in [0, {n_outputs}): use data with "
                f"at most {n_outputs} classes or a model with {top + 1} outputs (--num-classes)"
            )


def prepare_data(
    model: nn.Module, train_data: Split, val_data: Split, n_samples: int, seed: int, n_out: int
) -> TrialData:
    """The fine-tune sample in memory; the validation split streamed (labels and logits kept)."""
    train_x, train_y = train_data.sample(n_samples, seed)
    check_label_range("training", train_y, n_out)
    val_x = val_data.tensors[0] if val_data.tensors is not None else val_data.batches()
    val_logits, val_y = compute_logits_and_labels(model, val_x)
    if val_data.tensors is not None:
        val_y = val_data.tensors[1]
    if val_y is None:
        raise DataError(f"validation {val_data.kind} yields no labels")
    check_label_range("validation", val_y, n_out)
    teacher_logits = compute_logits(model, train_x)
    release_free_memory()
    return TrialData(
        train_images=train_x,
        train_labels=train_y,
        teacher_logits=teacher_logits,
        val_images=val_x,
        val_labels=val_y,
        val_teacher_logits=val_logits,
        calibration_images=train_x[:CALIBRATION_IMAGES],
    )


def study_latency(
    model: nn.Module,
    prof: ModelProfile,
    settings: SearchSettings,
    say: Callable[[str], None],
    max_latency: float | str | None,
) -> tuple[LatencyTable | None, dict[str, tuple[tuple[int, float], ...]]]:
    """The study's latency table (None without a runtime) and its budget's latency fields
    (:func:`latency_budget`). A table that errs on whole plans beyond the tolerance stops a
    search with a latency budget or objective (:func:`check_plan_error`); with only the cap,
    one line says so and the cap takes the error off (clamped to the tolerance)."""
    if settings.latency_runtime is None or not prof.eligible_layers:  # nothing to time
        return None, latency_budget(max_latency, None, settings)
    strict = max_latency is not None or "latency_ms" in settings.objectives
    table = measure_latency_table(model, prof, settings, say, strict=strict)
    if not strict and any(e > settings.latency_tolerance for e in table.plan_error.values()):
        say(
            "latency table: its predictions of whole plans erred up to "
            + ", ".join(f"{100 * e:.0f} % (batch {b})" for b, e in sorted(table.plan_error.items()))
            + " on this machine (a busy machine?); the cap that keeps plans no slower than "
            f"dense takes {100 * settings.latency_tolerance:.0f} % off at most"
        )
    return table, latency_budget(max_latency, table, settings)


def measure_latency_table(
    model: nn.Module,
    prof: ModelProfile,
    settings: SearchSettings,
    say: Callable[[str], None],
    *,
    strict: bool = True,
) -> LatencyTable:
    """The per-layer latency table of ``model`` on this machine (from the disk cache when
    it was measured before), for the methods among the search's that are latency-friendly
    on its latency runtime (``latency_friendly_on``), on that runtime, at its rank multiple."""
    methods, runtime = settings.methods, settings.latency_runtime
    assert runtime is not None, "no latency table without a runtime"
    wanted = [
        m
        for m in (methods if methods is not None else list_methods())
        if m != "keep" and get_method(m).latency_friendly_on(runtime)
    ]
    last = [0.0]

    def progress(done: int, total: int, what: str) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done == total:
            say(f"latency table: {done}/{total} measured ({what})")
            last[0] = now

    threads = settings.latency_threads
    say(
        f"latency table on this machine ({get_runtime(runtime).description}, "
        f"{threads} thread{'s' if threads > 1 else ''}; cached on disk)"
    )
    shape = tuple(prof.input_shape)
    table = latency_table(
        model,
        shape,
        wanted,
        progress=progress,
        model_profile=prof,
        runtime=runtime,
        rank_multiple=settings.ranks_multiple_of,
        n_threads=threads,
    )
    say(
        "latency table: whole plans save "
        + ", ".join(f"{s:.2f}x (batch {b})" for b, s in sorted(table.plan_scale.items()))
        + " of what their layers save alone; predictions use that"
        + _fit_note(table.plan_error)
    )
    if strict:
        check_plan_error(table, settings)
    return table


def latency_budget(
    max_latency: float | str | None, table: LatencyTable | None, settings: SearchSettings
) -> dict[str, tuple[tuple[int, float], ...]]:
    """The latency fields of the search's :class:`~rankopt.budget.Budget`: ``max_latency``
    in ms per batch size, and the cap that keeps every plan no slower than dense unless
    ``settings.allow_slower`` (:func:`~rankopt.budget._budget.latency_cap`).

    Raises:
        SettingsError: ``max_latency`` without a latency runtime (no table to predict it).
        BudgetError: ``max_latency`` is malformed, or above dense without ``allow_slower``.
    """
    if table is None:
        if max_latency is not None:
            raise SettingsError(
                f"max_latency = {max_latency!r} needs a latency runtime to predict latency "
                f"on, but latency_runtime = None; choose one of {sorted(RUNTIMES)}"
            )
        return {}
    dense = dict(table.model_ms)
    limits = parse_latency_budget(max_latency, dense)
    margin = {
        b: min(e, settings.latency_tolerance)
        for b, e in table.plan_error.items()
        if math.isfinite(e)
    }
    cap = latency_cap(
        limits, dense, allow_slower=settings.allow_slower, given=max_latency, margin=margin
    )
    return {"max_latency_ms": limits, "latency_cap_ms": cap}


def check_plan_error(table: LatencyTable, settings: SearchSettings) -> None:
    """Refuse a latency table that cannot predict whole plans within the tolerance.

    The table's own check (random whole plans timed against its predictions) runs before any
    trial; a table that misses by more than ``settings.latency_tolerance`` (15 % unless told)
    would spend the search's trials on a budget it cannot keep.

    Raises:
        SettingsError: some batch size's plans strayed further; the message gives the errors,
            the thread count and the remedies.
    """
    limit = settings.latency_tolerance
    strays = {b: e for b, e in sorted(table.plan_error.items()) if e > limit}
    if not strays:
        return
    threads = settings.latency_threads
    fewer = (
        f"time at fewer threads (--latency-threads 1; this table ran {threads}), "
        if threads > 1
        else ""
    )
    raise SettingsError(
        "the latency table cannot predict latency on this machine within "
        f"{100 * limit:.0f} %: the whole plans timed to check it strayed up to "
        + ", ".join(f"{100 * e:.0f} % (batch {b})" for b, e in strays.items())
        + f" from its predictions ({table.runtime}, {threads} thread"
        f"{'s' if threads > 1 else ''}), so a latency budget would not hold; {fewer}"
        "measure on a quieter machine (delete "
        f"{table.cache_path} to measure again), or accept the error with "
        f"--latency-tolerance {max(strays.values()) + 0.005:.2f}"
    )


def _fit_note(errors: Mapping[int, float]) -> str:
    """``" (within 2.1 % (batch 1), ... on those plans)"``; empty when no error is known."""
    known = {b: e for b, e in sorted(errors.items()) if math.isfinite(e)}
    if not known:
        return ""
    return (
        " (within "
        + ", ".join(f"{100 * e:.1f} % (batch {b})" for b, e in known.items())
        + " on those plans)"
    )
