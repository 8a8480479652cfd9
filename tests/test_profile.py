"""The sensitivity profile at scale (issue 36): layer-local Fisher scores, each decomposition
once, progress with an ETA, and (layer, method) units claimed through the storage."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from rankopt.evaluators import compute_logits, profile
from rankopt.plan import apply_plan
from rankopt.searching.objective import _fisher, _sensitivity
from rankopt.searching.objective._objective import TrialData
from rankopt.searching.space._space import SearchSpace
from rankopt.spaces import clear_cache, get_method, list_methods


def _set(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    out = copy.deepcopy(model)
    parent, _, leaf = name.rpartition(".")
    setattr(out.get_submodule(parent) if parent else out, leaf, module)
    return out


def _images(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("layer", ["block1.conv2", "wide", "fc"])
def test_local_score_is_the_network_kl_to_second_order(
    tiny_resnet: nn.Module, layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every class's gradient kept, ``1/2 delta^T F delta`` from the layer's output
    equals the network-output KL of a small perturbation of that layer (within 10 %)."""
    monkeypatch.setattr(_fisher, "FISHER_CLASSES", 10)
    images = _images()
    teacher = compute_logits(tiny_resnet, images)
    capture = _fisher.capture_layers(tiny_resnet, [layer], images)[layer]
    dense = tiny_resnet.get_submodule(layer)
    perturbed = copy.deepcopy(dense)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        w = perturbed.weight
        w.add_(0.03 * w.norm() / w.numel() ** 0.5 * torch.randn(w.shape, generator=gen))
    predicted = _fisher.local_score(capture, perturbed)
    actual = _sensitivity.kl_score(
        compute_logits(_set(tiny_resnet, layer, perturbed), images), teacher
    )
    assert actual > 0
    assert 0.9 < predicted / actual < 1.1, (predicted, actual)


def test_capture_groups_respect_the_byte_limit(tiny_resnet: nn.Module) -> None:
    names = ["stem", "block1.conv1", "block1.conv2", "block1.short", "pw", "wide", "fc"]
    images = _images(32)
    one = _fisher.capture_groups(tiny_resnet, names, images)
    assert one == [names]
    small = _fisher.capture_groups(tiny_resnet, names, images, limit_bytes=600_000)
    assert [n for g in small for n in g] == names and len(small) > 1
    sizes = _fisher._io_sizes(tiny_resnet, names, images)
    for group in small:
        assert len(group) == 1 or _fisher._layer_bytes(group, sizes) * 32 <= 600_000


def _space(model: nn.Module) -> SearchSpace:
    return SearchSpace(profile(model, (3, 12, 12)), None, n_outputs=10, min_layer_share=0.0)


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str, Any]]:
    """Count every basis and every basis-free decomposition, per (method, layer, ranks)."""
    calls: Counter[tuple[str, str, Any]] = Counter()
    for name in list_methods():
        cls = type(get_method(name))
        if "cache_basis" in vars(cls):
            real_basis = cls.cache_basis

            def basis(self: Any, w: Any, layer: Any, opts: Any, _real: Any = real_basis) -> Any:
                calls[(self.name, layer.name, "basis")] += 1
                return _real(self, w, layer, opts)

            monkeypatch.setattr(cls, "cache_basis", basis)
        elif "decompose" in vars(cls):
            real_dec = cls.decompose

            def dec(
                self: Any, w: Any, layer: Any, ranks: Any, o: Any, _real: Any = real_dec
            ) -> Any:
                calls[(self.name, layer.name, tuple(sorted(ranks.items())))] += 1
                return _real(self, w, layer, ranks, o)

            monkeypatch.setattr(cls, "decompose", dec)
    return calls


