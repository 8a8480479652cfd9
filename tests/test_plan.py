"""CompressionPlan JSON, apply_plan, profile and cost on a whole model."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rankopt.errors import InvalidPlanError, UnknownNameError, UnsupportedLayerError
from rankopt.evaluators import cost, count_macs, profile
from rankopt.plan import SCHEMA_VERSION, CompressionPlan, LayerPlan, apply_plan, model_fingerprint

SHAPE = (3, 16, 16)


def _plan(model: nn.Module, layers: list[LayerPlan]) -> CompressionPlan:
    return CompressionPlan(
        model_name="tiny",
        fingerprint=model_fingerprint(model),
        input_shape=SHAPE,
        layers=tuple(layers),
    )


def _lp(model: nn.Module, name: str, method: str, **ranks: int) -> LayerPlan:
    weight = model.get_submodule(name).weight
    return LayerPlan(name, method, ranks, {}, tuple(weight.shape))


def test_profile_lists_every_layer_with_reasons(tiny_resnet: nn.Module) -> None:
    prof = profile(tiny_resnet, SHAPE)
    by_name = {info.name: info for info in prof.layers}
    assert set(by_name) == {
        "stem",
        "block1.conv1",
        "block1.conv2",
        "block1.short",
        "dw",
        "pw",
        "wide",
        "fc",
    }
    assert not by_name["dw"].eligible and "depthwise" in by_name["dw"].reason
    assert by_name["block1.conv1"].input_hw == (16, 16)
    assert by_name["block1.conv1"].output_hw == (8, 8)
    assert by_name["wide"].kernel_size == (3, 5)
    # Per-layer analytic MACs equal fvcore's per-module counts; the total is fvcore's own
    # (it also counts batch norm and pooling, so it is more than the conv/linear sum).
    from fvcore.nn import FlopCountAnalysis

    by_module = FlopCountAnalysis(tiny_resnet, torch.zeros(1, *SHAPE)).by_module()
    for info in prof.layers:
        assert info.macs == by_module[info.name], info.name
    assert prof.macs == count_macs(tiny_resnet, SHAPE) > sum(i.macs for i in prof.layers)
    assert prof.n_params == sum(p.numel() for p in tiny_resnet.parameters())
    # analytic stem: 16*16 outputs * 8 channels * 3*3*3
    assert by_name["stem"].macs == 16 * 16 * 8 * 27


def test_shared_and_unsupported_layers_are_listed() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            self.b = self.a  # the same module under two names
            self.c1 = nn.Conv1d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.b(self.a(x))
            return self.c1(y.flatten(2)).mean()

    prof = profile(Shared(), (4, 8, 8))
    by_name = {info.name: info for info in prof.layers}
    assert not by_name["a"].eligible and "shared by 2 parents" in by_name["a"].reason
    assert not by_name["c1"].eligible and "Conv1d" in by_name["c1"].reason


@pytest.mark.parametrize(
    "choices",
    [
        {"stem": ("tucker2", {"r_in": 2, "r_out": 4}), "fc": ("linear_svd", {"r": 4})},
        {
            "block1.conv1": ("tucker2", {"r_in": 4, "r_out": 8}),
            "block1.conv2": ("cp", {"r": 12}),
            "block1.short": ("svd", {"r": 5}),
            "pw": ("svd", {"r": 6}),
            "wide": ("spatial_svd", {"r": 9}),
            "fc": ("keep", {}),
        },
        {"wide": ("gkpd", {"r": 3}), "block1.conv2": ("svd", {"r": 3})},
    ],
)
def test_apply_plan_cost_matches_fvcore(
    tiny_resnet: nn.Module, choices: dict[str, tuple[str, dict[str, int]]]
) -> None:
    prof = profile(tiny_resnet, SHAPE)
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, n, m, **r) for n, (m, r) in choices.items()])
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    compressed = apply_plan(tiny_resnet, plan)
    predicted = cost(prof, plan)
    assert count_macs(compressed, SHAPE) == predicted.macs
    assert sum(p.numel() for p in compressed.parameters()) == predicted.n_params
    assert predicted.macs < prof.macs
    # the input model is untouched
    after = tiny_resnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(tiny_resnet.stem, nn.Conv2d)


def test_full_rank_plan_reproduces_dense_output(tiny_resnet: nn.Module) -> None:
    plan = _plan(
        tiny_resnet,
        [
            _lp(tiny_resnet, "block1.conv1", "tucker2", r_in=8, r_out=16),
            _lp(tiny_resnet, "block1.short", "svd", r=8),
            _lp(tiny_resnet, "wide", "svd", r=24),
            _lp(tiny_resnet, "fc", "linear_svd", r=10),
        ],
    )
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        dense = tiny_resnet(x)
        out = apply_plan(tiny_resnet, plan)(x)
    torch.testing.assert_close(out, dense, rtol=1e-4, atol=1e-4)


def test_plan_json_round_trip_is_byte_identical(tiny_resnet: nn.Module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, "stem", "tucker2", r_in=2, r_out=3)])
    path = plan.save(tmp_path / "plan.json")
    again = CompressionPlan.load(path)
    assert again == plan
    assert again.to_json() == path.read_text()
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 2


def test_plan_for_another_model_names_layer_and_shapes(tiny_resnet: nn.Module) -> None:
    other = nn.Sequential(nn.Conv2d(3, 9, 3))
    plan = _plan(other, [LayerPlan("0", "svd", {"r": 2}, {}, (9, 3, 3, 3))])
    with pytest.raises(InvalidPlanError, match="not in this model"):
        apply_plan(tiny_resnet, plan)
    # same names, other shapes
    bigger = _plan(tiny_resnet, [LayerPlan("stem", "svd", {"r": 2}, {}, (16, 3, 3, 3))])
    bigger = CompressionPlan("tiny", "0" * 16, SHAPE, bigger.layers)
    with pytest.raises(InvalidPlanError, match=r"'stem'.*\(8, 3, 3, 3\).*\(16, 3, 3, 3\)"):
        apply_plan(tiny_resnet, bigger)


@pytest.mark.parametrize("rank", [0, -3, 9])
def test_rank_out_of_range_names_layer_value_and_range(tiny_resnet: nn.Module, rank: int) -> None:
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, "block1.short", "svd", r=rank)])
    with pytest.raises(InvalidPlanError, match=rf"block1.short.*r={rank}.*\[1, 8\]"):
        apply_plan(tiny_resnet, plan)
    with pytest.raises(InvalidPlanError, match=r"\[1, 8\]"):
        cost(profile(tiny_resnet, SHAPE), plan)


def test_unknown_method_lists_choices(tiny_resnet: nn.Module) -> None:
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, "stem", "tucker3", r=2)])
    with pytest.raises(UnknownNameError, match="tucker2") as info:
        apply_plan(tiny_resnet, plan)
    assert "tucker3" in str(info.value)


def test_depthwise_layer_only_keeps(tiny_resnet: nn.Module) -> None:
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, "dw", "svd", r=2)])
    with pytest.raises(UnsupportedLayerError, match="depthwise"):
        apply_plan(tiny_resnet, plan)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("layers"), "layers"),
        (lambda d: d.update(schema_version=3), "schema_version"),
        (lambda d: d["model"].pop("fingerprint"), "model.fingerprint"),
        (lambda d: d.update(input_shape=[3, -1, 16]), "input_shape"),
        (lambda d: d["layers"][0].update(ranks={"r_in": "2"}), "layers[0].ranks.r_in"),
        (lambda d: d["layers"][0].pop("method"), "layers[0].method"),
        (lambda d: d["layers"].append(dict(d["layers"][0])), "layers"),
    ],
)
def test_corrupted_plan_names_the_field(tiny_resnet: nn.Module, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tiny_resnet, [_lp(tiny_resnet, "stem", "tucker2", r_in=2, r_out=3)])
    data = plan.to_dict()
    mutate(data)
    with pytest.raises(InvalidPlanError, match=f"'{__import__('re').escape(field)}'"):
        CompressionPlan.from_dict(data)


def test_unreadable_plan_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidPlanError, match="not valid JSON"):
        CompressionPlan.load(bad)
    with pytest.raises(InvalidPlanError, match="cannot read plan file"):
        CompressionPlan.load(tmp_path / "missing.json")


def test_layer_plan_full_ranks_round_trip_and_old_plans_still_read() -> None:
    lp = LayerPlan(
        "conv", "tucker2", {"r_in": 2, "r_out": 3}, {}, (8, 4, 3, 3), {"r_in": 4, "r_out": 8}
    )
    plan = CompressionPlan("m", "0" * 16, (1, 8, 8), (lp,))
    data = plan.to_dict()
    assert data["layers"][0]["full_ranks"] == {"r_in": 4, "r_out": 8}
    assert CompressionPlan.from_json(plan.to_json()) == plan
    # A plan written before full_ranks existed reads, and writes back without the key.
    del data["layers"][0]["full_ranks"]
    old = CompressionPlan.from_dict(data)
    assert old.layers[0].full_ranks == {}
    assert "full_ranks" not in old.to_dict()["layers"][0]
    data["layers"][0]["full_ranks"] = {"r_in": 0}
    with pytest.raises(InvalidPlanError, match=r"full_ranks\.r_in"):
        CompressionPlan.from_dict(data)
