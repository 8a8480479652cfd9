"""A reusable test suite for decomposition methods (needs pytest).

A method's tests inherit :class:`MethodTestSuite` and name the method; pytest then runs every
check of the suite on the layers the method supports::

    from rankopt.testing import MethodTestSuite

    class TestMyMethod(MethodTestSuite):
        method = "my_svd"          # registered with rankopt.register_method("my_svd")

The checks: full rank reproduces the dense layer's output (``rtol`` 1e-4); the analytic
``n_params`` / ``macs`` equal the built module's parameter count and fvcore's count
(:func:`rankopt.count_macs`); the reconstruction error does not increase along
``rank_path``; every point of ``useful_ranks`` is cheaper than the dense layer; full rank on
a channel-pruned model's layers reproduces the pruned model; layers the
method does not support raise :class:`~rankopt.errors.UnsupportedLayerError`. Class
attributes choose the layers (``conv_cases``, ``linear_cases``) and tolerances.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rankopt._optional import try_import
from rankopt.errors import UnsupportedLayerError
from rankopt.evaluators import count_macs
from rankopt.plan import CompressionPlan, LayerPlan, apply_plan, model_fingerprint
from rankopt.pruning import ChannelPruner, prune_model
from rankopt.spaces import (
    DecompositionMethod,
    LayerInfo,
    build_module,
    conv_output_hw,
    describe_layer,
    get_method,
    reconstruction_error,
)

__all__ = [
    "CONV_CASES",
    "LINEAR_CASES",
    "LayerCase",
    "MethodTestSuite",
    "make_conv",
    "make_linear",
]

ConvCase = tuple[dict[str, Any], tuple[int, int]]
"""``Conv2d`` keyword arguments and the input size ``(H, W)``."""

CONV_CASES: tuple[ConvCase, ...] = (
    (dict(in_channels=6, out_channels=8, kernel_size=3, stride=2, padding=1, bias=True), (9, 10)),
    (
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, dilation=2, bias=False),
        (11, 9),
    ),
    (
        dict(in_channels=5, out_channels=7, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)),
        (10, 12),
    ),
    (dict(in_channels=1, out_channels=4, kernel_size=3, padding=1, bias=True), (8, 8)),
    (dict(in_channels=12, out_channels=8, kernel_size=1, bias=True), (6, 6)),
)
"""Default convs: stride 2 + padding + bias, dilation 2 without bias, a non-square 3x5
kernel, one input channel, and a 1x1 conv."""

LINEAR_CASES: tuple[tuple[int, int, bool], ...] = ((20, 7, True), (5, 16, False))
"""Default ``Linear`` layers: ``(in_features, out_features, bias)``."""


@dataclass(frozen=True)
class LayerCase:
    """A seeded dense layer, its profiled description and an input batch."""

    module: nn.Module
    layer: LayerInfo
    x: torch.Tensor

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight."""
        weight = self.module.weight
        assert isinstance(weight, torch.Tensor)
        return weight


