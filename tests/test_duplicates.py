"""Trials that realise an already evaluated plan reuse its result and do not count."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.trial import TrialState
from torch import nn

from rankopt.plan import LayerPlan
from rankopt.searching import search
from rankopt.searching.objective._duplicates import n_distinct_finished, plan_key
from rankopt.storage._attrs import DUPLICATE_ATTR, PLAN_KEY_ATTR, is_repeat
from rankopt.studies import export_plan, pareto_front

SETTINGS: dict[str, Any] = {
    "model_name": "digitsnet",
    "max_macs": 15_000,
    "max_params": 9_000,
    "latency_runtime": None,  # repeats are about plans, not latency
    "finetune_steps": 15,
    "finetune_samples": 256,
    "batch_size": 32,
}


def test_plan_key_ignores_layer_order_and_sees_every_rank_and_method() -> None:
    a = LayerPlan("conv1", "tucker2", {"r_in": 2, "r_out": 3})
    b = LayerPlan("conv2", "cp", {"r": 4})
    assert plan_key([a, b]) == plan_key([b, a])
    assert plan_key([a, b]) != plan_key([a, LayerPlan("conv2", "cp", {"r": 5})])
    assert plan_key([a, b]) != plan_key([a, LayerPlan("conv2", "svd", {"r": 4})])
    assert len(plan_key([a])) == 16


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_repeated_plans_reuse_the_result_and_the_study_evaluates_n_distinct_plans(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], sampler: str
) -> None:
    # On the tiny digits net this budget leaves few plans: repeats are certain (without
    # channel pruning, whose counts multiply the plans).
    train, val = digits_data["train"], digits_data["val"]
    study = search(
        trained_digits_net, train, val, n_trials=7, sampler=sampler, prune=False, **SETTINGS
    )
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    repeats = [t for t in complete if is_repeat(t)]
    evaluated = {t.number: t for t in complete if not is_repeat(t)}
    assert repeats, "the budget was chosen so that some trial repeats a plan"
    assert n_distinct_finished(study) == 7
    keys = [t.user_attrs[PLAN_KEY_ATTR] for t in evaluated.values()]
    assert len(keys) == len(set(keys)), "two trials evaluated the same plan"
    for t in repeats:
        first = evaluated[t.user_attrs[DUPLICATE_ATTR]]
        assert first.number < t.number
        assert t.user_attrs[PLAN_KEY_ATTR] == first.user_attrs[PLAN_KEY_ATTR]
        assert t.values == first.values
        assert t.user_attrs["accuracy"] == first.user_attrs["accuracy"]
        assert t.user_attrs["finetune_time_s"] == 0.0
        again, original = export_plan(study, trial=t.number), export_plan(study, trial=first.number)
        assert again.layers == original.layers
        assert again.provenance["trial"] == t.number
    # the front lists each plan once: a repeat's first trial stands for it
    front = pareto_front(study)
    on_front = {int(n) for n in front[front["kind"] == "trial"]["trial"]}
    assert on_front and not on_front & {t.number for t in repeats}
