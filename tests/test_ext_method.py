"""Acceptance: a method written outside the package (tests/ext_method_example.py) and
registered with ``rankopt.register_method`` is searched, reported, exported and applied,
with no other change to rankopt."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rankopt
from rankopt.searching import SearchSpace
from rankopt.studies import plot_layer_map
from rankopt.testing import MethodTestSuite

EXT = "ext_svd"
SHAPE = (1, 8, 8)
FAST: dict[str, Any] = {
    "finetune_steps": 10,
    "finetune_samples": 256,
    "batch_size": 32,
    "model_name": "digitsnet",
    "max_macs": 0.5,
    "rank_multiple": 1,  # not ONNX Runtime's channel block (16): DigitsNet's layers are small
}


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    """Import the example (it registers the method); unregister afterwards, so other test
    modules see only the built-in methods."""
    module = importlib.import_module("ext_method_example")
    assert EXT in rankopt.list_methods()
    yield
    from rankopt.spaces import _base

    _base._REGISTRY.pop(EXT, None)  # test isolation only; rankopt has no unregister
    sys.modules.pop(module.__name__, None)


class TestExternalMethodSuite(MethodTestSuite):
    """The shared checks, as an outside author would run them."""

    method = EXT


def _conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def test_search_offers_the_method_on_the_layers_it_supports(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    prof = rankopt.profile(trained_digits_net, SHAPE)
    space = SearchSpace(prof, None, n_outputs=10, min_layer_share=0.0)
    convs = _conv_layers(trained_digits_net)
    for name, offered in space.choices.items():
        assert (EXT in offered) == (name in convs), (name, offered)
    assert any(EXT in offered for offered in space.choices.values())

    study = rankopt.search(
        trained_digits_net, digits_data["train"], digits_data["val"], n_trials=1, **FAST
    )
    trial = study.trials[0]
    offered_in_trial = {
        key.removesuffix("/method"): tuple(dist.choices)  # type: ignore[attr-defined]
        for key, dist in trial.distributions.items()
        if key.endswith("/method")
    }
    assert offered_in_trial
    for name, choices in offered_in_trial.items():
        assert (EXT in choices) == (name in convs), (name, choices)


def test_front_figures_report_export_and_apply(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], tmp_path: Path
) -> None:
    study = rankopt.search(
        trained_digits_net,
        digits_data["train"],
        digits_data["val"],
        methods=[EXT],
        n_trials=3,
        prune=False,  # the method's own plans (a plugin on pruned layers: test_method_suite)
        **FAST,
    )
    # the front: its per-layer summary uses the method's own abbreviation
    front = rankopt.pareto_front(study, include_reference=False)
    assert len(front) > 0
    assert all("XSVD" in str(s) for s in front["layers"]), list(front["layers"])

    # the layer map: every cell of the method has a colour index and a rank fraction
    heat = plot_layer_map(study).data[0]
    methods_seen = 0
    for z_row, text_row in zip(heat.z, heat.text, strict=True):
        for z, text in zip(z_row, text_row, strict=True):
            assert z is not None and not math.isnan(z)
            if "XSVD" in text:
                methods_seen += 1
                assert "%" in text, text  # the rank fraction is known (not NaN)
    assert methods_seen > 0
    assert "external SVD" in heat.colorbar.ticktext
    assert any(color == "#8c564b" for _, color in heat.colorscale)

    # the report names it
    page = rankopt.report(study, tmp_path / "report.html").read_text()
    assert "XSVD" in page or "external SVD" in page

    # export: the plan records the method and its full ranks, survives JSON, and applies
    plan = rankopt.export_plan(study)
    used = [lp for lp in plan.layers if lp.method == EXT]
    assert used and all(lp.full_ranks for lp in used)
    path = plan.save(tmp_path / "plan.json")
    loaded = rankopt.CompressionPlan.load(path)
    compressed = rankopt.apply_plan(trained_digits_net, loaded)
    assert rankopt.count_macs(compressed, SHAPE) == plan.metrics["macs"]
    assert sum(p.numel() for p in compressed.parameters()) == plan.metrics["n_params"]
    with torch.no_grad():
        x = digits_data["val"][0]
        accuracy = float((compressed(x).argmax(1) == digits_data["val"][1]).float().mean())
    assert accuracy > 0.5