def make_conv(
    kwargs: dict[str, Any], input_hw: tuple[int, int], *, name: str, seed: int
) -> LayerCase:
    """A seeded ``Conv2d(**kwargs)`` (random bias), profiled at ``input_hw``, and 2 inputs."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(**kwargs)
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    layer = describe_layer(name, conv)
    layer = layer.with_spatial(input_hw, conv_output_hw(layer, input_hw))
    return LayerCase(conv, layer, torch.randn(2, conv.in_channels, *input_hw))


def make_linear(n_in: int, n_out: int, bias: bool, *, name: str, seed: int) -> LayerCase:
    """A seeded ``Linear``, its description and 3 inputs."""
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out, bias=bias)
    return LayerCase(lin, describe_layer(name, lin), torch.randn(3, n_in))


def _depthwise() -> LayerCase:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    layer = describe_layer("dw", conv).with_spatial((6, 6), (6, 6))
    return LayerCase(conv, layer, torch.randn(1, 8, 6, 6))


def _one_input_macs(module: nn.Module, x: torch.Tensor) -> int:
    return count_macs(module, tuple(x.shape[1:]))


class MethodTestSuite:
    """Checks every decomposition method must pass; subclass it and set :attr:`method`."""

    method: ClassVar[str] = ""
    """The registered name of the method under test."""
    conv_cases: ClassVar[Sequence[ConvCase]] = CONV_CASES
    linear_cases: ClassVar[Sequence[tuple[int, int, bool]]] = LINEAR_CASES
    rtol: ClassVar[float] = 1e-4
    """Relative tolerance of the full-rank output against the dense layer's."""
    error_slack: ClassVar[float] = 1e-9
    """How much the reconstruction error may rise between two points of ``rank_path``
    (a local method such as CP-ALS needs some)."""
    path_points: ClassVar[int] = 8
    """Points of ``rank_path`` the monotonicity check decomposes at."""

    # ------------------------------------------------------------------ helpers
    @property
    def impl(self) -> DecompositionMethod:
        """The registered method."""
        return get_method(self.method)

    def all_cases(self) -> list[LayerCase]:
        """Every configured layer (supported or not)."""
        cases = [
            make_conv(kwargs, hw, name=f"net.conv{i}", seed=i)
            for i, (kwargs, hw) in enumerate(self.conv_cases)
        ]
        cases += [
            make_linear(*spec, name=f"head{i}", seed=100 + i)
            for i, spec in enumerate(self.linear_cases)
        ]
        return cases

    def supported_cases(self) -> list[LayerCase]:
        """The configured layers the method supports (at least one, else the suite fails)."""
        cases = [c for c in self.all_cases() if self.impl.supports(c.layer)]
        assert cases, f"method {self.method!r} supports none of the test layers"
        return cases

    def test_method_is_registered(self) -> None:
        assert self.method, "set `method` on the subclass of MethodTestSuite"
        assert self.impl.name == self.method

    # ------------------------------------------------------------------ checks
    def test_full_rank_reproduces_dense_output(self) -> None:
        for case in self.supported_cases():
            full = self.impl.rank_space(case.layer)
            built = build_module(case.module, case.layer, self.method, full)
            with torch.no_grad():
                y, y_hat = case.module(case.x), built(case.x)
            assert y_hat.dtype == torch.float32
            scale = float(y.abs().max())
            torch.testing.assert_close(
                y_hat, y, rtol=self.rtol, atol=1e-5 * scale, msg=case.layer.name
            )
            if full:
                error = reconstruction_error(case.weight, case.layer, self.method, full)
                assert error < 1e-6, (case.layer.name, error)

    def test_costs_equal_numel_and_fvcore(self) -> None:
        impl = self.impl
        for case in self.supported_cases():
            full = impl.rank_space(case.layer)
            ladder = [{k: 1 for k in full}, {k: max(1, 2 * v // 5) for k, v in full.items()}, full]
            for ranks in ladder:
                built = build_module(case.module, case.layer, self.method, ranks)
                numel = sum(p.numel() for p in built.parameters())
                assert impl.n_params(case.layer, ranks) == numel, (case.layer.name, ranks)
                macs = _one_input_macs(built, case.x)
                assert impl.macs(case.layer, ranks) == macs, (case.layer.name, ranks)

    def test_error_non_increasing_along_rank_path(self) -> None:
        for case in self.supported_cases()[:2]:
            path = self.impl.rank_path(case.layer, max_points=self.path_points)
            if path == [{}]:  # no ranks (keep)
                continue
            errors = [reconstruction_error(case.weight, case.layer, self.method, r) for r in path]
            pairs = itertools.pairwise(errors)
            assert all(b <= a + self.error_slack for a, b in pairs), (case.layer.name, errors)
            assert errors[-1] < 1e-6, (case.layer.name, errors)

    def test_useful_ranks_are_cheaper_than_dense(self) -> None:
        impl = self.impl
        for case in self.supported_cases():
            useful = impl.useful_ranks(case.layer)
            for ranks in useful:
                assert impl.macs(case.layer, ranks) < case.layer.macs, (case.layer.name, ranks)
                assert impl.n_params(case.layer, ranks) < case.layer.n_params
            if useful:  # the analytic count is the built module's
                built = build_module(case.module, case.layer, self.method, useful[-1])
                assert _one_input_macs(built, case.x) < case.layer.macs

    def test_full_rank_on_a_pruned_model_is_the_pruned_model(self) -> None:
        """Channel pruning first (rankopt.pruning), then the method at full rank on the pruned
        layers: the pruned dense model's output (plans that prune and decompose are exact)."""
        case = self.supported_cases()[0]
        if case.layer.kind != "conv2d":
            return  # the method decomposes linears only: the pruned convs stay dense
        torch.manual_seed(0)
        k, pad = case.layer.kernel_size, case.layer.padding
        net = nn.Sequential(
            nn.Conv2d(case.layer.in_channels, 8, k, padding=pad),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 6, k, padding=pad),
        ).eval()
        shape = (case.layer.in_channels, *case.x.shape[2:])
        plan_layers = []
        pruning = ChannelPruner(net, shape).entries({"0": 5})
        pruned = prune_model(net, shape, pruning)
        for name in ("0", "3"):
            info = describe_layer(name, pruned.get_submodule(name))
            full = self.impl.rank_space(info)
            plan_layers.append(LayerPlan(name, self.method, full, weight_shape=info.weight_shape))
        plan = CompressionPlan(
            "net", model_fingerprint(net), shape, tuple(plan_layers), pruning=pruning
        )
        with torch.no_grad():
            y, y_hat = pruned(case.x), apply_plan(net, plan)(case.x)
        assert y.shape[1] == 6 and pruned.get_submodule("0").out_channels == 5
        torch.testing.assert_close(y_hat, y, rtol=self.rtol, atol=1e-5 * float(y.abs().max()))

    def test_unsupported_layers_raise(self) -> None:
        pytest = try_import("pytest", extra="dev", needed_for="rankopt.testing.MethodTestSuite")
        impl = self.impl
        unsupported = [c for c in [*self.all_cases(), _depthwise()] if not impl.supports(c.layer)]
        for case in unsupported:
            ranks = {k: 1 for k in impl.rank_names}
            with pytest.raises(UnsupportedLayerError, match=self.method):
                build_module(case.module, case.layer, self.method, ranks)
