"""Channel SVD of a conv (``svd``) and the SVD helpers the other matrix methods share."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo

__all__ = [
    "MATRIX_WORK_BUDGET",
    "BoundedMatrixRanks",
    "ChannelSVD",
    "SVDBasis",
    "bounded_svd",
    "matrix_svd",
    "partial_rank",
    "split_truncated",
    "sym_eig_desc",
]

MATRIX_WORK_BUDGET = 6e10
"""Flop-units one matrix basis may cost (about 4 s on one core here). Above it the basis is
a randomized partial SVD (:func:`bounded_svd`) and only ranks up to :func:`partial_rank` are
offered: VGG-16's first classifier layer (4096 x 25088) needs 8.4e11 for its Gram matrix
(50 s and 1.4 GB measured)."""
_OVERSAMPLE = 10

SVDBasis = tuple[torch.Tensor, torch.Tensor]
"""``(vecs, s)``: singular vectors of the smaller side of a matrix and its singular values.

For an ``(m, n)`` matrix with ``m <= n``, ``vecs`` ``(m, m)`` holds the left singular vectors;
otherwise ``vecs`` ``(n, n)`` holds the right ones. Columns by decreasing singular value.
"""


def sym_eig_desc(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clipped at 0) and eigenvectors of a symmetric PSD matrix, descending."""
    vals, vecs = torch.linalg.eigh(gram)
    return vals.flip(0).clamp_min(0.0).contiguous(), vecs.flip(1).contiguous()


def matrix_svd(matrix: torch.Tensor) -> SVDBasis:
    """Singular vectors of the smaller side of a 2-D matrix (float64), from its Gram matrix.

    The eigen-decomposition of the ``min(m, n)``-square Gram matrix is several times faster
    than ``torch.linalg.svd`` on a CPU; the factors :func:`split_truncated` builds from it
    are exact projections (``U_R U_R^T M``), so full rank reproduces ``M`` to round-off.

    Args:
        matrix: ``(m, n)`` tensor.

    Returns:
        ``(vecs, s)``, see :data:`SVDBasis`.
    """
    m = matrix.to(torch.float64)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    vals, vecs = sym_eig_desc(gram)
    return vecs, vals.sqrt()


def _exact_work(m: int, n: int) -> float:
    k = min(m, n)
    return 2.0 * m * n * k + 10.0 * k**3


