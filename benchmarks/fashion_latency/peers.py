"""The peers at a measured latency budget: torch-pruning bisected, the others on a MACs grid.

Every latency here is measured, not predicted: ONNX Runtime at 1 thread, batch 1 and 64,
each model timed side by side with the dense one
(:func:`rankopt.latency.compare_latency_ms`). A model *meets* a budget ``X`` when both its
batch-1 and batch-64 ratios to dense are at most ``X``.

- :class:`PruningByLatency`: torch-pruning (:func:`benchmarks.peer_pruning.pruned_model`,
  L2 group magnitude) at a MACs target bisected on the measured latency, at most
  ``max_measurements`` timings per budget; every timed model is kept, so tighter budgets
  start from what looser ones measured.
- :class:`GridPeer`: a peer built at each MACs fraction of :data:`GRID_MACS` (tensorly-torch
  Tucker, musco, AIMET spatial SVD), all timed in one side-by-side measurement; a budget
  takes the largest fraction that meets it, or a row saying the peer cannot reach it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from torch import nn

import rankopt
from benchmarks.common.harness import Candidate, say
from rankopt.latency import compare_latency_ms

GRID_MACS: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
"""MACs fractions the grid peers are built at (largest first)."""
PRUNING_FLOOR = 0.03
"""Smallest MACs target torch-pruning is bisected down to."""
PRUNING_RESOLUTION = 0.01
"""Bisection stops when the MACs bracket is narrower than this."""


class LatencyPeer(Protocol):
    """A peer that gives one row per latency budget."""

    label: str

    def candidate(self, budget: float) -> Candidate:
        """The row's model at ``budget`` (fraction of dense latency), or why there is none."""
        ...


@dataclass
class Timed:
    """One peer model and its measured ONNX Runtime latency ratios to dense.

    Attributes:
        macs_target: The MACs fraction it was built for.
        model: The model (None when it could not be built).
        ort_b1: Latency / dense at batch 1 (NaN: not measured or not exportable).
        ort_b64: Latency / dense at batch 64.
        note: What the peer did (its own description).
    """

    macs_target: float
    model: nn.Module | None
    ort_b1: float = math.nan
    ort_b64: float = math.nan
    note: str = ""

    @property
    def worst(self) -> float:
        """The larger of the two ratios (NaN when either is missing)."""
        if math.isnan(self.ort_b1) or math.isnan(self.ort_b64):
            return math.nan
        return max(self.ort_b1, self.ort_b64)

    def meets(self, budget: float) -> bool:
        """Both ratios at most ``budget``."""
        return self.model is not None and self.worst <= budget


def ort_ratios(
    dense: nn.Module, models: Sequence[nn.Module], shape: tuple[int, ...], *, min_timed_s: float
) -> list[tuple[float, float]]:
    """``(batch 1, batch 64)`` ONNX Runtime latency / dense of each model, one side-by-side
    measurement at 1 thread; NaN for all when the runtime cannot run them."""
    try:
        ms = compare_latency_ms(
            [dense, *models], shape, runtime="onnxruntime", min_timed_s=min_timed_s, n_threads=1
        )
    except Exception as exc:  # a peer's module ONNX cannot export, say
        say(f"    onnxruntime: {type(exc).__name__}: {str(exc)[:160]}")
        return [(math.nan, math.nan)] * len(models)
    return [(ms[1][i + 1] / ms[1][0], ms[64][i + 1] / ms[64][0]) for i in range(len(models))]


def _row_note(peer: str, budget: float, chosen: Timed, n_timed: int) -> str:
    return (
        f"{chosen.note}; {peer}: largest MACs target whose measured ORT latency meets "
        f"{budget:.0%}: {chosen.macs_target:.3f} (selection timing b1 {chosen.ort_b1:.3f}, "
        f"b64 {chosen.ort_b64:.3f}; {n_timed} model(s) timed)"
    )


def _unreachable(label: str, budget: float, timed: Sequence[Timed]) -> Candidate:
    measured = [t for t in timed if not math.isnan(t.worst)]
    if not measured:
        why = "; ".join(sorted({t.note for t in timed if t.note})) or "no model could be timed"
        return Candidate(label, None, None, f"cannot reach {budget:.0%}: {why}")
    low = min(measured, key=lambda t: t.worst)
    return Candidate(
        label,
        None,
        None,
        f"cannot reach {budget:.0%}: its lowest measured latency is {low.worst:.0%} of dense "
        f"(b1 {low.ort_b1:.3f}, b64 {low.ort_b64:.3f}) at MACs target {low.macs_target:.2f}",
    )


