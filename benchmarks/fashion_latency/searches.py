"""The rankopt rows at a latency budget, and the lowest latency the search can reach.

Each row is one :func:`rankopt.search` study with ``max_latency`` = the budget (a fraction
of the dense model's latency at batch 1 and 64, predicted by this machine's ONNX Runtime
latency table, ``latency_runtime="onnxruntime"``), the row's seed, and ``prune=True``
(``rankopt``: channel pruning mixed with decomposition) or ``prune=False`` (``rankopt
(decomposition only)``). Its recommended plan (:func:`rankopt.export_plan`) is the row's
model.

:func:`lowest_reachable` asks the search itself: a study with an unreachable budget (0.1 %
of dense) is refused before any trial with the smallest predicted latency of the space
(every layer at its fastest choice), which is what the CLI prints as "raise the budget to
at least N%"; it names the first batch size refused (batch 1).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import rankopt
from benchmarks.common.harness import Candidate
from benchmarks.fashion.harness import Task

JOINT = "rankopt"
"""Label of the search with channel pruning and decomposition (``prune=True``)."""
DECOMPOSITION = "rankopt (decomposition only)"
"""Label of the search with decomposition only (``prune=False``)."""
SEARCH_LABELS = (JOINT, DECOMPOSITION)
PROBE_FRACTION = 0.001
"""A latency budget no plan reaches: the search refuses it and names the lowest it can."""
_LOWEST = re.compile(
    r"batch size (\d+) is below the smallest predicted latency of ([0-9.e+-]+) ms "
    r"\(([0-9.]+)% of dense ([0-9.e+-]+) ms"
)


def search_candidate(
    task: Task,
    *,
    budget: float,
    seed: int,
    n_trials: int,
    prune: bool,
    finetune_steps: int = 120,
) -> Candidate:
    """One study at latency ``budget`` (fraction of dense) and its recommended plan as a row
    (a refused budget: a row without a model, saying so)."""
    label = JOINT if prune else DECOMPOSITION
    started = time.perf_counter()
    try:
        study = rankopt.search(
            task.model,
            task.train,
            task.val,
            max_latency=budget,
            latency_runtime="onnxruntime",
            n_trials=n_trials,
            seed=seed,
            finetune_steps=finetune_steps,
            model_name=task.model_name,
            data_name=task.data_name,
            study_name=f"{task.model_name}-latency{budget}-prune{prune}-s{seed}",
            prune=prune,
        )
    except rankopt.BudgetError as exc:
        return Candidate(label, None, None, f"not run: the search refused the budget: {exc}")
    except rankopt.RankoptError as exc:  # e.g. a latency table off by more than its tolerance
        return Candidate(label, None, None, f"not run: the search stopped: {exc}")
    wall_s = time.perf_counter() - started
    plan = rankopt.export_plan(study)
    predicted = {k: v for k, v in plan.metrics.items() if "latency" in k}
    note = (
        f"rankopt.search, max_latency {budget:g} on onnxruntime, prune={prune}, "
        f"{n_trials} trials, seed {seed}; recommended trial {plan.provenance.get('trial')}"
    )
    return Candidate(
        label,
        plan,
        None,
        note,
        {
            "val_accuracy": float(plan.metrics.get("accuracy", math.nan)),
            "search_wall_s": wall_s,
            "predicted": predicted,
        },
    )


@dataclass(frozen=True)
class Reach:
    """The lowest latency one search space can reach, as the search reports it.

    Attributes:
        label: The row whose space it is.
        batch_size: The batch size the search named (the first one refused).
        percent: Smallest predicted latency, percent of dense (NaN: not obtained).
        message: The search's message (or why there is none).
    """

    label: str
    batch_size: int
    percent: float
    message: str


def lowest_reachable(task: Task, *, prune: bool) -> Reach:
    """Ask :func:`rankopt.search` for an unreachable latency and read the lowest it names."""
    label = JOINT if prune else DECOMPOSITION
    try:
        rankopt.search(
            task.model,
            task.train,
            task.val,
            max_latency=PROBE_FRACTION,
            latency_runtime="onnxruntime",
            n_trials=1,
            model_name=task.model_name,
            data_name=task.data_name,
            prune=prune,
        )
    except rankopt.BudgetError as exc:
        found = _LOWEST.search(str(exc))
        if found:
            return Reach(label, int(found.group(1)), float(found.group(3)), str(exc))
        return Reach(label, 1, math.nan, f"unparsed refusal: {exc}")
    return Reach(label, 1, math.nan, f"the search accepted {PROBE_FRACTION:.1%} of dense")
