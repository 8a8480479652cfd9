"""The search: budgets checked by fvcore, VBMF seeding, resume, failures, beating the seed."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from rankopt.budget._budget import Budget
from rankopt.errors import BudgetError, RankoptError, UnknownNameError
from rankopt.evaluators import count_macs, profile
from rankopt.plan import CompressionPlan, LayerPlan, apply_plan
from rankopt.searching import parse_budget, search
from rankopt.searching.objective import _objective as objective_module
from rankopt.searching.objective._duplicates import n_distinct_finished
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._space import SearchSpace
from rankopt.storage import STUDY_SCHEMA_VERSION, StudyRecord
from rankopt.storage._attrs import is_repeat

SHAPE = (1, 8, 8)
FAST: dict[str, Any] = {"finetune_steps": 15, "finetune_samples": 256, "batch_size": 32}
# The default runtime (ONNX Runtime) rounds ranks to its channel block (16 with AVX-512):
# on DigitsNet's 16- and 32-channel layers that leaves a few plans. These tests are about
# the search on a tiny net; its latency table and cap (conftest's cost model) still run.
FAST["rank_multiple"] = 1


def _run(model: nn.Module, data: dict[str, Any], **kwargs: Any) -> optuna.Study:
    params = {**FAST, **kwargs}
    return search(model, data["train"], data["val"], model_name="digitsnet", **params)


def _layer_macs(space: SearchSpace, lp: LayerPlan) -> int:
    """MACs of one layer built as ``lp`` (the model's MACs with only it changed, minus the
    rest of the dense model)."""
    return space.cost_of([lp])[0] - space.profile.macs + space.layer(lp.layer).macs


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


@pytest.mark.parametrize(
    "budget",
    [
        {"max_macs": 0.5},
        {"max_macs": "30%"},
        {"max_params": 0.4},
        {"max_macs": 40_000, "max_params": 9_000},
    ],
)
def test_every_trial_respects_the_budget_by_fvcore(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], budget: dict[str, Any]
) -> None:
    study = _run(trained_digits_net, digits_data, n_trials=7, sampler="random", **budget)
    prof = profile(trained_digits_net, SHAPE)
    max_macs = parse_budget(budget.get("max_macs"), prof.macs)
    max_params = parse_budget(budget.get("max_params"), prof.n_params)
    trials = _complete(study)
    assert n_distinct_finished(study) == 7  # trials that reused an earlier plan's result aside
    for t in trials:
        compressed = apply_plan(trained_digits_net, CompressionPlan.from_dict(t.user_attrs["plan"]))
        macs = count_macs(compressed, SHAPE)
        n_params = sum(p.numel() for p in compressed.parameters())
        assert macs == t.user_attrs["macs"]
        assert n_params == t.user_attrs["n_params"]
        if max_macs is not None:
            assert macs <= max_macs
        if max_params is not None:
            assert n_params <= max_params
        assert 0.0 <= t.user_attrs["accuracy"] <= 1.0
        assert 0.0 < t.user_attrs["val_loss"] < math.inf
        assert math.isfinite(t.user_attrs["reconstruction_error"])


def test_seeds_are_the_sensitivity_allocation_capacity_the_least_harmful_method_then_kim(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    # Every method: ONNX Runtime's latency table would leave GKPD out (not latency-friendly).
    # Decomposition seeds only (prune=False; the pruning seeds: tests/test_pruning.py).
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=16,
        max_macs=0.3,
        latency_runtime=None,
        prune=False,
    )
    seeds = [t.user_attrs.get("seed") for t in study.trials]
    assert sum(s is not None for s in seeds) <= 16 // 4
    assert seeds[0] == "sensitivity", seeds
    assert study.trials[0].params["allocation"] == "sensitivity"
    # no two seeds realise the same plan (a seed slot is not spent on a plan twice)
    seed_plans = [
        [(lp["layer"], lp["method"], lp["ranks"]) for lp in t.user_attrs["plan"]["layers"]]
        for t in study.trials
        if t.user_attrs.get("seed")
    ]
    assert all(a != b for i, a in enumerate(seed_plans) for b in seed_plans[i + 1 :])

    # the second seed: the first one's methods, weights by MACs per parameter (the layer
    # with the fewest gets the top of the weight range, the one with the most the bottom)
    space = SearchSpace(profile(trained_digits_net, SHAPE), n_outputs=10)
    per_param = {n: space.layer(n).macs / space.layer(n).n_params for n in space.choices}
    # at 30 % of the MACs its plan differs from the first seed's (at 20 % and 50 % it does not
    # on this net, and the seed is dropped as a repeat)
    assert seeds[1] == "capacity", seeds
    capacity = study.trials[1].params
    assert capacity["allocation"] == "sensitivity"
    for n in space.choices:
        assert capacity[f"{n}/method"] == study.trials[0].params[f"{n}/method"]
        assert study.trials[0].params[f"{n}/weight"] == 1.0
    weights = {n: capacity[f"{n}/weight"] for n in space.choices}
    assert weights[min(per_param, key=per_param.__getitem__)] == pytest.approx(4.0)
    assert weights[max(per_param, key=per_param.__getitem__)] == pytest.approx(0.25)
    by_cost = sorted(space.choices, key=per_param.__getitem__)
    assert [weights[n] for n in by_cost] == sorted(weights.values(), reverse=True)

    # the next seed: one method everywhere (sensitivity allocation), the method whose
    # one-method allocation has the least total sensitivity at the budget
    sens = SensitivityProfile.from_dict(study.user_attrs["sensitivity"])
    assert sens is not None
    budget = Budget(max_macs=study.user_attrs["budget"]["max_macs"])
    totals = {}
    plans = {}
    for method in ("cp", "gkpd", "spatial_svd", "svd", "tucker2"):
        methods = {
            n: [method if method in o else study.trials[0].params[f"{n}/method"]]
            for n, o in space.choices.items()
        }
        realised = space.allocate_methods(methods, {}, budget, sens)
        if realised is not None:
            plans[method] = [(lp.layer, lp.method, dict(lp.ranks)) for lp in realised.layers]
            totals[method] = sum(
                sens.score(lp.layer, lp.method, _layer_macs(space, lp))
                for lp in realised.layers
                if lp.method != "keep"
            )
    least = min(totals, key=lambda m: (totals[m], m))
    if plans[least] in seed_plans[:2]:  # the same plan as an earlier seed: dropped
        assert f"{least}_only" not in seeds, (seeds, totals)
        kim = 2
    else:
        assert seeds[2] == f"{least}_only", (seeds, totals)
        assert study.trials[2].params["allocation"] == "sensitivity"
        assert study.trials[2].params["conv2/method"] == least
        assert study.trials[2].params["conv3/method"] == least
        kim = 3

    # Kim et al.'s choice: Tucker-2 on kxk convs, SVD on 1x1 convs, one rank fraction
    assert seeds[kim] == "uniform_tucker2", seeds
    t = study.trials[kim]
    assert t.params["allocation"] == "uniform"
    assert t.params["conv2/method"] == t.params["conv3/method"] == "tucker2"
    assert t.params["conv4/method"] == "svd"
    uniform = {lp["layer"]: lp for lp in t.user_attrs["plan"]["layers"]}
    fractions = [
        max(r / uniform[n]["full_ranks"][k] for k, r in uniform[n]["ranks"].items())
        for n in ("conv2", "conv3")
    ]
    assert abs(fractions[0] - fractions[1]) < 0.15  # one rank fraction, up to rounding
    assert [lp["method"] for lp in uniform.values()] == ["tucker2", "tucker2", "tucker2", "svd"]


def test_budget_below_reachable_fails_before_any_trial(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(BudgetError, match=r"max_macs = 100 is below .* reachable cost of \d+"):
        _run(trained_digits_net, digits_data, n_trials=2, max_macs=100, storage=storage)
    assert optuna.get_all_study_names(storage) == []


def test_budget_above_dense_is_accepted(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=2,
        max_macs="150%",
        seed_with_vbmf=False,
        methods=["svd"],
    )
    assert n_distinct_finished(study) == 2
    prof = profile(trained_digits_net, SHAPE)
    assert study.user_attrs["budget"]["max_macs"] == math.floor(1.5 * prof.macs)


def test_interrupted_study_resumes_and_keeps_finished_trials(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    k = 3

    def interrupt(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(_complete(study)) >= k:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(
            trained_digits_net,
            digits_data,
            n_trials=6,
            max_macs=0.5,
            storage=url,
            study_name="resume",
            callbacks=[interrupt],
        )
    kept = {
        t.number: t.values for t in _complete(optuna.load_study(study_name="resume", storage=url))
    }
    assert len(kept) == k
    study = _run(
        trained_digits_net, digits_data, n_trials=6, max_macs=0.5, storage=url, study_name="resume"
    )
    done = _complete(study)
    assert n_distinct_finished(study) == 6
    assert {t.number: t.values for t in done if t.number in kept} == kept
    seeds = [t.user_attrs["seed"] for t in study.trials if "seed" in t.user_attrs]
    assert len(seeds) == len(set(seeds)), "seeds were enqueued twice"


def test_nan_finetune_fails_one_trial_and_the_study_goes_on(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = objective_module.proxy_finetune
    calls = []

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["seed"])
        if len(calls) == 2:  # the second fine-tune: a learning rate that makes the loss NaN
            kwargs["lr"] = float("nan")
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "proxy_finetune", poisoned)
    study = _run(trained_digits_net, digits_data, n_trials=4, max_macs=0.5, seed=7)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [1]  # trials run in order: the second fine-tune's
    assert set(calls) == {7}  # every proxy fine-tune uses the study seed (same batches)
    assert "non-finite" in failed[0].user_attrs["fail_reason"]
    assert n_distinct_finished(study) == 4


def test_the_samplers_own_trials_beat_the_uniform_tucker2_seed(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    kwargs = dict(n_trials=14, max_macs=0.5, seed=3, finetune_steps=30, prune=False)
    study = _run(trained_digits_net, digits_data, **kwargs)
    trials = _complete(study)
    # Kim et al.'s classic recipe, against the trials TPE proposed (not the other seeds)
    seed = next(t for t in trials if t.user_attrs.get("seed") == "uniform_tucker2")
    others = [t for t in trials if t.user_attrs.get("seed") is None]
    best = max(others, key=lambda t: t.user_attrs["accuracy"])
    assert best.user_attrs["accuracy"] >= seed.user_attrs["accuracy"]
    assert best.user_attrs["macs"] <= 0.5 * profile(trained_digits_net, SHAPE).macs
    # deterministic: the same seed and settings give the same trials
    again = _complete(_run(trained_digits_net, digits_data, **kwargs))
    assert [t.params for t in again] == [t.params for t in trials]
    assert [t.values for t in again] == [t.values for t in trials]
    assert [t.user_attrs["plan"] for t in again] == [t.user_attrs["plan"] for t in trials]


def test_single_objective_with_pruning(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=5,
        max_macs=0.5,
        objectives=("accuracy",),
        finetune_steps=16,
    )
    assert len(study.directions) == 1
    evaluated = [t for t in _complete(study) if not is_repeat(t)]
    assert n_distinct_finished(study) == 5 and evaluated  # complete or pruned
    assert all(len(t.intermediate_values) > 0 for t in evaluated)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objectives": ("macs", "accuracy")}, "first objective must be 'accuracy'"),
        ({"objectives": ("accuracy", "flops")}, "unknown objective 'flops'"),
        ({"sampler": "bayes"}, "unknown sampler 'bayes'; choose one of: nsga2, random, tpe"),
        ({"methods": ["tucker3"]}, "unknown method 'tucker3'"),
        ({"max_macs": "50 %"}, r"max_macs = '50 %' is not a budget"),
        ({"max_macs": -1}, "must be positive"),
        ({"repair": "clip"}, "choose 'repair' or 'constraint'"),
        ({"n_trials": 0}, "n_trials = 0 must be an integer >= 1"),
        ({"sampler": "random", "repair": "constraint"}, "cannot take Optuna constraints"),
    ],
)
def test_bad_arguments_raise_project_errors(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises((RankoptError, UnknownNameError), match=match):
        _run(trained_digits_net, digits_data, **{"n_trials": 1, **kwargs})


def test_constraint_mode_marks_over_budget_trials_infeasible(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=6,
        max_macs=0.3,
        repair="constraint",
        sampler="tpe",
        seed_with_vbmf=False,
    )
    for t in _complete(study):
        over = t.user_attrs["constraint"][0] > 0
        assert over == (not t.user_attrs["feasible"])
        assert over == (t.user_attrs["macs"] > study.user_attrs["budget"]["max_macs"])


def test_data_of_the_wrong_shape_is_rejected(trained_digits_net: nn.Module) -> None:
    x = torch.zeros(10, 1, 8, 8)
    y = torch.zeros(10, dtype=torch.int64)
    with pytest.raises(RankoptError, match=r"validation images have shape \(10, 3, 8, 8\)"):
        search(trained_digits_net, (x, y), (torch.zeros(10, 3, 8, 8), y), n_trials=1)


def test_search_from_python_does_not_print_optuna_trial_lines(
    trained_digits_net: nn.Module,
    digits_data: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("INFO", logger="optuna"):
            _run(trained_digits_net, digits_data, n_trials=2, seed_with_vbmf=False)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_lines = [r.getMessage() for r in caplog.records if "Trial" in r.getMessage()]
    assert trial_lines == []
    assert "finished with value" not in capsys.readouterr().err


def test_the_search_subpackage_does_not_hide_the_search_function() -> None:
    import pkgutil
    import sys

    import rankopt
    from rankopt.searching import SearchSpace  # noqa: F401  (imports the subpackage)

    assert callable(rankopt.search)
    assert rankopt.search is sys.modules["rankopt.searching"].search
    # no subpackage or module of the root is named like a public name (nothing to hide)
    children = {m.name for m in pkgutil.iter_modules(rankopt.__path__)}
    assert not children & set(rankopt.__all__), children & set(rankopt.__all__)


def test_the_study_names_its_metrics_after_the_objectives(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _run(
        trained_digits_net,
        digits_data,
        n_trials=2,
        objectives=("accuracy", "n_params"),
        seed_with_vbmf=False,
        storage=url,
        study_name="named",
    )
    # what optuna-dashboard reads: the study's metric names, not "Objective 0 / 1"
    assert optuna.load_study(study_name="named", storage=url).metric_names == [
        "accuracy",
        "n_params",
    ]
    frame = study.trials_dataframe(multi_index=False)
    assert {"values_accuracy", "values_n_params"} <= set(frame.columns)
    # the typed record, among the study's user attributes (where the dashboard shows them)
    record = StudyRecord.of(study)
    assert study.user_attrs["schema_version"] == record.schema_version == STUDY_SCHEMA_VERSION
    assert record.objectives == ("accuracy", "n_params")
    assert record.dense.macs == profile(trained_digits_net, SHAPE).macs
    assert record.settings["finetune"]["steps"] == FAST["finetune_steps"]

    # a study an earlier version created (no metric names) gets them when it is resumed
    old = optuna.create_study(study_name="old", storage=url, directions=["maximize", "minimize"])
    assert old.metric_names is None
    _run(
        trained_digits_net,
        digits_data,
        n_trials=1,
        seed_with_vbmf=False,
        storage=url,
        study_name="old",
    )
    assert optuna.load_study(study_name="old", storage=url).metric_names == ["accuracy", "macs"]


def test_the_search_phases_run_one_at_a_time(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    """prepare -> open_study -> seed -> run, each called alone, as search() calls them."""
    from rankopt.searching.loop._phases import open_study, prepare, run, seed
    from rankopt.searching.loop._settings import SearchSettings

    s = SearchSettings(n_trials=4, sampler="random", **FAST)
    lines: list[str] = []
    prepared = prepare(
        trained_digits_net,
        digits_data["train"],
        digits_data["val"],
        s,
        max_macs=0.5,
        max_params=None,
        max_latency=None,
        input_shape=None,
        say=lines.append,
    )
    prof = profile(trained_digits_net, SHAPE)
    assert prepared.shape == SHAPE and prepared.table is not None  # the deployment runtime's
    assert prepared.budget.max_macs == math.floor(0.5 * prof.macs)
    cap = dict(prepared.budget.latency_cap_ms)  # plans no slower than dense (at most)
    assert set(cap) == set(prepared.table.model_ms)
    assert all(0 < cap[b] <= prepared.table.model_ms[b] * (1 + 1e-9) for b in cap)
    assert len(prepared.space.layer_names) >= 2

    opened = open_study(
        trained_digits_net,
        prepared,
        s,
        storage=None,
        name="phases",
        model_name="digitsnet",
        data_name="digits",
        heartbeat_interval=None,
        pruner=None,
    )
    assert opened.study.trials == []
    record = StudyRecord.of(opened.study)
    assert (record.max_macs, record.dense.macs) == (prepared.budget.max_macs, prof.macs)
    assert record.latency_cap_ms == prepared.budget.latency_cap_ms
    assert 0.8 < opened.dense_val_acc == record.dense.accuracy

    sensitivity = seed(prepared, opened, s, lines.append)
    assert set(sensitivity.points) == set(prepared.space.layer_names)
    waiting = opened.study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == s.max_seeds == 1

    study = run(
        prepared, opened, s, sensitivity, model_name="digitsnet", callbacks=(), say=lines.append
    )
    assert n_distinct_finished(study) == 4
    assert any(line.startswith("study 'phases': 0 finished trials, 4 to run") for line in lines)
