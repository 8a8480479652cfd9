"""Decomposition methods beyond the shared suite (tests/test_method_suite.py).

The checks every method must pass live in :class:`rankopt.testing.MethodTestSuite`; here are
method-specific ones (GKPD factor shapes, Tucker-2 vs tensorly, CP-ALS), validation, cache.
"""

from __future__ import annotations

import abc
import copy
import logging
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tensorly as tl
import torch
from fvcore.nn import FlopCountAnalysis
from tensorly.decomposition import partial_tucker
from torch import nn

from rankopt.errors import (
    DecompositionError,
    InvalidPlanError,
    UnknownNameError,
)
from rankopt.spaces import (
    DecompositionMethod,
    LayerInfo,
    build_module,
    cache_info,
    clear_cache,
    decompose,
    describe_layer,
    get_method,
    list_methods,
    reconstruction_error,
    register_method,
    set_cache_limit,
)
from rankopt.spaces import _cp as cp_module
from rankopt.testing import CONV_CASES as SUITE_CONV_CASES
from rankopt.testing import LINEAR_CASES as SUITE_LINEAR_CASES
from rankopt.testing import make_conv as suite_conv
from rankopt.testing import make_linear as suite_linear

METHODS = list_methods()
DECOMPOSING = [m for m in METHODS if m != "keep"]

# The suite's layers (rankopt.testing) and seeded random shapes.
CONV_CASES: list[tuple[dict[str, Any], tuple[int, int]]] = list(SUITE_CONV_CASES)
_rng = np.random.default_rng(1234)
for _ in range(3):
    CONV_CASES.append(
        (
            dict(
                in_channels=int(_rng.integers(2, 13)),
                out_channels=int(_rng.integers(2, 13)),
                kernel_size=(int(_rng.integers(1, 5)), int(_rng.integers(1, 5))),
                stride=(int(_rng.integers(1, 3)), int(_rng.integers(1, 3))),
                padding=(int(_rng.integers(0, 3)), int(_rng.integers(0, 3))),
                dilation=(int(_rng.integers(1, 3)), int(_rng.integers(1, 3))),
                bias=bool(_rng.integers(0, 2)),
            ),
            (int(_rng.integers(9, 14)), int(_rng.integers(9, 14))),
        )
    )
CASE_IDS = [f"case{i}" for i in range(len(CONV_CASES))]
LINEAR_CASES = list(SUITE_LINEAR_CASES)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    set_cache_limit(256 * 2**20)
    yield
    clear_cache()
    set_cache_limit(256 * 2**20)


def make_conv(index: int, seed: int = 0) -> tuple[nn.Conv2d, LayerInfo, torch.Tensor]:
    """A seeded conv of ``CONV_CASES[index]``, its profiled LayerInfo and an input batch."""
    kwargs, hw = CONV_CASES[index]
    case = suite_conv(kwargs, hw, name=f"net.conv{index}", seed=seed + index)
    assert isinstance(case.module, nn.Conv2d)
    return case.module, case.layer, case.x


def make_linear(index: int) -> tuple[nn.Linear, LayerInfo, torch.Tensor]:
    """A seeded Linear of ``LINEAR_CASES[index]``, its LayerInfo and an input batch."""
    case = suite_linear(*LINEAR_CASES[index], name=f"head{index}", seed=100 + index)
    assert isinstance(case.module, nn.Linear)
    return case.module, case.layer, case.x


def layers_for(method: str) -> list[tuple[nn.Module, LayerInfo, torch.Tensor]]:
    """Every test layer the method supports."""
    impl = get_method(method)
    out: list[tuple[nn.Module, LayerInfo, torch.Tensor]] = []
    for i in range(len(CONV_CASES)):
        out.append(make_conv(i))
    for i in range(len(LINEAR_CASES)):
        out.append(make_linear(i))
    return [item for item in out if impl.supports(item[1])]


