"""CP-ALS on a ``(K, T, S)`` float32 tensor with bounded work (used by :mod:`._cp`).

Written here rather than calling ``tensorly.decomposition.parafac``: tensorly's MTTKRP forms
the Khatri-Rao product of the other modes explicitly (9.1 GB and 185 s on one 512-channel 3x3
conv at rank 570, float64, 4-way). Each MTTKRP here is ``K`` matrix products, memory
``O((T + S) * R * K)``; the ``R x R`` normal equations are solved by Cholesky with a small
ridge; the work of a sweep is counted in flop-units (:func:`sweep_work`) so that a
decomposition's cost is bounded deterministically.
"""

from __future__ import annotations

import math

import torch

from rankopt.spaces._base import Factors

__all__ = [
    "CP_ALS_WORK_BUDGET",
    "CP_MIN_ITER",
    "CP_N_ITER_MAX",
    "CP_RIDGE",
    "CP_SEED",
    "CP_TOL",
    "DEGENERACY_RATIO",
    "als",
    "als_iterations",
    "sweep_work",
]

DEGENERACY_RATIO = 1e4
"""Largest allowed ``sum_r ||term_r|| / ||W||`` before an ALS result counts as degenerate."""

CP_N_ITER_MAX = 60
"""Most ALS sweeps per attempt."""
CP_MIN_ITER = 10
"""Fewest ALS sweeps an attempt needs; a rank where they do not fit the budget is not offered."""
CP_TOL = 1e-6
"""ALS stops when the relative change of the squared error is below this."""
CP_SEED = 0
"""Seed of the generator of the first attempt (``+ i`` for attempt ``i``)."""
CP_ALS_WORK_BUDGET = 6e10
"""Flop-units all attempts of one decomposition may spend together (:func:`sweep_work`).
About 3 s on one core of this machine (``benchmarks/BENCHMARKS_SCALE.md``)."""
CP_RIDGE = 1e-6
"""Ridge added to the normal equations, relative to their mean diagonal."""


def sweep_work(shape: tuple[int, ...], rank: int) -> int:
    """Flop-units of one ALS sweep on a ``(T, S, Dh, Dw)`` kernel at ``rank``.

    Two batched products ``W[:, :, k] @ K`` (``2*T*S*Dh*Dw*R`` each) give the three MTTKRPs,
    and three ``R x R`` Cholesky solves cost about ``R**3`` together with their Gram matrices.
    """
    numel = math.prod(shape)
    return 4 * numel * rank + rank**3 + 2 * (shape[0] + shape[1]) * rank * rank


def als_iterations(shape: tuple[int, ...], rank: int, budget: float = CP_ALS_WORK_BUDGET) -> int:
    """ALS sweeps that ``budget`` flop-units pay for on ``shape`` at ``rank``.

    Args:
        shape: Shape of the kernel, ``(T, S, Dh, Dw)``.
        rank: CP rank ``R``.
        budget: Flop-units available.

    Returns:
        ``min(CP_N_ITER_MAX, budget // sweep_work)`` (may be below :data:`CP_MIN_ITER`:
        then the rank is not offered, see :meth:`CP.useful_ranks`).
    """
    return int(min(CP_N_ITER_MAX, budget // sweep_work(shape, rank)))


def _leading(unfolding: torch.Tensor, rank: int, gen: torch.Generator) -> torch.Tensor:
    """``rank`` leading left singular vectors of ``unfolding`` (Gram eigenvectors), padded
    with seeded random columns where ``rank`` exceeds its row count."""
    rows = unfolding.shape[0]
    gram = (unfolding @ unfolding.T).double()
    _, vecs = torch.linalg.eigh(gram)
    lead = vecs[:, -min(rank, rows) :].flip(1).to(unfolding.dtype)
    if rank <= rows:
        return lead
    pad = torch.randn(rows, rank - rows, generator=gen, dtype=unfolding.dtype)
    return torch.cat([lead, pad], dim=1)


def _start(x: torch.Tensor, rank: int, init: str, seed: int) -> list[torch.Tensor]:
    """Starting factors ``[K_t, K_s, K_hw]`` (``x`` is ``(K, T, S)``)."""
    gen = torch.Generator().manual_seed(seed)
    k, t, s = x.shape
    if init == "random":
        return [torch.randn(n, rank, generator=gen, dtype=x.dtype) for n in (t, s, k)]
    return [
        _leading(x.permute(1, 0, 2).reshape(t, k * s), rank, gen),
        _leading(x.permute(2, 0, 1).reshape(s, k * t), rank, gen),
        _leading(x.reshape(k, t * s), rank, gen),
    ]


def _solve(mttkrp: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``mttkrp @ inv(gram)`` for a symmetric PSD ``gram``, with a small ridge."""
    ridge = CP_RIDGE * float(gram.diagonal().mean().clamp_min(1e-30))
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    chol, info = torch.linalg.cholesky_ex(gram + ridge * eye)
    if int(info) != 0:
        return torch.linalg.lstsq(gram + ridge * eye, mttkrp.T).solution.T
    return torch.cholesky_solve(mttkrp.T, chol).T


def als(x: torch.Tensor, rank: int, init: str, seed: int, n_iter: int) -> Factors:
    """ALS on ``x`` (``(K, T, S)`` float32, the kernel with its positions first), ``n_iter``
    sweeps at most; the factors ``(K_t, K_s, K_hw)`` in float64, norm-balanced per term."""
    a, b, c = _start(x, rank, init, seed)
    norm_sq = float((x.double() ** 2).sum())
    previous = math.inf
    for _ in range(n_iter):
        xb = torch.matmul(x, b)  # (K, T, R): W_k @ K_s
        a = _solve((xb * c[:, None, :]).sum(0), (b.T @ b) * (c.T @ c))
        xa = torch.matmul(x.transpose(1, 2), a)  # (K, S, R): W_k^T @ K_t
        b = _solve((xa * c[:, None, :]).sum(0), (a.T @ a) * (c.T @ c))
        m_c = (xa * b[None]).sum(1)  # (K, R)
        c = _solve(m_c, (a.T @ a) * (b.T @ b))
        inner = float((m_c * c).double().sum())
        model_sq = float(((a.T @ a) * (b.T @ b) * (c.T @ c)).double().sum())
        error = max(norm_sq - 2 * inner + model_sq, 0.0) / max(norm_sq, 1e-300)
        if not math.isfinite(error):
            break
        if math.isfinite(previous) and abs(previous - error) <= CP_TOL * max(previous, 1e-12):
            break
        previous = error
    return _balance(tuple(f.double() for f in (a, b, c)))


def _balance(factors: Factors) -> Factors:
    """Give the columns of every factor of a term the same norm (their geometric mean).

    ALS leaves each term's scale spread arbitrarily over its factors; a chain of layers
    with badly unequal scales fine-tunes poorly (exploding gradients). The product, and so
    the reconstruction, is unchanged.
    """
    norms = torch.stack([f.norm(dim=0) for f in factors])  # (n_factors, R)
    if bool((norms == 0).any()):
        return factors
    target = norms.log().mean(dim=0).exp()
    return tuple(f * (target / n)[None, :] for f, n in zip(factors, norms, strict=True))
