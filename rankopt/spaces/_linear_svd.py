"""``linear_svd``: a ``Linear`` split into two thinner ``Linear`` layers by truncated SVD."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rankopt.spaces._base import Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._svd import (
    BoundedMatrixRanks,
    SVDBasis,
    bias_params,
    bounded_svd,
    split_truncated,
)

__all__ = ["LinearSVD"]


@register_method("linear_svd")
class LinearSVD(BoundedMatrixRanks):
    """``Linear in -> R`` (no bias) then ``Linear R -> out`` (with the original bias).

    Full rank is ``min(in, out)``; MACs are ``R*(in + out)*P`` with ``P`` the number of
    positions the layer is applied at (``layer.out_positions``, 1 for a classifier head).
    """

    rank_names = ("r",)
    vbmf_seed = 1
    label = "linear SVD"
    abbreviation = "LSVD"
    color = "#17becf"

    def unsupported_reason(self, layer: LayerInfo) -> str | None:
        """Only ``Linear`` layers are supported."""
        if layer.kind != "linear":
            return f"{self.name} applies to Linear layers, not {layer.kind}"
        if not layer.eligible:
            return layer.reason
        return None

    def matrix_shape(self, layer: LayerInfo) -> tuple[int, int]:
        """``(out, in)``."""
        return layer.out_channels, layer.in_channels

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(in, out)}``."""
        return {"r": min(layer.in_channels, layer.out_channels)}

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]]:
        """``r`` of the ``out x in`` weight."""
        return {"r": [weight]}

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*(in + out)`` plus the bias."""
        return ranks["r"] * (layer.in_channels + layer.out_channels) + bias_params(layer)

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*(in + out)*P`` per image."""
        return ranks["r"] * (layer.in_channels + layer.out_channels) * layer.out_positions

    def cache_basis(self, weight: torch.Tensor, layer: LayerInfo, options: Options) -> SVDBasis:
        """SVD basis of the ``(out, in)`` weight (partial above the budget)."""
        return bounded_svd(weight)

    def decompose_from_basis(
        self,
        basis: Any,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Ranks,
        options: Options,
    ) -> Factors:
        """``(first (R, in), second (out, R))``."""
        left, right = split_truncated(basis, weight, ranks["r"])
        return right.contiguous(), left.contiguous()

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """``Sequential(Linear in->R, Linear R->out + bias)``."""
        first, second = factors
        r = int(first.shape[0])
        a = nn.Linear(layer.in_channels, r, bias=False)
        b = nn.Linear(r, layer.out_channels, bias=bias is not None)
        with torch.no_grad():
            a.weight.copy_(first.to(torch.float32))
            b.weight.copy_(second.to(torch.float32))
            if bias is not None and b.bias is not None:
                b.bias.copy_(bias.to(torch.float32))
        return nn.Sequential(a, b)

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``second @ first``."""
        first, second = factors
        return second @ first
