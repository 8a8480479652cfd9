"""Shared fixtures: tiny models (``rankopt_testmodels``) and data, milliseconds on the CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import torch
from rankopt_testmodels import TinyResNet, train_digits_net_on
from torch import nn

from rankopt.latency._pruned import time_pair_ms

# One thread: tiny models run fastest so, and timings do not depend on other processes
# competing for the two cores (torch threads spin-wait when oversubscribed).
torch.set_num_threads(1)


REAL_TIME_PAIR_MS = time_pair_ms
"""The real pruned-model timing (the session fixture replaces it by the cost model)."""


def fake_ms(module: nn.Module, batch_size: int) -> float:
    """A deterministic stand-in for a timing: 1 ns per weight per image, plus 1 us."""
    return 1e-6 * batch_size * sum(p.numel() for p in module.parameters()) + 1e-3


def fake_swapped_ms(
    _self: Any, model: nn.Module, name: str, modules: list[nn.Module], x: torch.Tensor, **_: Any
) -> list[float]:
    """``LatencyRuntime.time_swapped_ms`` by the cost model of :func:`fake_ms`."""
    base = fake_ms(model, x.shape[0]) - fake_ms(model.get_submodule(name), x.shape[0])
    return [base + fake_ms(m, x.shape[0]) for m in modules]


def fake_models_ms(_self: Any, models: list[nn.Module], x: torch.Tensor, **_: Any) -> list[float]:
    """``LatencyRuntime.time_models_ms`` by the cost model of :func:`fake_ms`."""
    return [fake_ms(m, x.shape[0]) for m in models]


@pytest.fixture(scope="session", autouse=True)
def _searches_time_by_a_cost_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every search has a deployment runtime and measures its latency table (issue 37); in
    tests (session fixtures too) the table a search builds is timed by :func:`fake_ms`
    instead, into a cache of its own, so that no test spends seconds timing and none writes
    made-up times into a real cache; a pruned model's time (``rankopt.latency._pruned``) too.
    Tests of the timing itself
    (``@pytest.mark.real_latency``, :func:`_real_latency_when_marked`) and of
    ``rankopt.latency.latency_table`` called directly time for real."""
    from rankopt.latency._runtimes import RUNTIMES
    from rankopt.searching.loop import _inputs

    real = _inputs.latency_table
    cache = tmp_path_factory.mktemp("fake-latency-cache")

    def table_by_cost_model(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cache_dir", cache)
        with contextlib.ExitStack() as stack:
            for runtime in {type(r) for r in RUNTIMES.values()}:
                stack.enter_context(mock.patch.object(runtime, "time_swapped_ms", fake_swapped_ms))
                stack.enter_context(mock.patch.object(runtime, "time_models_ms", fake_models_ms))
            return real(*args, **kwargs)

    from rankopt.latency import _pruned

    def pair_by_cost_model(_runtime: str, models: Any, x: torch.Tensor, _n: int) -> list[float]:
        return [fake_ms(m, x.shape[0]) for m in models]

    with (
        mock.patch.object(_inputs, "latency_table", table_by_cost_model),
        mock.patch.object(_pruned, "time_pair_ms", pair_by_cost_model),
    ):
        yield


@pytest.fixture(autouse=True)
def _real_latency_when_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@pytest.mark.real_latency``: the test's searches time their tables for real."""
    if request.node.get_closest_marker("real_latency"):
        from rankopt.latency._table import latency_table
        from rankopt.searching.loop import _inputs

        monkeypatch.setattr(_inputs, "latency_table", latency_table)
        from rankopt.latency import _pruned

        monkeypatch.setattr(_pruned, "time_pair_ms", REAL_TIME_PAIR_MS)


@pytest.fixture
def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


@pytest.fixture(scope="session")
def digits_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """sklearn's 8x8 digits, fixed split (train 1257 / val 180 / test 360)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]
    return {
        "train": (images[:1257], labels[:1257]),
        "val": (images[1257:1437], labels[1257:1437]),
        "test": (images[1437:], labels[1437:]),
    }


@pytest.fixture(scope="session")
def trained_digits_net(digits_data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """DigitsNet trained for 400 Adam steps (about 2 s on 2 cores), ~95% val accuracy."""
    return train_digits_net_on(*digits_data["train"], steps=400, seed=0).eval()
