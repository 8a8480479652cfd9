"""The search's allocation: BN calibration, offered choices, budgets met, plans from params."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from rankopt import calibrate_bn
from rankopt.budget._budget import Budget
from rankopt.errors import BudgetError, DataError, SettingsError
from rankopt.evaluators import count_macs, evaluate_accuracy, profile
from rankopt.latency._runtimes import OnnxRuntime, TorchRuntime
from rankopt.plan import CompressionPlan, apply_plan
from rankopt.pruning import ChannelPruner
from rankopt.searching import search
from rankopt.searching.objective._duplicates import n_distinct_finished
from rankopt.searching.space._allocation import Candidate, allocate, allocate_uniform
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._space import SearchSpace
from rankopt.spaces import get_method
from rankopt.studies import export_plan

SHAPE = (1, 8, 8)
FAST: dict[str, Any] = {"finetune_steps": 15, "finetune_samples": 256, "batch_size": 32}


class BNDigitsNet(nn.Module):
    """DigitsNet with BatchNorm after every conv (8x8 digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def bn_net(digits_data: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    model = BNDigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = digits_data["train"]
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(300):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------- BN calibration
def test_calibration_leaves_the_dense_model_unchanged(
    bn_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    x_val, y_val = digits_data["val"]
    before = evaluate_accuracy(bn_net, x_val, y_val)
    model = apply_plan(bn_net, _plan(bn_net, {}))  # a copy
    assert calibrate_bn(model, digits_data["train"][0]) is model
    after = evaluate_accuracy(model, x_val, y_val)
    assert before > 0.8
    assert abs(after - before) <= 0.02
    assert not model.training and not model.bn1.training  # modes restored
    assert model.bn1.momentum == 0.1  # momentum restored


def test_calibration_raises_a_truncated_tucker2_plan(
    bn_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    x_val, y_val = digits_data["val"]
    ranks = {"conv2": {"r_in": 12, "r_out": 12}, "conv3": {"r_in": 12, "r_out": 12}}
    small = apply_plan(bn_net, _plan(bn_net, {k: ("tucker2", v) for k, v in ranks.items()}))
    stale = evaluate_accuracy(small, x_val, y_val)
    calibrate_bn(small, digits_data["train"][0][:512])
    calibrated = evaluate_accuracy(small, x_val, y_val)
    # measured: 0.20 with the dense statistics, 0.91 re-calibrated (dense: 1.00)
    assert calibrated >= stale + 0.3, (stale, calibrated)


def test_calibration_rejects_bad_input(bn_net: nn.Module) -> None:
    with pytest.raises(SettingsError, match="batch_size = 1"):
        calibrate_bn(bn_net, torch.zeros(4, 1, 8, 8), batch_size=1)
    with pytest.raises(DataError, match="at least 2 images"):
        calibrate_bn(bn_net, torch.zeros(1, 1, 8, 8))


def _plan(model: nn.Module, layers: dict[str, tuple[str, dict[str, int]]]) -> CompressionPlan:
    prof = profile(model, SHAPE)
    space = SearchSpace(prof, min_layer_share=0.0)
    from rankopt.plan import LayerPlan

    lps = [
        LayerPlan(
            layer=name,
            method=method,
            ranks=ranks,
            options={},
            weight_shape=prof.layer(name).weight_shape,
        )
        for name, (method, ranks) in layers.items()
    ]
    return space.plan(lps, model_name="bn")


# ---------------------------------------------------------------- offered choices
def test_no_offered_choice_costs_as_much_as_the_dense_layer(
    trained_digits_net: nn.Module, tiny_resnet: nn.Module
) -> None:
    for model, shape in ((trained_digits_net, SHAPE), (tiny_resnet, (3, 16, 16))):
        space = SearchSpace(profile(model, shape), min_layer_share=0.0)
        assert space.choices
        for name, methods in space.choices.items():
            info = space.layer(name)
            for method in methods:
                cands = space.candidates(name, method)
                assert cands, (name, method)
                for c in cands:
                    assert c.macs < info.macs and c.n_params < info.n_params, (name, c)


def test_input_conv_gets_no_costlier_tucker2_and_1x1_gets_only_svd(
    trained_digits_net: nn.Module,
) -> None:
    space = SearchSpace(profile(trained_digits_net, SHAPE), min_layer_share=0.0)
    # conv1 is 1 -> 16 channels: Tucker-2 (r_in = 1) is cheaper than dense only while
    # 1 + 9*r_out + 16*r_out < 9*16 per pixel, i.e. r_out <= 5
    assert max(c.ranks["r_out"] for c in space.candidates("conv1", "tucker2")) == 5
    assert space.choices["conv4"] == ("svd",)  # 1x1 conv: the matrix factorisation only


def test_the_classifier_is_never_factorised_below_its_outputs(
    trained_digits_net: nn.Module,
) -> None:
    prof = profile(trained_digits_net, SHAPE)
    space = SearchSpace(prof, min_layer_share=0.0, n_outputs=10)
    assert space.min_rank(prof.layer("fc")) == 10
    # rank >= 10 on a 32 -> 10 Linear always costs more than the dense layer
    assert "fc" not in space.choices
    free = SearchSpace(prof, min_layer_share=0.0)
    assert "fc" in free.choices and free.candidates("fc", "linear_svd")[0].ranks == {"r": 1}


def test_negligible_layers_are_kept(trained_digits_net: nn.Module) -> None:
    prof = profile(trained_digits_net, SHAPE)
    shares = {
        info.name: max(info.macs / prof.macs, info.n_params / prof.n_params)
        for info in prof.eligible_layers
    }
    threshold = sorted(shares.values())[1] + 1e-9  # the two smallest layers
    space = SearchSpace(prof, min_layer_share=threshold)
    kept = {n for n, s in shares.items() if s < threshold}
    assert len(kept) == 2 and not kept & set(space.choices)


# ---------------------------------------------------------------- allocation
def _cands(dense: int, scores: list[float]) -> list[Candidate]:
    n = len(scores)
    out = [Candidate("keep", {}, {}, dense, dense, 0.0)]
    out += [
        Candidate("svd", {"r": i + 1}, {}, dense * (i + 1) // (n + 1), 0, s)
        for i, s in enumerate(scores)
    ]
    return out


def test_allocation_meets_the_budget_and_spends_it_where_it_matters() -> None:
    sensitive = _cands(1000, [8.0, 4.0, 2.0, 1.0])  # costs 200, 400, 600, 800
    robust = _cands(1000, [0.4, 0.2, 0.1, 0.05])
    chosen = allocate([sensitive, robust], [1.0, 1.0], {"macs": 1000}, {})
    assert chosen is not None
    assert sum(c.macs for c in chosen) <= 1000
    assert chosen[0].macs > chosen[1].macs  # the sensitive layer gets the larger rank
    # a larger weight on the robust layer moves rank to it
    swapped = allocate([sensitive, robust], [1.0, 100.0], {"macs": 1000}, {})
    assert swapped is not None and swapped[1].macs > chosen[1].macs
    # below the cheapest reachable total: None
    assert allocate([sensitive, robust], [1.0, 1.0], {"macs": 399}, {}) is None
    # no budget: the lowest weighted score, i.e. keep
    free = allocate([sensitive, robust], [1.0, 1.0], {}, {})
    assert free is not None and [c.method for c in free] == ["keep", "keep"]


def test_allocation_fills_the_budget() -> None:
    layers = [_cands(1000, [5.0 / (i + 1) ** 2 for i in range(9)]) for _ in range(4)]
    for budget in (900, 1700, 2600, 3500):
        chosen = allocate(layers, [1.0, 2.0, 0.5, 1.0], {"macs": budget}, {})
        assert chosen is not None
        total = sum(c.macs for c in chosen)
        assert budget - 100 < total <= budget  # one rank step (100 macs) of slack at most


# ---------------------------------------------------------------- search
def test_realised_plans_are_a_function_of_the_trial_parameters(
    bn_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    study = search(
        bn_net,
        digits_data["train"],
        digits_data["val"],
        model_name="bn",
        max_macs=0.4,
        n_trials=6,
        sampler="random",
        latency_runtime=None,  # the space below is rebuilt without a latency table
        **FAST,
    )
    prof = profile(bn_net, SHAPE)
    multiple = study.user_attrs["settings"]["rank_multiple"]
    pruner = ChannelPruner(bn_net, SHAPE)  # the search prunes channels by default
    space = SearchSpace(prof, n_outputs=10, rank_multiple=multiple, pruner=pruner)
    assert space.channel_choices
    sensitivity = SensitivityProfile.from_dict(study.user_attrs["sensitivity"])
    assert sensitivity is not None
    budget = Budget(max_macs=study.user_attrs["budget"]["max_macs"])
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert n_distinct_finished(study) == 6  # plus any trial that reused an earlier result
    assert any(t.user_attrs["plan"]["pruning"] for t in trials)
    for t in trials:
        again = space.realise(space.proposal_from_params(t.params), budget, sensitivity)
        assert again is not None
        stored = CompressionPlan.from_dict(t.user_attrs["plan"])
        assert [(lp.layer, lp.method, dict(lp.ranks)) for lp in again.layers] == [
            (lp.layer, lp.method, dict(lp.ranks)) for lp in stored.layers
        ]
        assert again.pruning == stored.pruning
        # the recorded cost is fvcore's on the applied plan, and within the budget
        assert t.user_attrs["macs"] == count_macs(apply_plan(bn_net, stored), SHAPE)
        assert t.user_attrs["macs"] <= budget.max_macs


def test_the_sensitivity_profile_is_measured_once_per_study(
    bn_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    lines: list[str] = []
    kwargs: dict[str, Any] = dict(
        model_name="bn", max_macs=0.5, storage=url, study_name="s", progress=lines.append, **FAST
    )
    search(bn_net, digits_data["train"], digits_data["val"], n_trials=2, **kwargs)
    assert any("measuring the sensitivity profile" in line for line in lines)
    lines.clear()
    study = search(bn_net, digits_data["train"], digits_data["val"], n_trials=3, **kwargs)
    assert not any("measuring the sensitivity profile" in line for line in lines)
    assert n_distinct_finished(study) == 3
    optuna.delete_study(study_name="s", storage=url)


# ---------------------------------------------------------------- latency budget
def test_a_latency_budget_below_reach_fails_before_any_trial(
    bn_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any, monkeypatch: Any
) -> None:
    # Timings from conftest's cost model: the test checks the error, not this machine's speed.
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(BudgetError, match=r"max_latency = .* below the smallest predicted") as err:
        search(
            bn_net,
            digits_data["train"],
            digits_data["val"],
            model_name="bn",
            max_latency="1%",
            n_trials=2,
            storage=storage,
            latency_runtime="torch",
            **FAST,
        )
    assert optuna.get_all_study_names(storage) == []
    # the runtime is named, and on eager PyTorch the error points to ONNX Runtime
    assert "runtime 'torch'" in str(err.value)
    assert "--latency-runtime onnxruntime" in str(err.value)
    with pytest.raises(BudgetError, match="max_latency = 'fast' is not a latency budget"):
        search(
            bn_net,
            digits_data["train"],
            digits_data["val"],
            model_name="bn",
            max_latency="fast",
            n_trials=2,
            **FAST,
        )


def test_a_latency_budget_is_met_by_every_trial_as_predicted(
    bn_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any, monkeypatch: Any
) -> None:
    # Timings from conftest's deterministic cost model: the test checks the allocation under
    # a latency budget, not this machine's speed (benchmarks/ measure that).
    study = search(
        bn_net,
        digits_data["train"],
        digits_data["val"],
        model_name="bn",
        max_latency="90%",
        n_trials=4,
        sampler="random",
        latency_runtime="torch",
        **FAST,
    )
    dense = study.user_attrs["dense"]["latency_ms"]
    limits = dict(study.user_attrs["budget"]["max_latency_ms"])
    assert set(limits) == {1, 64}
    for b, ms in limits.items():
        assert ms == pytest.approx(0.9 * dense[str(b)])
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        for b, ms in limits.items():
            assert t.user_attrs[f"latency_ms_batch{b}"] <= ms * (1 + 1e-9)
        assert t.user_attrs["latency_ms"] == t.user_attrs["latency_ms_batch1"]
        methods = {lp["method"] for lp in t.user_attrs["plan"]["layers"]}
        assert not methods & {"cp", "gkpd"}  # not latency-friendly: not offered


def _fraction_cands(dense: int, n: int) -> list[Candidate]:
    return [Candidate("keep", {}, {}, dense, dense, 0.0)] + [
        Candidate("svd", {"r": i}, {}, dense * i // n, 0, 1.0 / i, fraction=i / n)
        for i in range(1, n)
    ]


def test_uniform_allocation_gives_every_layer_one_rank_fraction() -> None:
    small, large = _fraction_cands(100, 10), _fraction_cands(1000, 10)
    chosen = allocate_uniform([small, large], [1.0, 1.0], {"macs": 550}, {})
    assert chosen is not None and [c.fraction for c in chosen] == [0.5, 0.5]
    assert all(c.method != "keep" for c in chosen)
    # a weight of 2 on the small layer: twice the fraction (up to its rank path), f < 0.5
    weighted = allocate_uniform([small, large], [2.0, 1.0], {"macs": 550}, {})
    assert weighted is not None and [c.fraction for c in weighted] == [0.9, 0.4]
    assert allocate_uniform([small, large], [1.0, 1.0], {"macs": 100}, {}) is None


def test_rank_multiple_rounds_every_offered_rank(tiny_resnet: nn.Module) -> None:
    space = SearchSpace(profile(tiny_resnet, (3, 16, 16)), min_layer_share=0.0, rank_multiple=4)
    checked = 0
    for name, methods in space.choices.items():
        info = space.layer(name)
        for method in methods:
            full = get_method(method).rank_space(info)
            for c in space.candidates(name, method):
                for k, r in c.ranks.items():
                    assert r % 4 == 0 or r == full[k], (name, method, c.ranks, full)
                    checked += 1
                assert c.macs < info.macs
    assert checked > 20


def test_the_budget_scales_macs_first_then_params_then_latency() -> None:
    dense = {"macs": 1000.0, "n_params": 200.0, "latency_ms@1": 2.0, "latency_ms@64": 40.0}
    latency = ((1, 1.5), (64, 30.0))
    cases = [
        (Budget(max_macs=500, max_params=50, max_latency_ms=latency), "macs", Budget(max_macs=250)),
        (Budget(max_params=50, max_latency_ms=latency), "n_params", Budget(max_params=50)),
        (
            Budget(max_latency_ms=latency),
            "latency_ms",
            Budget(max_latency_ms=((1, 0.5), (64, 10.0))),
        ),
        (Budget(), None, Budget(max_macs=250)),
    ]
    for budget, lead, at_a_quarter in cases:
        assert budget.leading() == lead
        assert budget.scaled(0.25, dense) == at_a_quarter


# ------------------------------------------------------- never slower than dense (issue 37)
PER_OP_MS = 2e-3
"""The cost model below charges each conv / linear this much per forward, whatever the batch:
at batch 1 most factorised layers (two or three convs for one) are slower than dense."""


def _per_op_ms(module: nn.Module, batch_size: int) -> float:
    n_ops = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in module.modules())
    return 1e-6 * batch_size * sum(p.numel() for p in module.parameters()) + PER_OP_MS * n_ops


def _per_op_swapped(
    _self: Any, model: nn.Module, name: str, modules: list[nn.Module], x: torch.Tensor, **_: Any
) -> list[float]:
    base = _per_op_ms(model, x.shape[0]) - _per_op_ms(model.get_submodule(name), x.shape[0])
    return [base + _per_op_ms(m, x.shape[0]) for m in modules]


def _per_op_models(_self: Any, models: list[nn.Module], x: torch.Tensor, **_: Any) -> list[float]:
    return [_per_op_ms(m, x.shape[0]) for m in models]


@pytest.mark.real_latency  # conftest's cost model makes every decomposition faster
def test_by_default_no_trial_and_no_recommended_plan_is_slower_than_dense(
    bn_net: nn.Module, digits_data: dict[str, Any], tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path))
    for runtime in (TorchRuntime, OnnxRuntime):
        monkeypatch.setattr(runtime, "time_swapped_ms", _per_op_swapped)
        monkeypatch.setattr(runtime, "time_models_ms", _per_op_models)
    kwargs: dict[str, Any] = dict(model_name="bn", max_macs=0.7, n_trials=6, sampler="random")
    data = (digits_data["train"], digits_data["val"])
    study = search(bn_net, *data, **kwargs, **FAST)  # the default runtime: ONNX Runtime
    assert study.user_attrs["settings"]["latency_runtime"] == "onnxruntime"
    dense = {int(b): ms for b, ms in study.user_attrs["dense"]["latency_ms"].items()}
    assert set(dense) == {1, 64}
    cap = dict(study.user_attrs["budget"]["latency_cap_ms"])
    assert cap == pytest.approx(dense)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert trials
    for t in trials:
        for b, ms in dense.items():
            ratio = t.user_attrs[f"latency_ratio_batch{b}"]
            assert ratio == pytest.approx(t.user_attrs[f"latency_ms_batch{b}"] / ms)
            assert ratio <= 1 + 1e-9
    plan = export_plan(study)
    assert plan.metrics["latency_ratio_batch1"] <= 1 + 1e-9
    assert plan.metrics["latency_ratio_batch64"] <= 1 + 1e-9
    # The cap is what held them: allowed to, the same search makes slower plans.
    slower = search(bn_net, *data, **kwargs, allow_slower=True, study_name="slower", **FAST)
    assert slower.user_attrs["budget"].get("latency_cap_ms") is None
    ratios = [t.user_attrs["latency_ratio_batch1"] for t in slower.get_trials()]
    assert max(ratios) > 1.0


def test_a_latency_budget_slower_than_dense_needs_allow_slower(
    bn_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    data = (digits_data["train"], digits_data["val"])
    with pytest.raises(BudgetError, match=r"max_latency = '120%' allows .*--allow-slower"):
        search(bn_net, *data, model_name="bn", max_latency="120%", n_trials=1, **FAST)
    study = search(
        bn_net, *data, model_name="bn", max_latency="120%", n_trials=1, allow_slower=True, **FAST
    )
    dense = study.user_attrs["dense"]["latency_ms"]
    limits = dict(study.user_attrs["budget"]["max_latency_ms"])
    assert limits[1] == pytest.approx(1.2 * dense["1"])
    with pytest.raises(SettingsError, match="max_latency = '50%' needs a latency runtime"):
        search(bn_net, *data, max_latency="50%", n_trials=1, latency_runtime=None, **FAST)
    with pytest.raises(SettingsError, match=r"latency_runtime = None .* measure_latency=True"):
        search(bn_net, *data, n_trials=1, latency_runtime=None, measure_latency=True, **FAST)
