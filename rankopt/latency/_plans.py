"""Whole-plan calibration of a latency table: what swaps save together vs each alone.

The table measures each layer's swap alone, in the otherwise dense model, and predicts a plan
as the sum of its layers' changes. Whether swaps add up depends on the machine and runtime.
On the machine of session 5, a resnet8 plan's single-swap changes added up to within 3 % of
the plan's measured time. On an Intel Xeon VM (AVX-512, ONNX Runtime, session 11) they did
not: at batch 1 a plan of 6 swapped layers saved 0.87 of the sum of its swaps measured alone,
and the table mispredicted whole plans by up to 30 % (optimistic); with the scale, within 4 %.

So after the per-layer grid, the table times :data:`N_PLANS` random whole plans (each
layer swapped with probability :data:`SWAP_PROBABILITY` to a random grid point of a random
measured method), each paired with the dense model round by round. For each batch size it
fits one factor ``s`` (least squares through the origin) with ``measured change = s * sum
of the per-layer changes``. Predictions then scale every layer's change by ``s``, so a plan's
prediction and the allocation's sum of per-layer costs stay the same number. ``s`` is
clamped to :data:`SCALE_RANGE`. A table whose plans fit the sum keeps ``s`` close to 1.
The largest relative error of the scaled prediction of a calibration plan's whole-model time
is kept with it (:func:`plan_fit_error`): it says how far this machine's timings can be
trusted (on a contended 2-core VM at 2 threads the plans strayed up to 72 % from the table).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from rankopt.latency._grid import method_module, rank_grid

if TYPE_CHECKING:
    from rankopt.spaces import LayerInfo

__all__ = [
    "N_PLANS",
    "PLAN_TIME_FACTOR",
    "SCALE_RANGE",
    "SWAP_PROBABILITY",
    "fit_scale",
    "measure_plan_scale",
    "plan_fit_error",
]

N_PLANS = 6
"""Random whole plans timed per batch size."""
SWAP_PROBABILITY = 0.75
"""Chance that a calibration plan swaps a layer (searched plans swap most layers)."""
PLAN_TIME_FACTOR = 3.0
"""Each calibration plan is timed this many times the table's ``min_timed_s`` (0.9 s by
default). On a shared VM at batch 64, plans timed 0.3 s each gave scales of 0.78-1.16 in three
repeats and 0.9 s each 1.11-1.29 in two (at batch 1: 0.86-0.92 and 0.87-0.91): longer timing
steadies each plan's number, the machine's drift over minutes remains."""
SCALE_RANGE = (0.5, 1.5)
"""Bounds of the fitted factor: outside them the timings say more about noise than layers."""

GridPoint = tuple[str, dict[str, int]]


class LayerTable(Protocol):
    """What the calibration reads of a per-layer table (:class:`._table.LatencyTable`,
    which builds on this module)."""

    @property
    def layers(self) -> Mapping[str, LayerInfo]:
        """The profiled layers by name."""

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The measured batch sizes."""

    @property
    def methods(self) -> tuple[str, ...]:
        """The measured methods."""

    @property
    def curves(self) -> Mapping[tuple[str, str, int], tuple[tuple[int, float], ...]]:
        """``(layer, method, batch_size) -> ((macs, ratio_to_dense), ...)``."""

    @property
    def rank_multiple(self) -> int:
        """Ranks of the grid are multiples of this."""

    def dense_layer_ms(self, layer_name: str, batch_size: int = 1) -> float:
        """Measured latency_ms of the dense layer."""

    def predict_layer_ms(
        self,
        layer_name: str,
        method: str,
        ranks: Mapping[str, int],
        options: Mapping[str, Any] | None = None,
        batch_size: int = 1,
    ) -> float:
        """Predicted latency_ms of the layer replaced by ``method`` at ``ranks``."""


"""A measured grid point: method and ranks."""