class PruningByLatency:
    """torch-pruning at the largest MACs target whose measured latency meets a budget.

    Args:
        dense: The dense model.
        shape: One input, e.g. ``(1, 28, 28)``.
        min_timed_s: Seconds each timing spends on each model (short: it is a selection).
        max_measurements: Timings per budget at most.
    """

    label = "torch-pruning"

    def __init__(
        self,
        dense: nn.Module,
        shape: tuple[int, ...],
        *,
        min_timed_s: float,
        max_measurements: int = 8,
    ) -> None:
        self.dense = dense
        self.shape = shape
        self.min_timed_s = min_timed_s
        self.max_measurements = max_measurements
        self.timed: dict[float, Timed] = {}

    def _time(self, target: float) -> Timed:
        from benchmarks.peer_pruning import pruned_model

        try:
            model, info = pruned_model(self.dense, self.shape, target)
        except rankopt.BudgetError as exc:
            found = Timed(target, None, note=str(exc))
        else:
            (b1, b64), *_ = ort_ratios(
                self.dense, [model], self.shape, min_timed_s=self.min_timed_s
            )
            found = Timed(target, model, b1, b64, str(info["note"]))
        say(
            f"    torch-pruning MACs {target:.3f}: "
            f"ORT b1 {found.ort_b1:.3f}, b64 {found.ort_b64:.3f}"
        )
        self.timed[target] = found
        return found

    def _bracket(self, budget: float) -> tuple[float | None, float]:
        """The largest timed target meeting ``budget`` and the smallest above it that misses."""
        fits = [t for t, m in self.timed.items() if m.meets(budget)]
        lo = max(fits) if fits else None
        above = [t for t, m in self.timed.items() if not m.meets(budget) and (lo is None or t > lo)]
        return lo, min(above, default=1.0)

    def candidate(self, budget: float) -> Candidate:
        """The row of ``budget`` (its model, or a note saying what the lowest latency was)."""
        started = time.perf_counter()
        n = 0
        lo, hi = self._bracket(budget)
        while n < self.max_measurements and hi - (lo or PRUNING_FLOOR) > PRUNING_RESOLUTION:
            low = lo if lo is not None else PRUNING_FLOOR
            first_guess = n == 0 and low < budget < hi
            self._time(budget if first_guess else 0.5 * (low + hi))
            n += 1
            lo, hi = self._bracket(budget)
        if lo is None and PRUNING_FLOOR not in self.timed and n < self.max_measurements:
            self._time(PRUNING_FLOOR)
            n += 1
            lo, hi = self._bracket(budget)
        if lo is None:
            cand = _unreachable(self.label, budget, list(self.timed.values()))
            cand.extra.update(build_s=time.perf_counter() - started, timings=n)
            return cand
        chosen = self.timed[lo]
        return Candidate(
            self.label,
            None,
            chosen.model,
            _row_note("bisection on the MACs target", budget, chosen, n),
            {"macs_target": lo, "build_s": time.perf_counter() - started, "timings": n},
            # oneDNN's backward crashed the process ("double free or corruption") on the
            # 1-3-channel convs torch-pruning leaves at 7 % of the MACs, as on musco's
            mkldnn_off=True,
        )


class GridPeer:
    """A peer built at every MACs fraction of a grid, all timed once.

    Args:
        label: Row label.
        build: ``{fraction: Timed}`` with the models (unmeasured), or raises when the peer
            cannot run here (the exception's message is the row's note).
        dense: The dense model.
        shape: One input.
        min_timed_s: Seconds each model is timed in the one measurement.
        mkldnn_off: Fine-tune and evaluate with oneDNN off (AIMET's models).
    """

    def __init__(
        self,
        label: str,
        build: Callable[[], dict[float, Timed]],
        dense: nn.Module,
        shape: tuple[int, ...],
        *,
        min_timed_s: float,
        mkldnn_off: bool = False,
    ) -> None:
        self.label = label
        self.mkldnn_off = mkldnn_off
        self._build = build
        self.dense = dense
        self.shape = shape
        self.min_timed_s = min_timed_s
        self.timed: list[Timed] | None = None
        self.failure = ""
        self.build_s = 0.0

    def _measure(self) -> list[Timed]:
        if self.timed is None:
            started = time.perf_counter()
            try:
                grid = self._build()
            except Exception as exc:  # the peer's library or venv is missing: say
                self.failure = f"not run: {type(exc).__name__}: {str(exc)[:300]}"
                grid = {}
            built = [t for t in grid.values() if t.model is not None]
            ratios = (
                ort_ratios(
                    self.dense,
                    [t.model for t in built if t.model is not None],
                    self.shape,
                    min_timed_s=self.min_timed_s,
                )
                if built
                else []
            )
            for t, (b1, b64) in zip(built, ratios, strict=True):
                t.ort_b1, t.ort_b64 = b1, b64
                say(f"    {self.label} MACs {t.macs_target:.2f}: ORT b1 {b1:.3f}, b64 {b64:.3f}")
            self.timed = sorted(grid.values(), key=lambda t: -t.macs_target)
            self.build_s = time.perf_counter() - started
        return self.timed

    def candidate(self, budget: float) -> Candidate:
        """The row of ``budget``: the largest grid fraction meeting it, or why none does."""
        timed = self._measure()
        if self.failure:
            return Candidate(self.label, None, None, self.failure, {"build_s": self.build_s})
        fits = [t for t in timed if t.meets(budget)]
        if not fits:
            cand = _unreachable(self.label, budget, timed)
            cand.extra["build_s"] = self.build_s
            return cand
        chosen = fits[0]
        return Candidate(
            self.label,
            None,
            chosen.model,
            _row_note(f"MACs grid {list(GRID_MACS)}", budget, chosen, len(timed)),
            {"macs_target": chosen.macs_target, "build_s": self.build_s},
            mkldnn_off=self.mkldnn_off,
        )
