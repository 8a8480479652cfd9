"""Channel pruning: groups, plans that prune, exactness, costs, ONNX, and the search's views."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rankopt.budget import Budget
from rankopt.errors import InvalidPlanError
from rankopt.evaluators import count_macs, profile
from rankopt.latency import export_onnx
from rankopt.models import create_model
from rankopt.plan import ChannelPruning, CompressionPlan, LayerPlan, apply_plan, model_fingerprint
from rankopt.pruning import ChannelPruner, prune_model
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._proposal import Proposal
from rankopt.searching.space._space import SearchSpace

SHAPE = (1, 16, 16)


def _synthetic_sensitivity(space: SearchSpace) -> SensitivityProfile:
    """A made-up profile: every method scores 1.0 at 10 % of a layer's MACs, 0.2 at 50 %."""
    dense = {n: space.layer(n).macs for n in space.choices}
    points = {
        n: {m: ((dense[n] // 10, 1.0), (dense[n] // 2, 0.2)) for m in offered}
        for n, offered in space.choices.items()
    }
    return SensitivityProfile(points, dense)


@pytest.fixture(scope="module")
def resnet8() -> nn.Module:
    """The built-in CIFAR-style resnet8 (16/32/64 channels), random weights, BN statistics
    made non-trivial by a few training-mode batches."""
    torch.manual_seed(0)
    model = create_model("resnet8", in_channels=1, num_classes=10)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *SHAPE))
    return model.eval()


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_groups_couple_residual_producers_and_name_them_by_the_first(resnet8: nn.Module) -> None:
    pruner = ChannelPruner(resnet8, SHAPE)
    groups = pruner.groups
    # three inner groups (a block's first conv) and three residual sums (stem + layer1,
    # layer2's and layer3's conv2 + shortcut); the classifier's outputs are never a group
    assert set(groups) == {
        "conv1",
        "layer1.0.conv1",
        "layer2.0.conv1",
        "layer2.0.conv2",
        "layer3.0.conv1",
        "layer3.0.conv2",
    }
    assert groups["conv1"].producers == ("conv1", "layer1.0.conv2")
    assert groups["layer3.0.conv2"].producers == ("layer3.0.conv2", "layer3.0.shortcut.0")
    assert "fc" in groups["layer3.0.conv2"].consumers
    assert groups["layer2.0.conv1"].consumers == ("layer2.0.conv2",)
    assert groups["layer3.0.conv1"].n_channels == 64
    assert sorted(groups["layer3.0.conv1"].order) == list(range(64))
    # the offered counts: KEEP_FRACTIONS of the channels in multiples of 8, dense first
    assert groups["layer3.0.conv1"].counts(8) == (64, 56, 48, 40, 32, 24, 16)
    assert groups["layer1.0.conv1"].counts(8) == (16, 8)
    assert groups["layer1.0.conv1"].counts(16) == (16,)


def test_the_kept_channels_are_the_largest_by_l2_group_magnitude(resnet8: nn.Module) -> None:
    group = ChannelPruner(resnet8, SHAPE).groups["layer2.0.conv1"]
    conv = resnet8.get_submodule("layer2.0.conv1").weight.detach()
    nxt = resnet8.get_submodule("layer2.0.conv2").weight.detach()
    bn = resnet8.get_submodule("layer2.0.bn1")
    # the channel with the largest summed squared weights over the group comes first
    # (torch-pruning normalises each layer's share; the top channel by the plain norm of
    # the conv, the BN and the next conv's slice is among its top few)
    norms = conv.pow(2).flatten(1).sum(1) + nxt.pow(2).transpose(0, 1).flatten(1).sum(1)
    norms = norms + bn.weight.detach().pow(2) + bn.bias.detach().pow(2)
    assert int(torch.argmax(norms)) in group.order[:4]
    assert group.kept(8) == tuple(sorted(group.order[:8]))
    with pytest.raises(InvalidPlanError, match="cannot keep 40 channels; it has 32"):
        group.kept(40)


def test_pruning_nothing_is_the_dense_model_exactly(resnet8: nn.Module) -> None:
    pruner = ChannelPruner(resnet8, SHAPE)
    everything = [
        ChannelPruning(g.name, g.n_channels, tuple(range(g.n_channels)))
        for g in pruner.groups.values()
    ]
    same = prune_model(resnet8, SHAPE, everything)
    with torch.no_grad():
        assert torch.equal(same(_x()), resnet8(_x()))
    plan = CompressionPlan(
        "resnet8", model_fingerprint(resnet8), SHAPE, (), pruning=tuple(everything)
    )
    with torch.no_grad():
        assert torch.equal(apply_plan(resnet8, plan)(_x()), resnet8(_x()))


def test_a_pruned_plan_removes_the_channels_and_its_costs_are_fvcores(resnet8: nn.Module) -> None:
    space = SearchSpace(profile(resnet8, SHAPE), n_outputs=10, pruner=ChannelPruner(resnet8, SHAPE))
    channels = {"layer3.0.conv1": 24, "layer3.0.conv2": 40, "conv1": 8}
    view = space.pruned(channels)
    assert view is space.pruned(dict(channels))  # cached
    assert space.pruned({"layer3.0.conv1": 64}) is space  # the dense count prunes nothing
    assert view.layer("layer3.0.conv1").out_channels == 24
    assert view.layer("layer3.0.conv2").in_channels == 24
    assert view.layer("layer3.0.conv2").out_channels == 40
    assert view.layer("layer1.0.conv1").in_channels == 8
    # a realised plan: the pruned model plus decompositions, its analytic MACs = fvcore's
    proposal = Proposal(
        {n: "tucker2" if "tucker2" in o else o[0] for n, o in view.choices.items()},
        channels=channels,
    )
    budget = Budget(max_macs=int(0.3 * space.profile.macs))
    sens = _synthetic_sensitivity(space)
    realised = space.realise(proposal, budget, sens)
    assert realised is not None
    assert [p.group for p in realised.pruning] == ["conv1", "layer3.0.conv1", "layer3.0.conv2"]
    plan = space.plan(realised.layers, model_name="resnet8", pruning=realised.pruning)
    small = apply_plan(resnet8, plan)
    assert count_macs(small, SHAPE) == realised.macs <= budget.max_macs
    assert sum(p.numel() for p in small.parameters()) == realised.n_params
    with torch.no_grad():
        assert torch.isfinite(small(_x())).all()


def test_pruning_plans_round_trip_and_old_plans_load(resnet8: nn.Module, tmp_path: Any) -> None:
    entry = ChannelPruning("layer2.0.conv1", 32, (0, 3, 5, 31))
    plan = CompressionPlan(
        "resnet8",
        model_fingerprint(resnet8),
        SHAPE,
        (LayerPlan("layer2.0.conv2", "svd", {"r": 4}, weight_shape=(32, 4, 3, 3)),),
        pruning=(entry,),
    )
    again = CompressionPlan.load(plan.save(tmp_path / "p.json"))
    assert again == plan
    assert json.loads((tmp_path / "p.json").read_text())["pruning"] == [
        {"group": "layer2.0.conv1", "n_channels": 32, "kept": [0, 3, 5, 31]}
    ]
    small = apply_plan(resnet8, again)
    assert small.get_submodule("layer2.0.conv1").out_channels == 4
    # a plan written before pruning existed (schema 1, no "pruning") still loads and applies
    old = plan.to_dict()
    old["schema_version"] = 1
    del old["pruning"]
    old["layers"] = []
    loaded = CompressionPlan.from_dict(old)
    assert loaded.pruning == ()
    with torch.no_grad():
        assert torch.equal(apply_plan(resnet8, loaded)(_x()), resnet8(_x()))


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"group": "layer2.0.conv1", "n_channels": 32, "kept": [0, 40]}, "pruning[0].kept"),
        ({"group": "layer2.0.conv1", "n_channels": 32, "kept": []}, "pruning[0].kept"),
        ({"group": "layer2.0.conv1", "n_channels": 32, "kept": [1, 1]}, "pruning[0].kept"),
        ({"group": "", "n_channels": 32, "kept": [1]}, "pruning[0].group"),
        ({"group": "x", "n_channels": 0, "kept": [1]}, "pruning[0].n_channels"),
    ],
)
def test_a_bad_pruning_entry_names_its_field(
    resnet8: nn.Module, entry: dict[str, Any], field: str
) -> None:
    data = CompressionPlan("resnet8", model_fingerprint(resnet8), SHAPE, ()).to_dict()
    data["pruning"] = [entry]
    with pytest.raises(InvalidPlanError, match=re.escape(f"'{field}'")):
        CompressionPlan.from_dict(data)


