"""Public entry points: cached :func:`decompose`, :func:`build_module`,
:func:`reconstruction_error`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rankopt.errors import InvalidPlanError
from rankopt.spaces._base import DecompositionMethod, Factors, get_method
from rankopt.spaces._cache import get_cache, weight_digest
from rankopt.spaces._layer import LayerInfo

__all__ = [
    "LARGE_WEIGHT_NUMEL",
    "build_module",
    "decompose",
    "reconstruction_error",
    "set_decompose_threads",
]

LARGE_WEIGHT_NUMEL = 2**25
"""Weights with more elements (268 MB in float64) are decomposed in float32."""

_threads: int | None = 1
_threads_lock = threading.Lock()
_threads_active = 0
_threads_saved = 0


def set_decompose_threads(n_threads: int | None) -> None:
    """Torch intra-op threads used while factors are computed (default 1; None = leave as is).

    LAPACK (``eigh``, ``qr``) on a busy 2-core CPU runs about 5x slower with 2 threads than
    with 1, so decompositions run single-threaded by default. The setting is process-wide
    while a decomposition runs (torch has no per-call thread count) and is restored after.

    Raises:
        ValueError: ``n_threads`` is < 1.
    """
    global _threads
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be >= 1 or None, got {n_threads}")
    _threads = n_threads


@contextmanager
def _decompose_threads() -> Iterator[None]:
    global _threads_active, _threads_saved
    wanted = _threads
    if wanted is None:
        yield
        return
    with _threads_lock:
        if _threads_active == 0:
            _threads_saved = torch.get_num_threads()
            if _threads_saved != wanted:
                torch.set_num_threads(wanted)
        _threads_active += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_active -= 1
            if _threads_active == 0 and torch.get_num_threads() != _threads_saved:
                torch.set_num_threads(_threads_saved)


def _freeze(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), v) for k, v in mapping.items()))


def _prepare(
    weight: torch.Tensor,
    layer: LayerInfo,
    method: str,
    ranks: Mapping[str, int],
    options: Mapping[str, Any] | None,
) -> tuple[DecompositionMethod, dict[str, Any], torch.Tensor]:
    impl = get_method(method)
    impl.validate(layer, ranks, options)
    resolved = impl.resolve_options(layer, options)
    if tuple(weight.shape) != tuple(layer.weight_shape):
        raise InvalidPlanError(
            f"layer {layer.name!r}: weight shape {tuple(weight.shape)} does not match the "
            f"layer's {tuple(layer.weight_shape)}"
        )
    return impl, resolved, weight.detach()


def _factors(
    impl: DecompositionMethod,
    weight: torch.Tensor,
    layer: LayerInfo,
    ranks: Mapping[str, int],
    options: dict[str, Any],
) -> Factors:
    """Cached float64 factors (shared with the cache: do not modify in place)."""
    cache = get_cache()
    digest = weight_digest(weight)
    opts = _freeze(options)
    token = impl.cache_token()
    key: Hashable = ("factors", digest, layer.name, impl.name, _freeze(ranks), opts, token)
    found = cache.get(key)
    if found is not None:
        return tuple(found)
    # Factors are float64, except for a weight so large that a float64 copy alone would
    # cost more than a quarter of the 1 GB bound (VGG-16's classifier): float32 there.
    dtype = torch.float64 if weight.numel() <= LARGE_WEIGHT_NUMEL else torch.float32
    w64 = weight.to("cpu", dtype)
    basis_key: Hashable = ("basis", digest, layer.name, impl.name, opts, token)
    with _decompose_threads():
        basis = cache.get(basis_key)
        if basis is None:
            basis = impl.cache_basis(w64, layer, options)
            if basis is not None:
                cache.put(basis_key, basis)
        factors = (
            impl.decompose(w64, layer, ranks, options)
            if basis is None
            else impl.decompose_from_basis(basis, w64, layer, ranks, options)
        )
    factors = tuple(f.detach() for f in factors)
    cache.put(key, factors)
    return factors


def decompose(
    weight: torch.Tensor,
    layer: LayerInfo,
    method: str,
    ranks: Mapping[str, int],
    options: Mapping[str, Any] | None = None,
) -> Factors:
    """Factors of a layer's weight (float64, CPU), cached.

    The cache key is (content digest of ``weight``, ``layer.name``, ``method``, sorted
    ``ranks``, sorted resolved ``options``, the method's ``cache_token()``: algorithm
    settings such as CP-ALS's seeds and iteration caps). Rank-independent work (full SVDs,
    the Tucker-2 HOSVD basis) is cached separately, so another rank of the same layer is
    cheap.

    Args:
        weight: The dense weight, ``layer.weight_shape`` (any dtype / device).
        layer: The layer's description.
        method: A registered method name.
        ranks: Rank per rank name (see ``get_method(method).rank_space(layer)``).
        options: Method options (e.g. GKPD ``t1``/``s1``); defaults fill the rest.

    Returns:
        The method's factors (fresh copies; modifying them does not touch the cache).

    Raises:
        UnknownNameError: ``method`` is not registered.
        UnsupportedLayerError: the method cannot decompose this layer.
        InvalidPlanError: wrong rank names, ranks out of range, bad options or weight shape.
        DecompositionError: the numerical decomposition failed (CP-ALS divergence).
    """
    impl, resolved, w = _prepare(weight, layer, method, ranks, options)
    return tuple(f.clone() for f in _factors(impl, w, layer, ranks, resolved))


def build_module(
    module: nn.Module,
    layer: LayerInfo,
    method: str,
    ranks: Mapping[str, int],
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The replacement for ``module``: plain torch layers initialised from the factors.

    Args:
        module: The dense ``Conv2d`` / ``Linear`` (any module for ``keep``).
        layer: Its description (``describe_layer``).
        method: A registered method name.
        ranks: Rank per rank name.
        options: Method options.

    Returns:
        For ``keep`` a deep copy of ``module``; otherwise an ``nn.Sequential`` (float32, on
        the device of ``module.weight``) with the original bias on its last layer.

    Raises:
        Same as :func:`decompose`.
    """
    impl = get_method(method)
    if method == "keep":
        impl.validate(layer, ranks, options)
        return copy.deepcopy(module)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise InvalidPlanError(
            f"layer {layer.name!r}: module {type(module).__name__} has no weight to decompose"
        )
    impl, resolved, w = _prepare(weight, layer, method, ranks, options)
    factors = _factors(impl, w, layer, ranks, resolved)
    bias = getattr(module, "bias", None)
    bias = bias.detach().to("cpu", torch.float64) if isinstance(bias, torch.Tensor) else None
    built = impl.to_module(layer, factors, bias, resolved)
    return built.to(device=weight.device, dtype=torch.float32)


def reconstruction_error(
    weight: torch.Tensor,
    layer: LayerInfo,
    method: str,
    ranks: Mapping[str, int],
    options: Mapping[str, Any] | None = None,
) -> float:
    """Relative Frobenius error ``||W - W_hat|| / ||W||`` of the reconstructed weight.

    ``W_hat`` is the dense kernel the factors stand for (for GKPD the sum of Kronecker
    products, for CP the sum of rank-one terms, ...). Computed in float64; 0.0 for a zero
    weight.

    Raises:
        Same as :func:`decompose`.
    """
    impl, resolved, w = _prepare(weight, layer, method, ranks, options)
    factors = _factors(impl, w, layer, ranks, resolved)
    w64 = w.to("cpu", torch.float64)
    w_hat = impl.reconstruct(layer, factors, resolved).reshape(w64.shape)
    norm = float(w64.norm())
    if norm == 0.0:
        return 0.0
    return float((w64 - w_hat).norm()) / norm