def test_profile_decomposes_each_basis_once_and_trials_reuse_it(
    tiny_resnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_cache()
    calls = _counting(monkeypatch)
    space = _space(tiny_resnet)
    images = _images()
    teacher = compute_logits(tiny_resnet, images)
    prof = _sensitivity.measure_sensitivity(tiny_resnet, space, images, teacher, score="fisher")
    assert calls and max(calls.values()) == 1  # no decomposition computed twice
    n_pairs = sum(len(m) for m in space.choices.values())
    assert prof.timing["n_pairs"] == n_pairs
    assert prof.timing["n_points"] == sum(len(p) for m in prof.points.values() for p in m.values())
    assert set(prof.timing["decompose_s"]) == {m for ms in space.choices.values() for m in ms}
    assert prof.timing["floor_s"] > 0 and prof.timing["capture_s"] > 0
    # A trial whose ranks are the profile's points decomposes nothing again.
    before = sum(calls.values())
    layers = []
    for layer, methods in prof.points.items():
        method = sorted(methods)[0]
        macs = prof.points[layer][method][0][0]
        cand = next(c for c in space.candidates(layer, method) if c.macs == macs)
        layers.append(space.layer_plan(layer, cand))
    apply_plan(tiny_resnet, space.plan(layers, model_name="t"))
    assert sum(calls.values()) == before


def test_profile_prints_points_and_time_left(
    tiny_resnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sensitivity, "_PROGRESS_EVERY_S", 0.0)
    lines: list[str] = []
    space = _space(tiny_resnet)
    images = _images(32)
    _sensitivity.measure_sensitivity(
        tiny_resnet,
        space,
        images,
        compute_logits(tiny_resnet, images),
        score="fisher",
        progress=lines.append,
    )
    counted = [ln for ln in lines if " points, " in ln and ln.endswith(" left")]
    assert counted, lines
    total = int(counted[0].split("/")[1].split()[0])
    assert total == sum(len(p.macs) for p in _sensitivity._pairs(space, 4))
    assert lines[-1].startswith(f"sensitivity profile: {total}/{total} points (")


def test_fisher_ranks_points_like_the_network_kl(
    trained_digits_net: nn.Module, digits_data: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """On a trained model, the predicted and the measured profiles order the points alike
    (Spearman over every point of every (layer, method))."""
    from scipy.stats import spearmanr

    model = trained_digits_net
    space = SearchSpace(profile(model, (1, 8, 8)), None, n_outputs=10, min_layer_share=0.0)
    images = digits_data["train"][0][:256]
    teacher = compute_logits(model, images)
    fisher = _sensitivity.measure_sensitivity(model, space, images, teacher, score="fisher")
    assert fisher.timing["score"] == "fisher"
    kl = _sensitivity.measure_sensitivity(model, space, images, teacher, score="kl")
    assert set(fisher.points) == set(kl.points)
    a, b = [], []
    for layer, methods in kl.points.items():
        for method, pts in methods.items():
            for macs, s in pts:
                a.append(fisher.score(layer, method, macs))
                b.append(s)
    assert len(a) > 20
    assert spearmanr(a, b).statistic > 0.8


def _trial_data(model: nn.Module, images: torch.Tensor) -> TrialData:
    logits = compute_logits(model, images)
    labels = logits.argmax(1)
    return TrialData(images, labels, logits, images, labels, logits, images)


def dead_worker_then_another(
    study: optuna.Study, model: nn.Module, monkeypatch: pytest.MonkeyPatch, units: int
) -> tuple[int, int]:
    """Worker A measures ``units`` units, then dies holding a claim on the next one; worker
    B (lease shortened) finishes the profile. Returns (units B measured, units in all)."""
    space = _space(model)
    data = _trial_data(model, _images(32))
    real = _sensitivity._Measurer.measure
    measured: list[str] = []

    class Died(BaseException):
        pass

    def dying(self: Any, pair: Any) -> Any:
        if len(measured) == units:
            raise Died  # after claiming this pair, before storing its result
        measured.append(pair.key)
        return real(self, pair)

    monkeypatch.setattr(_sensitivity._Measurer, "measure", dying)
    with pytest.raises(Died):
        _sensitivity.study_sensitivity(study, model, space, data, lambda _: None, worker="a")
    assert "sensitivity" not in study.user_attrs

    def counted(self: Any, pair: Any) -> Any:
        measured.append(pair.key)
        return real(self, pair)

    monkeypatch.setattr(_sensitivity._Measurer, "measure", counted)
    monkeypatch.setattr(_sensitivity, "PAIR_LEASE_S", 0.5)
    before = len(measured)
    prof = _sensitivity.study_sensitivity(
        study, model, space, data, lambda _: None, worker="b", poll_s=0.2
    )
    assert prof.covers(space.choices)
    assert study.user_attrs["sensitivity"] == prof.to_dict()
    assert len(set(measured)) == len(measured)  # no unit measured twice
    return len(measured) - before, prof.timing["n_pairs"]


def test_a_dead_worker_loses_only_its_claimed_unit(
    tiny_resnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    by_b, total = dead_worker_then_another(study, tiny_resnet, monkeypatch, units=3)
    assert by_b == total - 3


def test_auto_score_measures_small_models_on_the_network(
    tiny_resnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = _space(tiny_resnet)
    assert _sensitivity.auto_score(space, 256) == "kl"
    monkeypatch.setattr(_sensitivity, "KL_PROFILE_MACS", 0.0)
    assert _sensitivity.auto_score(space, 256) == "fisher"
    images = _images(32)
    prof = _sensitivity.measure_sensitivity(
        tiny_resnet, space, images, compute_logits(tiny_resnet, images)
    )
    assert prof.timing["score"] == "fisher" and prof.timing["capture_s"] > 0