def partial_rank(m: int, n: int) -> int:
    """Largest rank of an ``(m, n)`` matrix whose basis fits :data:`MATRIX_WORK_BUDGET`:
    ``min(m, n)`` when the exact Gram eigensolve fits, else what a randomized range finder
    with one power iteration (``8*m*n*(k + 10)`` flop-units) can afford (at least 1)."""
    if _exact_work(m, n) <= MATRIX_WORK_BUDGET:
        return min(m, n)
    return max(1, min(min(m, n), int(MATRIX_WORK_BUDGET // (8 * m * n)) - _OVERSAMPLE))


def bounded_svd(matrix: torch.Tensor) -> SVDBasis:
    """:func:`matrix_svd` where it fits the budget, else the leading ``partial_rank``
    singular directions by a seeded randomized range finder (Halko et al. 2011, one power
    iteration), computed in ``matrix``'s dtype and returned in it."""
    m, n = matrix.shape
    k = partial_rank(m, n)
    if k == min(m, n):
        return matrix_svd(matrix)
    a = matrix if m <= n else matrix.T  # (small, big): the basis lives on the small side
    gen = torch.Generator().manual_seed(0)
    omega = torch.randn(a.shape[1], k + _OVERSAMPLE, generator=gen, dtype=a.dtype)
    q, _ = torch.linalg.qr(a @ omega)
    q, _ = torch.linalg.qr(a @ (a.T @ q))
    b = q.T @ a
    vals, vecs = sym_eig_desc((b @ b.T).double())
    u = (q.double() @ vecs)[:, :k]
    return u.to(matrix.dtype).contiguous(), vals[:k].sqrt().to(matrix.dtype)


class BoundedMatrixRanks(DecompositionMethod):
    """Base of the methods that factorise one matrix per layer (:meth:`matrix_shape`):
    ranks above :func:`partial_rank` are not offered, and :meth:`bound_note` says so."""

    @abc.abstractmethod
    def matrix_shape(self, layer: LayerInfo) -> tuple[int, int]:
        """``(m, n)`` of the matrix the method factorises on ``layer``."""

    def feasible(self, layer: LayerInfo, ranks: Ranks) -> bool:
        """Ranks up to :func:`partial_rank` of the layer's matrix."""
        return ranks["r"] <= partial_rank(*self.matrix_shape(layer))

    def bound_note(self, layer: LayerInfo) -> str | None:
        """Which ranks the matrix budget leaves out on ``layer``, or None."""
        m, n = self.matrix_shape(layer)
        cap = partial_rank(m, n)
        if cap >= min(m, n):
            return None
        return (
            f"{self.name} on {layer.name}: ranks above r={cap} not offered: an exact basis "
            f"of its {m} x {n} matrix needs {_exact_work(m, n):.3g} flop-units, more than "
            f"{MATRIX_WORK_BUDGET:.3g}"
        )


def split_truncated(
    basis: SVDBasis, matrix: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factorisation ``M ~ left @ right`` (Eckart–Young) from a basis.

    The singular values are split evenly (``sqrt(s)`` on both sides) so both factors have the
    same scale, which keeps float32 round-off balanced; directions with a singular value
    below ``1e-12 * s_max`` are not rescaled.

    Args:
        basis: ``(vecs, s)`` from :func:`matrix_svd` of ``matrix``.
        matrix: The ``(m, n)`` float64 matrix the basis was made from.
        rank: Number of singular directions kept, ``1 <= rank <= min(m, n)``.

    Returns:
        ``left`` ``(m, rank)`` and ``right`` ``(rank, n)``, new tensors.
    """
    vecs, s = basis
    v = vecs[:, :rank]
    tiny = float(s[0]) * 1e-12 if s.numel() else 0.0
    root = torch.where(s[:rank] > tiny, s[:rank].sqrt(), torch.ones_like(s[:rank]))
    if matrix.shape[0] <= matrix.shape[1]:
        return v * root, (v.T @ matrix) / root[:, None]
    return (matrix @ v) / root, v.T * root[:, None]


def conv(
    in_channels: int,
    out_channels: int,
    weight: torch.Tensor,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    bias: torch.Tensor | None = None,
) -> nn.Conv2d:
    """A float32 ``nn.Conv2d`` initialised with ``weight`` (its kernel size is read from it)."""
    kh, kw = int(weight.shape[-2]), int(weight.shape[-1])
    module = nn.Conv2d(
        in_channels,
        out_channels,
        (kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        module.weight.copy_(weight.reshape(module.weight.shape).to(torch.float32))
        if bias is not None and module.bias is not None:
            module.bias.copy_(bias.reshape(-1).to(torch.float32))
    return module


def bias_params(layer: LayerInfo) -> int:
    """Bias parameters the built module keeps (``T`` when the dense layer has a bias)."""
    return layer.out_channels if layer.has_bias else 0


@register_method("svd")
class ChannelSVD(BoundedMatrixRanks):
    """Channel SVD: a ``Dh x Dw`` conv ``S -> R`` (original stride/padding/dilation), then a
    ``1x1`` conv ``R -> T`` with the bias.

    The matrix factorised is ``W`` reshaped to ``(T, S*Dh*Dw)``; full rank is
    ``min(T, S*Dh*Dw)``.
    """

    rank_names = ("r",)
    vbmf_seed = 1
    label = "channel SVD"
    abbreviation = "SVD"
    color = "#2ca02c"

    def matrix_shape(self, layer: LayerInfo) -> tuple[int, int]:
        """``(T, S*Dh*Dw)``."""
        kh, kw = layer.kernel_size
        return layer.out_channels, layer.in_channels * kh * kw

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(T, S*Dh*Dw)}``."""
        kh, kw = layer.kernel_size
        return {"r": min(layer.out_channels, layer.in_channels * kh * kw)}

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]]:
        """``r`` of ``W`` reshaped to ``T x (S*Dh*Dw)``."""
        return {"r": [weight.reshape(weight.shape[0], -1)]}

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*(S*Dh*Dw + T)`` plus the bias."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return r * (layer.in_channels * kh * kw + layer.out_channels) + bias_params(layer)

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``Ho*Wo*R*(S*Dh*Dw + T)`` per image."""
        kh, kw = layer.kernel_size
        return layer.out_positions * ranks["r"] * (layer.in_channels * kh * kw + layer.out_channels)

    def cache_basis(self, weight: torch.Tensor, layer: LayerInfo, options: Options) -> SVDBasis:
        """SVD basis of ``W.reshape(T, S*Dh*Dw)`` (partial above the budget)."""
        return bounded_svd(weight.reshape(weight.shape[0], -1))

    def decompose_from_basis(
        self,
        basis: Any,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Ranks,
        options: Options,
    ) -> Factors:
        """``(first (R, S, Dh, Dw), second (T, R))`` from the truncated SVD."""
        left, right = split_truncated(basis, weight.reshape(weight.shape[0], -1), ranks["r"])
        return right.reshape(ranks["r"], *weight.shape[1:]).contiguous(), left.contiguous()

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """``Sequential(Conv2d DhxDw S->R, Conv2d 1x1 R->T + bias)``."""
        first, second = factors
        r = int(first.shape[0])
        return nn.Sequential(
            conv(
                layer.in_channels,
                r,
                first,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
            ),
            conv(r, layer.out_channels, second[:, :, None, None], bias=bias),
        )

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``second @ first`` folded back to ``(T, S, Dh, Dw)``."""
        first, second = factors
        return (second @ first.reshape(first.shape[0], -1)).reshape(layer.weight_shape)
