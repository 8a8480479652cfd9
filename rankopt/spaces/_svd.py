"""Channel SVD of a conv (``svd``) and the SVD helpers the other matrix methods share."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo

__all__ = ["ChannelSVD", "SVDBasis", "matrix_svd", "split_truncated", "sym_eig_desc"]

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
class ChannelSVD(DecompositionMethod):
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
        """SVD basis of ``W.reshape(T, S*Dh*Dw)``."""
        return matrix_svd(weight.reshape(weight.shape[0], -1))

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
