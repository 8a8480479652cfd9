"""Rank estimates by empirical variational Bayesian matrix factorisation (EVBMF).

Implements the global analytic solution of empirical VBMF of Nakajima, Sugiyama, Babacan
and Tomioka, "Global analytic solution of fully-observed variational Bayesian matrix
factorization", JMLR 14 (2013), as used by Kim et al., "Compression of deep convolutional
neural networks for fast and low power mobile applications", ICLR 2016, to choose the
Tucker-2 ranks of a conv layer (design.md §3, "VBMF rank estimates").

For a matrix ``V`` of size ``L x M`` (transposed so that ``L <= M``) with singular values
``g_1 >= ... >= g_L``, ``alpha = L / M``:

* ``tau_bar = 2.5129 * sqrt(alpha)`` and ``x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)``;
* ``x_h = g_h**2 / (M * sigma2)``, ``tau(x) = (x - (1+alpha) + sqrt((x - (1+alpha))**2 -
  4*alpha)) / 2``;
* the noise variance ``sigma2`` minimises, over ``[lower, upper]``::

      Omega(sigma2) = sum_{x_h <= x_bar} (x_h - ln x_h)
                    + sum_{x_h > x_bar} (x_h - tau(x_h) + ln((tau(x_h) + 1) / x_h)
                                         + alpha * ln(tau(x_h) / alpha + 1))
                    + residual / (M * sigma2) + (L - H) * ln(sigma2)

  with ``upper = ||V||_F**2 / (L*M)`` and ``lower = max(g_{e+1}**2 / (M * x_bar),
  mean(g_{e+1:}**2) / M)``, ``e = min(ceil(L / (1 + alpha)) - 1, H) - 1`` (0-based);
* the rank is the number of ``g_h > sigma * sqrt(M * x_bar)``.

Because ``lower >= g_{e+1}**2 / (M * x_bar)``, the estimated rank never exceeds
``H_bar = ceil(L / (1 + alpha)) - 1`` (the paper's bound: with an unknown noise level at
most that many components can be told apart from noise). In particular an ``L x M`` matrix
that has no noise but full rank ``L`` gets a rank of at most ``H_bar``; pass ``sigma2=0``
when the matrix is known to be noise-free to get its numerical rank instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from rankopt.errors import (
    DecompositionError,
    InvalidPlanError,
    UnknownNameError,
)
from rankopt.spaces._base import get_method, list_methods
from rankopt.spaces._layer import describe_layer

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["EVBMFResult", "estimate_rank", "evbmf", "vbmf_methods", "vbmf_ranks"]


_TAU_BAR_COEF = 2.5129
_GRID_POINTS = 64


@dataclass(frozen=True)
class EVBMFResult:
    """Outcome of empirical VBMF on one matrix.

    Attributes:
        rank: Number of singular values above the EVB threshold (0 for noise only).
        sigma2: Estimated (or given) noise variance per entry, in squared units of the
            matrix entries; 0.0 for a matrix found (or declared) noise-free.
        threshold: The EVB threshold ``sigma * sqrt(M * x_bar)`` on the singular values.
        singular_values: All singular values of the matrix, descending (float64).
        shrunk: The EVB posterior estimates of the kept singular values (length ``rank``):
            ``g/2 * (1 - (L+M)*sigma2/g**2 + sqrt((1 - (L+M)*sigma2/g**2)**2
            - 4*L*M*sigma2**2/g**4))`` (eq. 15 of Nakajima et al., 2013).
        shape: ``(L, M)`` after transposing so that ``L <= M``.
    """

    rank: int
    sigma2: float
    threshold: float
    singular_values: NDArray[np.float64]
    shrunk: NDArray[np.float64]
    shape: tuple[int, int]


def _as_matrix(matrix: torch.Tensor | NDArray[Any]) -> NDArray[np.float64]:
    """A float64 numpy copy of ``matrix``, transposed so that rows <= columns."""
    if isinstance(matrix, torch.Tensor):
        array = matrix.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2:
        raise DecompositionError(
            f"VBMF needs a 2-D matrix, got an array of shape {tuple(array.shape)}"
        )
    if not np.all(np.isfinite(array)):
        raise DecompositionError("VBMF needs finite entries; the matrix contains NaN or inf")
    if array.shape[0] > array.shape[1]:
        array = array.T
    return array


def _tau(x: NDArray[np.float64], alpha: float) -> NDArray[np.float64]:
    """``tau(x) = (x - (1+alpha) + sqrt((x - (1+alpha))**2 - 4*alpha)) / 2`` for ``x > x_bar``."""
    shifted = x - (1.0 + alpha)
    root = np.sqrt(np.maximum(shifted * shifted - 4.0 * alpha, 0.0))
    return 0.5 * (shifted + root)


def _singular_values(V: np.ndarray) -> np.ndarray:
    """Singular values of ``V`` (L x M, L <= M), descending, float64.

    For a wide matrix the eigenvalues of the L x L Gram matrix ``V V^T`` are the squared
    singular values; one symmetric eigensolve of the small side is much faster here than
    an SVD of the whole matrix (7.8 s vs 0.1 s for 512 x 4608 on 2 busy cores). Relative
    accuracy of the smallest values suffers, which does not matter for VBMF: they sit in
    the noise bulk and are compared with a threshold far above float64 round-off.
    Uses torch's LAPACK: in a process that has imported torch, numpy's OpenBLAS threads
    compete with torch's pool and run several times slower.
    """
    t = torch.from_numpy(V)
    if V.shape[1] >= 2 * V.shape[0]:
        eig = torch.linalg.eigvalsh(t @ t.T).clamp_min(0.0).sqrt()
        return eig.flip(0).numpy()
    return torch.linalg.svdvals(t).numpy()


def _objective(
    log_sigma2: float,
    s2: NDArray[np.float64],
    total: float,
    L: int,
    M: int,
    x_bar: float,
) -> float:
    """``Omega(sigma2)`` up to an additive constant, as a function of ``ln sigma2``.

    ``Omega`` of the module docstring equals ``sum_h x_h + L*ln sigma2 + residual/(M*sigma2)
    + sum_{x_h > x_bar} psi1(x_h) + sum_h (ln M - ln g_h**2)``, with ``psi1(x) =
    ln(tau+1) + alpha*ln(tau/alpha + 1) - tau``, since ``-ln x_h = ln sigma2 + ln M - ln
    g_h**2``. The last sum does not depend on ``sigma2`` and is dropped, which keeps the
    objective finite when some ``g_h`` are exactly zero. ``sum_h x_h + residual/(M*sigma2)``
    is ``||V||_F**2 / (M*sigma2)`` (``total`` is ``||V||_F**2``).
    """
    sigma2 = math.exp(log_sigma2)
    x = s2 / (M * sigma2)
    alpha = L / M
    big = x[x > x_bar]
    tau = _tau(big, alpha)
    psi1 = np.sum(np.log1p(tau) + alpha * np.log1p(tau / alpha) - tau)
    return float(total / (M * sigma2) + L * log_sigma2 + psi1)


def _minimise_log_sigma2(
    s2: NDArray[np.float64], total: float, L: int, M: int, x_bar: float, lo: float, hi: float
) -> float:
    """Bounded minimisation of the objective over ``ln sigma2`` in ``[lo, hi]``.

    The objective can have several local minima (each singular value that crosses the
    threshold bends it), so a bounded Brent search (``minimize_scalar(method="bounded")``)
    runs both on the whole interval, as the reference implementation does, and on the
    bracket around the best point of a 64-point grid; the lower of the two is returned.
    """
    if hi - lo <= 1e-12:
        return hi
    args = (s2, total, L, M, x_bar)
    options = {"xatol": 1e-10 * max(1.0, abs(lo), abs(hi))}
    candidates = [
        minimize_scalar(_objective, bounds=(lo, hi), args=args, method="bounded", options=options)
    ]
    grid = np.linspace(lo, hi, _GRID_POINTS)
    values = [_objective(float(t), *args) for t in grid]
    best = int(np.argmin(values))
    a, b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, _GRID_POINTS - 1)])
    candidates.append(
        minimize_scalar(_objective, bounds=(a, b), args=args, method="bounded", options=options)
    )
    points = [float(c.x) for c in candidates] + [float(grid[best]), lo, hi]
    return min(points, key=lambda t: _objective(t, *args))


def evbmf(matrix: torch.Tensor | NDArray[Any], *, sigma2: float | None = None) -> EVBMFResult:
    """Empirical VBMF of one matrix: noise variance, rank and shrunk singular values.

    See the module docstring for the model; this follows design.md §3 and Nakajima et al.,
    JMLR 14 (2013), in float64.

    Args:
        matrix: A 2-D tensor or array (any float dtype, any device); it is transposed
            internally so that ``L <= M``, so the result does not depend on orientation.
        sigma2: The noise variance per entry when known (``>= 0``); None estimates it.
            ``0`` declares the matrix noise-free: the rank is then its numerical rank
            (singular values above ``g_1 * max(L, M) * eps``).

    Returns:
        The :class:`EVBMFResult`. Special cases: an empty or all-zero matrix has rank 0 and
        ``sigma2 = 0``; a matrix whose singular values from index ``e+1`` on are exactly
        zero (``lower = 0``: exactly low rank, ``rank < L / (1 + alpha)``) has its numerical
        rank and ``sigma2 = 0``, since the objective then decreases without bound as
        ``sigma2 -> 0``. A ``1 x M`` matrix always gets rank 0 when ``sigma2`` is
        estimated (``H_bar = 0``).

    Raises:
        DecompositionError: ``matrix`` is not 2-D, has NaN / inf entries, or ``sigma2``
            is negative or not finite.
    """
    V = _as_matrix(matrix)
    L, M = V.shape
    empty = np.zeros(0, dtype=np.float64)
    if sigma2 is not None and not (math.isfinite(sigma2) and sigma2 >= 0.0):
        raise DecompositionError(
            f"sigma2={sigma2!r} is not a valid noise variance; allowed is a finite value >= 0 "
            "(or None to estimate it)"
        )
    if L == 0:
        return EVBMFResult(0, 0.0, 0.0, empty, empty, (L, M))
    s = _singular_values(V)
    alpha = L / M
    tau_bar = _TAU_BAR_COEF * math.sqrt(alpha)
    x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar)
    total = float(np.sum(V * V))
    if s[0] == 0.0:
        return EVBMFResult(0, 0.0, 0.0, s, empty, (L, M))
    # Singular values at round-off level of an exactly rank-deficient matrix count as zero.
    s_clean = np.where(s > s[0] * max(L, M) * np.finfo(np.float64).eps, s, 0.0)

    if sigma2 is None:
        H = L  # all singular values are computed, so residual = ||V||^2 - sum g^2 = 0.
        e = min(math.ceil(L / (1.0 + alpha)) - 1, H) - 1
        s2 = s_clean * s_clean
        upper = total / (L * M)
        lower = max(float(s2[e + 1]) / (M * x_bar), float(np.mean(s2[e + 1 :])) / M)
        if lower <= 0.0:
            sigma2 = 0.0
        else:
            lower = min(lower, upper)
            log_s2 = _minimise_log_sigma2(s2, total, L, M, x_bar, math.log(lower), math.log(upper))
            sigma2 = math.exp(log_s2)

    if sigma2 == 0.0:
        rank = int(np.count_nonzero(s_clean))
        return EVBMFResult(rank, 0.0, 0.0, s, s[:rank].copy(), (L, M))

    threshold = math.sqrt(M * sigma2 * x_bar)
    rank = int(np.count_nonzero(s > threshold))
    kept = s[:rank]
    ratio = 1.0 - (L + M) * sigma2 / kept**2
    root = np.sqrt(np.maximum(ratio**2 - 4.0 * L * M * sigma2**2 / kept**4, 0.0))
    shrunk = kept / 2.0 * (ratio + root)
    return EVBMFResult(rank, float(sigma2), threshold, s, shrunk, (L, M))


def estimate_rank(matrix: torch.Tensor | NDArray[Any], *, sigma2: float | None = None) -> int:
    """EVBMF rank of a matrix (Nakajima et al., JMLR 2013; design.md §3).

    The rank is the number of singular values ``g_h > sigma * sqrt(M * x_bar)`` where the
    noise variance ``sigma**2`` is estimated by minimising the EVB free energy (see
    :func:`evbmf` and the module docstring). It is invariant to transposition and to
    scaling the matrix by a non-zero constant.

    Args:
        matrix: A 2-D tensor or array; computed in float64.
        sigma2: Known noise variance per entry (``0`` = noise-free: numerical rank);
            None (default) estimates it.

    Returns:
        The rank, in ``[0, H_bar]`` with ``H_bar = ceil(L / (1 + L/M)) - 1`` when
        ``sigma2`` is estimated (0 for pure noise and for a zero matrix), in
        ``[0, min(L, M)]`` when it is given.

    Raises:
        DecompositionError: see :func:`evbmf`.
    """
    return evbmf(matrix, sigma2=sigma2).rank


# ---------------------------------------------------------------------- layer seeds
def _check_weaken(weaken: float) -> float:
    bad = isinstance(weaken, bool) or not isinstance(weaken, numbers.Real)
    if bad or not 0.0 <= float(weaken) <= 1.0:  # NaN fails the comparison as well
        raise InvalidPlanError(
            f"weaken={weaken!r} is out of range; allowed is a number in [0, 1] "
            "(0 keeps the VBMF rank, 1 gives full rank)"
        )
    return float(weaken)


def _finish(rank: int, full: int, weaken: float) -> int:
    """Clamp a VBMF rank to ``[1, full]`` and move it toward full: ``ceil(R + w*(full-R))``."""
    full = max(full, 1)
    rank = min(max(rank, 1), full)
    moved = rank + weaken * (full - rank)
    return min(max(math.ceil(moved - 1e-9), rank), full)


def vbmf_ranks(
    layer_module: nn.Conv2d | nn.Linear, method: str = "tucker2", *, weaken: float = 0.0
) -> dict[str, int]:
    """VBMF rank seeds of one layer for one decomposition method.

    Each method says what VBMF reads (:meth:`DecompositionMethod.vbmf_matrices`): per rank
    name, the matrices whose EVBMF rank (:func:`estimate_rank`, the maximum over them)
    estimates it; e.g. Tucker-2's ``r_in`` from the mode-1 unfolding ``S x (T*Dh*Dw)`` and
    ``r_out`` from the mode-0 unfolding ``T x (S*Dh*Dw)`` (Kim et al., ICLR 2016), channel
    SVD's ``r`` from ``T x (S*Dh*Dw)``. Each rank is clamped to ``[1, full]`` (the method's
    ``rank_space``; a VBMF rank of 0, as for a layer whose weights look like pure noise,
    becomes 1) and then weakened toward full: ``R' = ceil(R + weaken * (full - R))``
    (musco's "weakened VBMF").

    Args:
        layer_module: The dense layer (its ``weight`` is read, in float64).
        method: A registered method that supports VBMF (:func:`vbmf_methods`).
        weaken: ``w`` in ``[0, 1]``; 0 keeps the VBMF ranks, 1 gives full ranks.

    Returns:
        The method's ranks, e.g. ``{"r_in": R3, "r_out": R4}`` for ``tucker2``.

    Raises:
        UnknownNameError: ``method`` is not registered or VBMF does not apply to it (the
            message lists those it applies to).
        InvalidPlanError: ``weaken`` is not a number in ``[0, 1]``.
        UnsupportedLayerError: the method cannot decompose this layer (a conv method on a
            Linear layer, a grouped / depthwise conv, ...).
    """
    if method not in vbmf_methods():
        raise UnknownNameError("method", method, vbmf_methods())
    impl = get_method(method)
    w = _check_weaken(weaken)
    info = describe_layer("layer", layer_module)
    impl.check_supported(info)
    options = impl.resolve_options(info, None)
    weight = layer_module.weight.detach().to(device="cpu", dtype=torch.float64)
    matrices = impl.vbmf_matrices(weight, info, options)
    assert matrices is not None  # supports_vbmf
    full = impl.rank_space(info, options)
    return {
        name: _finish(max(estimate_rank(m) for m in mats), full[name], w)
        for name, mats in matrices.items()
    }


def vbmf_methods() -> tuple[str, ...]:
    """Registered methods whose ranks VBMF can estimate (they implement
    :meth:`~rankopt.spaces.DecompositionMethod.vbmf_matrices`), sorted."""
    return tuple(m for m in list_methods() if get_method(m).supports_vbmf)