def test_a_pruning_entry_that_does_not_fit_the_model_is_refused(resnet8: nn.Module) -> None:
    fp = model_fingerprint(resnet8)
    wrong_count = ChannelPruning("layer2.0.conv1", 16, (0, 1))
    with pytest.raises(InvalidPlanError, match="the layer has 32 output channels"):
        apply_plan(resnet8, CompressionPlan("r", fp, SHAPE, (), pruning=(wrong_count,)))
    missing = ChannelPruning("layer9.conv", 16, (0, 1))
    with pytest.raises(
        InvalidPlanError, match=re.escape("'layer9.conv' is not a layer of the model")
    ):
        apply_plan(resnet8, CompressionPlan("r", fp, SHAPE, (), pruning=(missing,)))


def test_pruned_and_decomposed_plans_run_in_onnx_runtime(resnet8: nn.Module, tmp_path: Any) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pruner = ChannelPruner(resnet8, SHAPE)
    entries = pruner.entries({"layer2.0.conv2": 16, "layer3.0.conv1": 40})
    pruned = prune_model(resnet8, SHAPE, entries)
    shape = tuple(pruned.get_submodule("layer3.0.conv2").weight.shape)
    plan = CompressionPlan(
        "resnet8",
        model_fingerprint(resnet8),
        SHAPE,
        (LayerPlan("layer3.0.conv2", "tucker2", {"r_in": 8, "r_out": 16}, weight_shape=shape),),
        pruning=entries,
    )
    small = apply_plan(resnet8, CompressionPlan.from_json(plan.to_json()))
    check = export_onnx(small, SHAPE, tmp_path / "small.onnx")
    assert check is not None
    session = ort.InferenceSession(str(tmp_path / "small.onnx"), providers=["CPUExecutionProvider"])
    x = _x(3)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, small(x).numpy(), rtol=1e-4, atol=1e-4)


