"""Progress lines of a search: the printer and the per-trial reporter (an Optuna callback)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from rankopt.budget import Budget
from rankopt.evaluators import ModelProfile
from rankopt.storage import DUPLICATE_ATTR, LATENCY_RATIOS, SEED_ATTR, best_first

__all__ = ["TrialReporter", "progress_printer"]


def progress_printer(progress: Callable[[str], None] | bool | None) -> Callable[[str], None]:
    """A line printer: ``progress`` itself when callable, stderr for True, else silence."""
    if progress is True:
        return lambda line: print(line, file=sys.stderr, flush=True)
    if callable(progress):
        return progress
    return lambda line: None


class TrialReporter:
    """Optuna callback printing one line per finished trial."""

    def __init__(
        self,
        say: Callable[[str], None],
        budget: Budget,
        prof: ModelProfile,
        objectives: tuple[str, ...],
    ) -> None:
        self.say = say
        self.budget = budget
        self.prof = prof
        self.objectives = objectives
        self.started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        label = f" [{attrs[SEED_ATTR]}]" if SEED_ATTR in attrs else ""
        if trial.state == TrialState.COMPLETE:
            best = _best_feasible(study, self.budget)
            best_txt = f"recommended {best[0]:.4f} (trial {best[1]})" if best else "recommended -"
            self.say(
                f"trial {trial.number:>3}{label}: accuracy {attrs.get('accuracy', math.nan):.4f} "
                f"(before fine-tune {attrs.get('accuracy_before_finetune', math.nan):.4f}), "
                f"macs {100 * attrs.get('macs_ratio', math.nan):.1f}%, "
                + _latency_text(attrs)
                + f"params {100 * attrs.get('params_ratio', math.nan):.1f}%, "
                f"{attrs.get('wall_time_s', math.nan):.1f}s | {best_txt}"
                + (
                    f" (same plan as trial {attrs[DUPLICATE_ATTR]}: its result reused, not counted)"
                    if DUPLICATE_ATTR in attrs
                    else ""
                )
            )
        else:
            reason = attrs.get("fail_reason", "")
            self.say(
                f"trial {trial.number:>3}{label}: {trial.state.name.lower()} {reason}".rstrip()
            )


def _latency_text(attrs: dict[str, object]) -> str:
    """``"latency 85%/80% (batch 1/64), "``: the predicted latency ratios; ``""`` without."""
    ratios = [attrs.get(name) for name in LATENCY_RATIOS]
    if not all(isinstance(r, int | float) for r in ratios):
        return ""
    shown = "/".join(f"{100 * float(r):.0f}%" for r in ratios)  # type: ignore[arg-type]
    return f"latency {shown} (batch 1/64), "


def _best_feasible(study: optuna.Study, budget: Budget) -> tuple[float, int] | None:
    """(accuracy, number) of the trial the search recommends so far (within the budget)."""
    fits = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "accuracy" in t.user_attrs
        and t.user_attrs.get("feasible", True)
        and budget.fits(int(t.user_attrs.get("macs", 0)), int(t.user_attrs.get("n_params", 0)))
    ]
    if not fits:
        return None
    best = best_first(fits)[0]
    return float(best.user_attrs["accuracy"]), best.number