def fit_scale(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Least-squares ``s`` with ``measured ~= s * predicted`` (through the origin), clamped
    to :data:`SCALE_RANGE`; 1 when the predicted changes are all zero or a number is not
    finite.

    Args:
        predicted: Per plan, the sum of the table's per-layer changes (ms, < 0 saves).
        measured: Per plan, the measured change of the whole model (ms).
    """
    den = sum(p * p for p in predicted)
    if den <= 0.0:
        return 1.0
    s = sum(p * m for p, m in zip(predicted, measured, strict=True)) / den
    if not math.isfinite(s):  # a timing that failed (nan): no evidence against the sum
        return 1.0
    return min(max(s, SCALE_RANGE[0]), SCALE_RANGE[1])


def plan_fit_error(
    scale: float, dense_ms: float, predicted: Sequence[float], measured: Sequence[float]
) -> float:
    """Largest ``|predicted / measured - 1|`` over the plans' whole-model times, each
    predicted as ``dense_ms + scale * predicted change`` (a plan whose measured time is not
    positive is skipped); nan when no plan is left or a number is not finite.

    Args:
        scale: The fitted scale.
        dense_ms: The dense model's time in the plans' rounds.
        predicted: Per plan, the sum of the table's per-layer changes (ms).
        measured: Per plan, the measured change of the whole model (ms).
    """
    errors = [
        abs((dense_ms + scale * p) / (dense_ms + m) - 1.0)
        for p, m in zip(predicted, measured, strict=True)
        if dense_ms + m > 0.0
    ]
    worst = max(errors, default=float("nan"))
    return worst if math.isfinite(worst) else float("nan")


def measure_plan_scale(
    host: nn.Module,
    grid: Mapping[str, Sequence[GridPoint]],
    change_ms: Callable[[str, str, Mapping[str, int]], float],
    build: Callable[[str, str, Mapping[str, int]], nn.Module],
    time_models_ms: Callable[..., list[float]],
    x: torch.Tensor,
    *,
    n_warmup: int,
    n_runs: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Time :data:`N_PLANS` random plans against the dense ``host`` and fit the scale.

    Args:
        host: The dense model (eval, CPU, float32; not modified).
        grid: Per layer, its measured grid points.
        change_ms: ``(layer, method, ranks) -> ms``: the table's predicted change of the
            whole model when only that layer is swapped (before any scaling).
        build: ``(layer, method, ranks) -> module`` to swap in (random factors).
        time_models_ms: The runtime's ``time_models_ms`` (dense first, ``paired=True``).
        x: The input batch.
        n_warmup: Untimed rounds.
        n_runs: Timed rounds.
        seed: Seed of the plans' choice.

    Returns:
        ``{"scale": s, "error": plan_fit_error(...), "dense_ms", "plans": [{"layers":
        {layer: [method, ranks]}, "predicted_ms", "measured_ms"}, ...]}`` (changes in ms,
        for the cache file).
    """
    rng = random.Random(seed)
    names = [name for name, points in grid.items() if points]
    plans: list[dict[str, GridPoint]] = []
    for _ in range(N_PLANS):
        chosen = {n: rng.choice(list(grid[n])) for n in names if rng.random() < SWAP_PROBABILITY}
        if not chosen and names:
            n = rng.choice(names)
            chosen = {n: rng.choice(list(grid[n]))}
        plans.append(chosen)
    models = [host]
    for chosen in plans:
        model = copy.deepcopy(host)
        for name, (m, ranks) in chosen.items():
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, build(name, m, ranks))
        models.append(model.eval())
    times = time_models_ms(models, x, n_warmup=n_warmup, n_runs=n_runs, paired=True)
    predicted = [
        sum(change_ms(n, m, ranks) for n, (m, ranks) in chosen.items()) for chosen in plans
    ]
    measured = [t - times[0] for t in times[1:]]
    records = [
        {
            "layers": {n: [m, dict(ranks)] for n, (m, ranks) in chosen.items()},
            "predicted_ms": p,
            "measured_ms": t,
        }
        for chosen, p, t in zip(plans, predicted, measured, strict=True)
    ]
    scale = fit_scale(predicted, measured)
    return {
        "scale": scale,
        "error": plan_fit_error(scale, times[0], predicted, measured),
        "dense_ms": times[0],
        "plans": records,
    }


def table_plan_scales(
    table: LayerTable,
    host: Callable[[], nn.Module],
    input_shape: Sequence[int],
    entries: dict[str, Any],
    scale_key: str,
    *,
    n_grid: int,
    n_warmup: int,
    runs_for: Callable[[int], int],
    time_models_ms: Callable[..., list[float]],
) -> tuple[dict[int, float], dict[int, float], bool]:
    """Each batch size's plan scale of ``table``: from its cache entry, else measured.

    Args:
        table: The :class:`~rankopt.latency.LatencyTable` before scaling.
        host: Gives the dense model (eval, CPU, float32; not modified), called only when a
            scale is measured (the table's copy, made once).
        input_shape: One input.
        entries: The table's cache entries of this model (``str(batch size) -> entry``);
            a measured scale is stored in ``entry["plan_scale"][scale_key]``.
        scale_key: The scale's key in the entry: one per rank multiple, whichever methods
            the table holds (the scale says how this machine and runtime add swaps up, not
            how one method runs; measured again per method set it moved by its noise,
            0.75 vs 0.87 at batch 1 on the same plans minutes apart).
        n_grid: The table's grid points per method.
        n_warmup: Untimed rounds.
        runs_for: ``batch size -> timed rounds``.
        time_models_ms: The runtime's ``time_models_ms``.

    Returns:
        ``(batch size -> scale, batch size -> its fit error (nan in entries cached before
        it was stored), whether anything was measured)``.
    """
    gen = torch.Generator().manual_seed(0)
    scales: dict[int, float] = {}
    errors: dict[int, float] = {}
    measured = False
    for bs in table.batch_sizes:
        stored = entries[str(bs)].setdefault("plan_scale", {})
        if scale_key not in stored:
            grid = {
                name: [
                    (m, ranks)
                    for m in table.methods
                    if (name, m, bs) in table.curves
                    for ranks in rank_grid(m, layer, n_grid, multiple=table.rank_multiple)
                ]
                for name, layer in table.layers.items()
            }

            def change_ms(name: str, m: str, ranks: Mapping[str, int], bs: int = bs) -> float:
                return float(
                    table.predict_layer_ms(name, m, ranks, None, bs)
                    - table.dense_layer_ms(name, bs)
                )

            def build(name: str, m: str, ranks: Mapping[str, int]) -> nn.Module:
                return method_module(m, table.layers[name], ranks, gen).eval()

            x = torch.randn((bs, *input_shape), generator=gen)
            stored[scale_key] = measure_plan_scale(
                host(),
                grid,
                change_ms,
                build,
                time_models_ms,
                x,
                n_warmup=n_warmup,
                n_runs=runs_for(bs),
            )
            measured = True
        scales[bs] = float(stored[scale_key]["scale"])
        errors[bs] = float(stored[scale_key].get("error", math.nan))
    return scales, errors, measured
