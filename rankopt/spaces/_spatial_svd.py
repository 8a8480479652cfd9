"""``spatial_svd``: Jaderberg et al. (2014) scheme 2, a ``Dh x 1`` conv then a ``1 x Dw`` conv."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._svd import SVDBasis, bias_params, conv, matrix_svd, split_truncated

__all__ = ["SpatialSVD"]


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """``W (T, S, Dh, Dw)`` laid out as the ``(S*Dh, Dw*T)`` matrix scheme 2 factorises."""
    t, s, dh, dw = weight.shape
    return weight.permute(1, 2, 3, 0).reshape(s * dh, dw * t)


@register_method("spatial_svd")
class SpatialSVD(DecompositionMethod):
    """``Dh x 1`` conv ``S -> R`` (stride ``(sh, 1)``, padding ``(ph, 0)``, dilation
    ``(dh, 1)``), then ``1 x Dw`` conv ``R -> T`` (stride ``(1, sw)``, padding ``(0, pw)``,
    dilation ``(1, dw)``) with the bias.

    The matrix factorised is ``W`` permuted to ``(S*Dh, Dw*T)``; full rank is
    ``min(S*Dh, T*Dw)``. The first conv runs at ``Ho x Wi`` output positions.
    """

    rank_names = ("r",)
    spatial = True
    label = "spatial SVD"
    abbreviation = "SSVD"
    color = "#9467bd"

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(S*Dh, T*Dw)}``."""
        kh, kw = layer.kernel_size
        return {"r": min(layer.in_channels * kh, layer.out_channels * kw)}

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]]:
        """``r`` of ``W`` permuted to ``(S, Dh, Dw, T)`` and reshaped to ``(S*Dh) x (Dw*T)``."""
        t, s, dh, dw = weight.shape
        return {"r": [weight.permute(1, 2, 3, 0).reshape(s * dh, dw * t)]}

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*(S*Dh + Dw*T)`` plus the bias."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return r * (layer.in_channels * kh + kw * layer.out_channels) + bias_params(layer)

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``Ho*Wi*R*S*Dh + Ho*Wo*T*R*Dw`` per image (as built)."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        ho, wo = layer.output_hw
        wi = layer.input_hw[1]
        return ho * wi * r * layer.in_channels * kh + ho * wo * layer.out_channels * r * kw

    def cache_basis(self, weight: torch.Tensor, layer: LayerInfo, options: Options) -> SVDBasis:
        """SVD basis of the ``(S*Dh, Dw*T)`` matrix."""
        return matrix_svd(_matrix(weight))

    def decompose_from_basis(
        self,
        basis: Any,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Ranks,
        options: Options,
    ) -> Factors:
        """``(vertical (R, S, Dh, 1), horizontal (T, R, 1, Dw))``."""
        t, s, dh, dw = weight.shape
        r = ranks["r"]
        left, right = split_truncated(basis, _matrix(weight), r)  # (S*Dh, R), (R, Dw*T)
        vertical = left.T.reshape(r, s, dh, 1).contiguous()
        horizontal = right.reshape(r, dw, t).permute(2, 0, 1).reshape(t, r, 1, dw).contiguous()
        return vertical, horizontal

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """``Sequential(Conv2d Dhx1 S->R, Conv2d 1xDw R->T + bias)``."""
        vertical, horizontal = factors
        r = int(vertical.shape[0])
        (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
        return nn.Sequential(
            conv(
                layer.in_channels,
                r,
                vertical,
                stride=(sh, 1),
                padding=(ph, 0),
                dilation=(dh, 1),
            ),
            conv(
                r,
                layer.out_channels,
                horizontal,
                stride=(1, sw),
                padding=(0, pw),
                dilation=(1, dw),
                bias=bias,
            ),
        )

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``W[t, s, h, w] = sum_r vertical[r, s, h] * horizontal[t, r, w]``."""
        vertical, horizontal = factors
        return torch.einsum("rsh,trw->tshw", vertical[..., 0], horizontal[:, :, 0, :])
