"""Proxy vs final: the final fine-tune of a sample of a study's trials, Spearman's rho."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from scipy.stats import spearmanr
from torch import nn

import rankopt
from benchmarks.common.harness import FinalFinetune
from benchmarks.common.searches import spearman_sample
from rankopt.storage import VAL_LOSS_ATTR


def spearman_row(
    study: Any,
    k: int,
    finetuner: FinalFinetune,
    dense: nn.Module,
    seed: int,
    fraction: float,
    sampler: str,
    best_trial: Any,
    best_acc: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Final fine-tune of a sample of the study's trials; Spearman's rho proxy vs final."""
    proxy: list[float] = []
    losses: list[float] = []
    final: list[float] = []
    for t in spearman_sample(study, k):
        plan = rankopt.export_plan(study, trial=t.number)
        acc = best_acc if t.number == best_trial else finetuner.plan_accuracy(dense, plan, seed)
        proxy.append(float(t.user_attrs["accuracy"]))
        losses.append(float(t.user_attrs.get(VAL_LOSS_ATTR, math.nan)))
        final.append(acc)
        say(
            f"    spearman sample trial {t.number}: proxy {proxy[-1]:.4f} (val loss "
            f"{losses[-1]:.4f}), final {acc:.4f}"
        )
    return {
        "budget": fraction,
        "sampler": sampler,
        "seed": seed,
        "proxy": proxy,
        "val_loss": losses,
        "final": final,
        "rho": rho(proxy, final),
        "rho_loss": rho([-x for x in losses], final),
    }


def rho(scores: Sequence[float], final: Sequence[float]) -> float:
    """Spearman's rho of ``scores`` vs ``final`` over the pairs where both are finite."""
    ok = [(p, f) for p, f in zip(scores, final, strict=True) if math.isfinite(p + f)]
    if len(ok) >= 3 and len({p for p, _ in ok}) > 1 and len({f for _, f in ok}) > 1:
        return float(spearmanr([p for p, _ in ok], [f for _, f in ok]).statistic)
    return math.nan