def weight_of(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def full_ranks(method: str, layer: LayerInfo, options: dict[str, Any] | None = None) -> dict:
    return get_method(method).rank_space(layer, options)


def fvcore_macs(module: nn.Module, x: torch.Tensor) -> int:
    """fvcore's count (one MAC = one flop) of ``module`` on one example, warnings silenced."""
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = (
            FlopCountAnalysis(module, (x[:1],))
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        return int(analysis.total())


# ----------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("t1", "s1"), [(2, 3), (4, 1), (1, 6), (8, 2), (1, 1)])
def test_gkpd_full_rank_any_factor_shape(t1: int, s1: int) -> None:
    module, layer, x = make_conv(0)  # T=8, S=6, stride 2, bias
    options = {"t1": t1, "s1": s1}
    ranks = full_ranks("gkpd", layer, options)
    assert ranks == {"r": min(t1 * s1, (8 // t1) * (6 // s1) * 9)}
    built = build_module(module, layer, "gkpd", ranks, options)
    with torch.no_grad():
        torch.testing.assert_close(built(x), module(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in built.parameters()) == get_method("gkpd").n_params(
        layer, ranks, options
    )


def test_built_modules_are_plain_float32_on_the_weight_device() -> None:
    module, layer, _x = make_conv(0)
    for method in METHODS:
        if not get_method(method).supports(layer):
            continue
        built = build_module(module, layer, method, {k: 2 for k in full_ranks(method, layer)})
        assert isinstance(built, nn.Sequential if method != "keep" else nn.Conv2d)
        for p in built.parameters():
            assert p.dtype == torch.float32 and p.device == module.weight.device
        if method not in ("keep",):
            last_conv = [m for m in built.modules() if isinstance(m, nn.Conv2d)][-1]
            assert last_conv.bias is not None  # case 0 has a bias: it stays on the last conv
        with warnings.catch_warnings():  # torch.jit.script is deprecated but still works
            warnings.simplefilter("ignore")
            torch.jit.script(built)  # saves/scripts like any model


# ----------------------------------------------------------------------- costs


def test_dense_costs_and_tucker2_formula() -> None:
    module, layer, x = make_conv(0)
    assert get_method("keep").macs(layer, {}) == fvcore_macs(module, x) == layer.macs
    s, t, (hi, wi), (ho, wo) = 6, 8, layer.input_hw, layer.output_hw
    r3, r4 = 2, 3
    expected = hi * wi * s * r3 + ho * wo * 9 * r3 * r4 + ho * wo * r4 * t
    assert get_method("tucker2").macs(layer, {"r_in": r3, "r_out": r4}) == expected
    assert get_method("tucker2").n_params(layer, {"r_in": r3, "r_out": r4}) == (
        s * r3 + 9 * r3 * r4 + r4 * t + t
    )


# ----------------------------------------------------------------------- error vs rank


@pytest.mark.parametrize(
    ("shape", "ranks"),
    [((16, 12, 3, 3), (4, 6)), ((24, 20, 3, 3), (10, 5)), ((32, 16, 1, 1), (4, 8))],
)
def test_tucker2_within_one_percent_of_tensorly(
    shape: tuple[int, int, int, int], ranks: tuple[int, int]
) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(shape[1], shape[0], shape[2:], bias=False)
    with torch.no_grad():  # a decaying spectrum, like trained weights
        conv.weight.mul_(torch.linspace(2.0, 0.1, shape[0])[:, None, None, None])
    layer = describe_layer("conv", conv)
    r_in, r_out = ranks
    ours = reconstruction_error(conv.weight, layer, "tucker2", {"r_in": r_in, "r_out": r_out})
    w = conv.weight.detach().double().numpy()
    with tl.backend_context("numpy"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tensorly warns when a rank exceeds a mode size
        (core, factors), _ = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1])
        rec = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
    theirs = float(np.linalg.norm(w - rec) / np.linalg.norm(w))
    assert ours <= theirs * 1.01, (ours, theirs)


# ----------------------------------------------------------------------- eligibility


def test_keep_builds_any_layer() -> None:
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    dw_layer = describe_layer("dw", depthwise).with_spatial((6, 6), (6, 6))
    built = build_module(depthwise, dw_layer, "keep", {})
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(built(x), depthwise(x))
    assert get_method("keep").macs(dw_layer, {}) == fvcore_macs(depthwise, x)


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize("method", DECOMPOSING)
def test_bad_ranks_raise_invalid_plan(method: str) -> None:
    module, layer, _ = layers_for(method)[0]
    impl = get_method(method)
    full = impl.rank_space(layer)
    key = next(iter(full))
    for value in (0, -3, full[key] + 1):
        ranks = {**full, key: value}
        with pytest.raises(InvalidPlanError) as info:
            decompose(weight_of(module), layer, method, ranks)
        message = str(info.value)
        assert layer.name in message and str(value) in message and f"[1, {full[key]}]" in message
    with pytest.raises(InvalidPlanError, match="takes ranks"):
        decompose(weight_of(module), layer, method, {"rank": 1})
    with pytest.raises(InvalidPlanError, match="integer"):
        decompose(weight_of(module), layer, method, {**full, key: 1.5})  # type: ignore[dict-item]


def test_unknown_method_bad_options_and_duplicate_register() -> None:
    module, layer, _ = make_conv(0)
    with pytest.raises(UnknownNameError) as info:
        build_module(module, layer, "tucker3", {"r": 1})
    assert "tucker3" in str(info.value) and all(m in str(info.value) for m in METHODS)
    with pytest.raises(InvalidPlanError, match="t1=3"):
        decompose(module.weight, layer, "gkpd", {"r": 1}, {"t1": 3})  # 3 does not divide 8
    with pytest.raises(InvalidPlanError, match="no option"):
        decompose(module.weight, layer, "svd", {"r": 1}, {"t1": 2})
    with pytest.raises(ValueError, match="already registered"):

        @register_method("svd")
        class Again(DecompositionMethod):  # pragma: no cover - never instantiated
            pass


class _Rest:
    """Mixin: every abstract method of DecompositionMethod, none of the decompose pair."""

    rank_names = ("r",)

    def rank_space(self, layer: LayerInfo, options: Any = None) -> dict[str, int]:
        return {"r": 1}

    def n_params(self, layer: LayerInfo, ranks: Any, options: Any = None) -> int:
        return 1

    def macs(self, layer: LayerInfo, ranks: Any, options: Any = None) -> int:
        return 1

    def to_module(self, layer: LayerInfo, factors: Any, bias: Any, options: Any) -> nn.Module:
        return nn.Identity()

    def reconstruct(self, layer: LayerInfo, factors: Any, options: Any) -> torch.Tensor:
        return factors[0]


def test_a_method_must_override_decompose_or_decompose_from_basis() -> None:
    # concrete (no abstract method left) and overriding neither: refused when defined
    with pytest.raises(
        TypeError, match=r"Neither overrides neither decompose nor decompose_from_basis"
    ):

        class Neither(_Rest, DecompositionMethod):
            pass

    # an abstract intermediate class may leave both to its subclasses
    class Intermediate(DecompositionMethod):
        @abc.abstractmethod
        def extra(self) -> None: ...

    _, layer, _ = make_conv(0)
    weight = torch.ones(layer.weight_shape, dtype=torch.float64)

    class OnlyDecompose(_Rest, DecompositionMethod):
        def decompose(self, weight: Any, layer: Any, ranks: Any, options: Any) -> Any:
            return (2 * weight,)

    class OnlyFromBasis(_Rest, DecompositionMethod):
        def cache_basis(self, weight: Any, layer: Any, options: Any) -> Any:
            return 3.0

        def decompose_from_basis(
            self, basis: Any, weight: Any, layer: Any, ranks: Any, options: Any
        ) -> Any:
            return (basis * weight,)

    a, b = OnlyDecompose(), OnlyFromBasis()
    assert float(a.decompose(weight, layer, {"r": 1}, {})[0].max()) == 2.0
    assert float(a.decompose_from_basis(None, weight, layer, {"r": 1}, {})[0].max()) == 2.0
    assert float(b.decompose(weight, layer, {"r": 1}, {})[0].max()) == 3.0  # via cache_basis
    assert "extra" in Intermediate.__abstractmethods__

    # the defaults never recurse, even on a class changed after it was defined
    del OnlyDecompose.decompose
    for call in (
        lambda: a.decompose(weight, layer, {"r": 1}, {}),
        lambda: a.decompose_from_basis(None, weight, layer, {"r": 1}, {}),
    ):
        with pytest.raises(NotImplementedError, match=r"OnlyDecompose\) must override"):
            call()


# ----------------------------------------------------------------------- cache


def _count_calls(monkeypatch: pytest.MonkeyPatch, impl: DecompositionMethod) -> dict[str, int]:
    counts = {"cache_basis": 0, "decompose_from_basis": 0}
    for name in counts:
        original = getattr(impl, name)

        def wrapper(*args: Any, _name: str = name, _orig: Any = original) -> Any:
            counts[_name] += 1
            return _orig(*args)

        monkeypatch.setattr(impl, name, wrapper)
    return counts


@pytest.mark.parametrize("method", ["svd", "spatial_svd", "gkpd", "tucker2"])
def test_cache_reuses_factors_and_basis(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 192, 3, padding=1)
    layer = describe_layer("big", conv).with_spatial((8, 8), (8, 8))
    impl = get_method(method)
    counts = _count_calls(monkeypatch, impl)
    ranks = {k: v // 4 for k, v in impl.rank_space(layer).items()}

    start = time.perf_counter()
    first = decompose(conv.weight, layer, method, ranks)
    cold_s = time.perf_counter() - start
    warm_s = float("inf")
    for _ in range(3):  # best of 3: the CPU is shared
        start = time.perf_counter()
        again = decompose(conv.weight, layer, method, ranks)
        warm_s = min(warm_s, time.perf_counter() - start)
    assert counts == {"cache_basis": 1, "decompose_from_basis": 1}
    if method == "tucker2":  # eigh + HOOI dominate the cold call; the others are ~10 ms
        assert warm_s < cold_s / 2, (cold_s, warm_s)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    first[0].zero_()  # callers get copies: the cache is not modified
    assert decompose(conv.weight, layer, method, ranks)[0].abs().sum() > 0

    other = {k: v // 2 for k, v in impl.rank_space(layer).items()}
    build_module(conv, layer, method, other)
    assert counts == {"cache_basis": 1, "decompose_from_basis": 2}  # basis reused
    assert cache_info()["hits"] >= 3


def test_cache_is_bounded() -> None:
    limit = 60_000  # about 4 of the 12 layers (basis + factors ~ 16 kB each)
    set_cache_limit(limit)
    for i in range(12):
        torch.manual_seed(i)
        conv = nn.Conv2d(16, 24, 3)
        layer = describe_layer(f"c{i}", conv)
        decompose(conv.weight, layer, "svd", {"r": 8})
        assert cache_info()["stored_bytes"] <= limit
    assert 0 < cache_info()["entries"] < 24  # old entries were evicted
    set_cache_limit(0)
    assert cache_info()["stored_bytes"] == 0 and cache_info()["entries"] == 0
    with pytest.raises(ValueError, match=">= 0"):
        set_cache_limit(-1)


def test_cache_key_uses_weight_content() -> None:
    conv = nn.Conv2d(4, 6, 3)
    layer = describe_layer("c", conv)
    before = decompose(conv.weight, layer, "svd", {"r": 2})
    with torch.no_grad():
        conv.weight.mul_(2.0)
    after = decompose(conv.weight, layer, "svd", {"r": 2})
    torch.testing.assert_close(
        after[1] @ after[0].reshape(2, -1), 2 * before[1] @ before[0].reshape(2, -1)
    )


# ----------------------------------------------------------------------- CP divergence


def test_cp_divergence_raises_decomposition_error(monkeypatch: pytest.MonkeyPatch) -> None:
    module, layer, _ = make_conv(0)
    calls: list[str] = []

    def nan_als(x: torch.Tensor, rank: int, init: str, seed: int, n_iter: int) -> Any:
        calls.append(init)
        return tuple(torch.full((n, rank), float("nan"), dtype=torch.float64) for n in (8, 6, 9))

    monkeypatch.setattr(cp_module, "_als", nan_als)
    with pytest.raises(DecompositionError) as info:
        build_module(module, layer, "cp", {"r": 3})
    assert layer.name in str(info.value) and "r=3" in str(info.value)
    assert calls == ["svd", "random", "random"]  # retried before giving up


def test_cp_retries_after_blow_up(monkeypatch: pytest.MonkeyPatch) -> None:
    module, layer, _ = make_conv(0)
    real = cp_module._als
    calls: list[str] = []

    def flaky(x: torch.Tensor, rank: int, init: str, seed: int, n_iter: int) -> Any:
        calls.append(init)
        if init == "svd":  # a blown-up first attempt
            return tuple(f * 1e6 for f in real(x, rank, init, seed, n_iter))
        return real(x, rank, init, seed, n_iter)

    monkeypatch.setattr(cp_module, "_als", flaky)
    error = reconstruction_error(module.weight, layer, "cp", {"r": 6})
    assert calls == ["svd", "random"]
    assert 0.0 < error < 1.0


@pytest.mark.parametrize("index", range(len(CONV_CASES)), ids=CASE_IDS)
def test_cp_module_runs_the_reconstructed_kernel(index: int) -> None:
    """Below full rank the module is the dense conv with the CP kernel (any Dh x Dw)."""
    module, layer, x = make_conv(index)
    r = max(1, get_method("cp").rank_space(layer)["r"] // 3)
    factors = decompose(module.weight, layer, "cp", {"r": r})
    bias = None if module.bias is None else module.bias.detach().double()
    built = get_method("cp").to_module(layer, factors, bias, {})
    dense = copy.deepcopy(module)
    with torch.no_grad():
        dense.weight.copy_(get_method("cp").reconstruct(layer, factors, {}).float())
    assert len(built) == 3 and built[1].groups == r and built[1].kernel_size == layer.kernel_size
    with torch.no_grad():
        torch.testing.assert_close(built(x), dense(x), rtol=1e-4, atol=1e-5)


def test_cp_three_way_fits_better_than_a_separable_kernel() -> None:
    """The 3-way form (any Dh x Dw kernel per term) beats tensorly's 4-way CP (rank-one
    kernels K_h K_w^T) at the same rank, i.e. the same module cost."""
    from tensorly.decomposition import parafac

    module, layer, _ = make_conv(1)
    w = module.weight.detach().double()
    r = 12
    ours = reconstruction_error(w, layer, "cp", {"r": r})
    with tl.backend_context("numpy"):
        weights, mats = parafac(w.numpy(), r, n_iter_max=200, init="svd", random_state=0)
    four_way = tl.cp_to_tensor((weights, mats))
    theirs = float(np.linalg.norm(w.numpy() - four_way) / np.linalg.norm(w.numpy()))
    assert ours < theirs, (ours, theirs)


def test_cp_is_deterministic_and_ignores_global_rngs() -> None:
    module, layer, _ = make_conv(1)
    first = decompose(module.weight, layer, "cp", {"r": 20})
    clear_cache()
    np.random.seed(123)
    torch.manual_seed(99)
    torch.randn(7)  # moves the global RNGs; CP must not depend on them
    second = decompose(module.weight, layer, "cp", {"r": 20})
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cp_settings_are_in_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    module, layer, _ = make_conv(0)
    decompose(module.weight, layer, "cp", {"r": 3})
    before = cache_info()["misses"]
    monkeypatch.setattr(cp_module.CP, "attempts", (("svd", 7), ("random", 8)))
    decompose(module.weight, layer, "cp", {"r": 3})
    assert cache_info()["misses"] > before  # recomputed, not served from the old key


def test_cp_als_iterations_are_capped_by_work() -> None:
    assert cp_module.als_iterations((8, 6, 3, 3), 10) == cp_module.CP_N_ITER_MAX
    big = cp_module.als_iterations((512, 512, 3, 3), 400)
    assert cp_module.CP_MIN_ITER <= big < cp_module.CP_N_ITER_MAX
    # A rank whose CP_MIN_ITER sweeps do not fit the budget is not offered.
    conv = nn.Conv2d(512, 512, 3, padding=1, bias=False)
    layer = describe_layer("big", conv).with_spatial((4, 4), (4, 4))
    cp = get_method("cp")
    useful = cp.useful_ranks(layer)
    assert useful and all(cp.feasible(layer, r) for r in useful)
    unbounded = [  # by cost alone
        r
        for r in cp.rank_path(layer)
        if cp.macs(layer, r) < layer.macs and cp.n_params(layer, r) < layer.n_params
    ]
    assert max(r["r"] for r in useful) < max(r["r"] for r in unbounded)
    assert not cp.feasible(layer, {"r": 2000})
    assert "not offered" in (cp.bound_note(layer) or "")


_CP_MEMORY_CHILD = """
import resource, sys, time, torch
from torch import nn
from rankopt.spaces import describe_layer, get_method, reconstruction_error
torch.manual_seed(0)
conv = nn.Conv2d(512, 512, 3, padding=1, bias=False)
layer = describe_layer("layer4.0.conv2", conv).with_spatial((4, 4), (4, 4))
r = get_method("cp").useful_ranks(layer)[-1]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
error = reconstruction_error(conv.weight, layer, "cp", r)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(r["r"], error, (peak - before) * 1024)
"""


def test_cp_on_a_512_channel_conv_stays_under_a_gigabyte() -> None:
    """ResNet-18's largest 3x3 conv at CP's largest offered rank: the peak RSS added by the
    decomposition (measured in a fresh process) is under 1 GB (tensorly's parafac: 9.1 GB)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _CP_MEMORY_CHILD],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout.split()
    rank, error, added_bytes = int(out[0]), float(out[1]), int(out[2])
    assert rank > 300  # a real rank, not a trivial one
    assert 0.0 < error < 1.0
    assert added_bytes < 2**30, added_bytes


# ----------------------------------------------------------------------- rank rounding


def test_round_ranks_multiple_within_bounds() -> None:
    from rankopt.spaces import round_rank, round_ranks

    assert round_ranks({"r_in": 13, "r_out": 30}, 8, {"r_in": 16, "r_out": 32}) == {
        "r_in": 16,
        "r_out": 32,
    }
    assert round_rank(11, 8, 64) == 8 and round_rank(12, 8, 64) == 16  # tie goes up
    assert round_rank(3, 8, 64) == 8  # never 0
    assert round_rank(3, 8, 5) == 5  # never above full
    assert round_rank(19, 8, 20) == 16 and round_rank(20, 8, 20) == 20
    assert round_rank(21, 8, 22) == 22
    assert round_rank(15, 8, 64, "down") == 8 and round_rank(9, 8, 64, "up") == 16
    assert round_rank(5, 8, 64, "down") == 8  # down below one multiple -> one multiple
    assert round_rank(7, 1, 64) == 7 and round_rank(0, 4, 64) == 4 and round_rank(99, 4, 10) == 10
    for r in range(1, 40):
        for full in (1, 5, 16, 37):
            assert 1 <= round_rank(r, 8, full) <= full
    with pytest.raises(ValueError):
        round_rank(3, 0, 8)
    with pytest.raises(ValueError):
        round_ranks({"r": 3}, 8, {"q": 8})


def test_a_matrix_too_large_for_an_exact_basis_gets_a_bounded_partial_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above MATRIX_WORK_BUDGET: a randomized partial basis, ranks capped, one note."""
    from rankopt.spaces import _svd as svd_module

    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(60, 60, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(200, 60, generator=gen, dtype=torch.float64))
    s = 0.8 ** torch.arange(60, dtype=torch.float64)  # a decaying spectrum
    matrix = (u * s) @ v.T
    exact = svd_module.bounded_svd(matrix)
    assert exact[0].shape == (60, 60)
    monkeypatch.setattr(svd_module, "MATRIX_WORK_BUDGET", 8 * 60 * 200 * 30)
    cap = svd_module.partial_rank(60, 200)
    assert cap == 20
    vecs, values = svd_module.bounded_svd(matrix)
    assert vecs.shape == (60, 20)
    torch.testing.assert_close(values, s[:20], rtol=1e-6, atol=1e-9)
    left, right = svd_module.split_truncated((vecs, values), matrix, 10)
    best_left, best_right = svd_module.split_truncated(exact, matrix, 10)
    torch.testing.assert_close(left @ right, best_left @ best_right, rtol=1e-4, atol=1e-7)
    lin = nn.Linear(200, 60)
    layer = describe_layer("head", lin).with_spatial((1, 1), (1, 1))
    method = get_method("linear_svd")
    assert max(r["r"] for r in method.useful_ranks(layer)) <= cap
    note = method.bound_note(layer)
    assert note is not None and "ranks above r=20" in note and "60 x 200" in note