def test_a_pruned_view_scales_the_latency_table_by_each_layers_macs(resnet8: nn.Module) -> None:
    from rankopt.latency import LatencyTable

    prof = profile(resnet8, SHAPE)
    layers = {i.name: i for i in prof.eligible_layers}
    dense_ms = {(n, b): 0.1 * (k + 1) * b for k, n in enumerate(layers) for b in (1, 64)}
    table = LatencyTable(
        layers=layers,
        batch_sizes=(1, 64),
        methods=("tucker2",),
        dense_ms=dense_ms,
        curves={
            (n, "tucker2", b): ((i.macs // 10, 0.5), (9 * i.macs // 10, 0.8))
            for n, i in layers.items()
            for b in (1, 64)
        },
        model_ms={1: 10.0, 64: 640.0},
        n_threads=1,
    )
    pruner = ChannelPruner(resnet8, SHAPE)
    pruned = profile(pruner.prune({"layer3.0.conv1": 32}), SHAPE)
    view = table.with_layers({i.name: i for i in pruned.eligible_layers})
    changed = {"layer3.0.conv1", "layer3.0.conv2"}  # its outputs, the next conv's inputs
    for n in layers:
        s = 0.5 if n in changed else 1.0
        assert view.dense_layer_ms(n, 64) == pytest.approx(s * table.dense_layer_ms(n, 64))
    lost = sum(0.5 * table.dense_layer_ms(n, 1) for n in changed)
    assert view.model_ms[1] == pytest.approx(10.0 - lost)
    # a decomposition of the pruned layer: the dense curve's ratio at the same share of MACs
    ranks = {"r_in": 16, "r_out": 24}
    from rankopt.spaces import get_method

    macs = get_method("tucker2").macs(view.layers["layer3.0.conv1"], ranks)
    d = layers["layer3.0.conv1"].macs
    assert d // 10 < 2 * macs < 9 * d // 10
    ratio = float(np.interp(2 * macs, [d // 10, 9 * d // 10], [0.5, 0.8]))
    assert view.predict_layer_ms("layer3.0.conv1", "tucker2", ranks, {}, 1) == pytest.approx(
        ratio * view.dense_layer_ms("layer3.0.conv1", 1)
    )


def test_pruning_reaches_latencies_decomposition_alone_cannot(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    from rankopt import search
    from rankopt.errors import BudgetError

    fast: dict[str, Any] = {
        "finetune_steps": 10,
        "finetune_samples": 128,
        "batch_size": 32,
        "rank_multiple": 1,
        "model_name": "digitsnet",
    }
    data = (digits_data["train"], digits_data["val"])
    with pytest.raises(BudgetError, match=r"raise the budget to at least (\d+)%") as refused:
        search(trained_digits_net, *data, max_latency=0.05, prune=False, n_trials=1, **fast)
    lowest = float(re.search(r"at least (\d+)%", str(refused.value)).group(1)) / 100
    budget = 0.9 * lowest
    study = search(trained_digits_net, *data, max_latency=budget, prune=True, n_trials=8, **fast)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done
    for t in done:
        assert t.user_attrs["plan"]["pruning"], t.number  # below reach without pruning
        assert t.user_attrs["latency_ratio_batch1"] <= budget + 1e-9
        assert t.user_attrs["latency_ratio_batch64"] <= budget + 1e-9
    seeds = [t.user_attrs.get("seed") for t in study.trials]
    assert "prune_uniform" in seeds, seeds
    # the recommended plan exports with its pruning and applies: fvcore's MACs = the trial's
    from rankopt.studies import export_plan

    plan = export_plan(study)
    chosen = study.trials[plan.provenance["trial"]]
    assert plan.pruning and plan.to_dict()["pruning"] == chosen.user_attrs["plan"]["pruning"]
    small = apply_plan(trained_digits_net, CompressionPlan.from_json(plan.to_json()))
    assert count_macs(small, (1, 8, 8)) == chosen.user_attrs["macs"]


def test_the_model_outputs_are_never_a_group() -> None:
    # a net that ends with a conv (no Linear classifier): its output channels stay
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 1))
    net = nn.Sequential(net, nn.Flatten())
    assert set(ChannelPruner(net.eval(), (1, 6, 6)).groups) == {"0.0"}


def test_a_pruned_models_time_is_measured_not_scaled_from_macs(
    resnet8: nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from rankopt.latency import LatencyTable, _pruned, pruned_table

    prof = profile(resnet8, SHAPE)
    layers = {i.name: i for i in prof.eligible_layers}
    table = LatencyTable(
        layers=layers,
        batch_sizes=(1, 64),
        methods=(),
        dense_ms={(n, b): 1.0 * b for n in layers for b in (1, 64)},
        curves={},
        model_ms={1: 10.0, 64: 640.0},
        n_threads=1,
    )
    timed: list[tuple[int, int]] = []

    def pair(runtime: str, models: Any, x: torch.Tensor, n_runs: int) -> list[float]:
        timed.append((x.shape[0], len(models)))
        return [4.0, 3.0]  # the pruned model at 0.75x dense, whatever its MACs

    monkeypatch.setattr(_pruned, "time_pair_ms", pair)
    pruner = ChannelPruner(resnet8, SHAPE)
    small = pruner.prune({"layer3.0.conv1": 16})
    small_layers = {i.name: i for i in profile(small, SHAPE).layers}
    view = pruned_table(table, resnet8, small, small_layers, SHAPE)
    assert timed == [(1, 2), (64, 2)]
    assert view.model_ms == {1: pytest.approx(7.5), 64: pytest.approx(480.0)}
    assert view.layers["layer3.0.conv1"].out_channels == 16
    # with a cache file, a configuration is timed once per machine: a second call (another
    # process, another worker) reads it
    cached = dataclasses.replace(table, cache_path=tmp_path / "table.json")
    for _ in range(2):
        again = pruned_table(cached, resnet8, small, small_layers, SHAPE)
        assert again.model_ms == view.model_ms
    assert timed == [(1, 2), (64, 2)] * 2
    assert (tmp_path / "table.pruned.json").exists()
