"""A decomposition method written outside rankopt, in one file (the extension example).

Importing this module registers ``ext_svd``: the channel SVD of a ``Conv2d`` (``W`` reshaped
to ``T x (S*Dh*Dw)``) computed with ``torch.linalg.svd`` and built as a ``Dh x Dw`` conv
``S -> R`` followed by a 1x1 conv ``R -> T`` with the bias. Only rankopt's public API is used;
nothing else in rankopt is changed to make the search, the studies and the plans use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rankopt import DecompositionMethod, LayerInfo, register_method

NAME = "ext_svd"


@register_method(NAME)
class ExternalChannelSVD(DecompositionMethod):
    """Channel SVD by ``torch.linalg.svd``; one rank ``r`` in ``[1, min(T, S*Dh*Dw)]``."""

    rank_names = ("r",)
    label = "external SVD"
    abbreviation = "XSVD"
    color = "#8c564b"

    def rank_space(
        self, layer: LayerInfo, options: Mapping[str, Any] | None = None
    ) -> dict[str, int]:
        kh, kw = layer.kernel_size
        return {"r": min(layer.out_channels, layer.in_channels * kh * kw)}

    def n_params(
        self, layer: LayerInfo, ranks: Mapping[str, int], options: Mapping[str, Any] | None = None
    ) -> int:
        kh, kw = layer.kernel_size
        bias = layer.out_channels if layer.has_bias else 0
        return ranks["r"] * (layer.in_channels * kh * kw + layer.out_channels) + bias

    def macs(
        self, layer: LayerInfo, ranks: Mapping[str, int], options: Mapping[str, Any] | None = None
    ) -> int:
        kh, kw = layer.kernel_size
        ho, wo = layer.output_hw
        return ho * wo * ranks["r"] * (layer.in_channels * kh * kw + layer.out_channels)

    def decompose(
        self,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Mapping[str, int],
        options: Mapping[str, Any],
    ) -> tuple[torch.Tensor, ...]:
        matrix = weight.to(torch.float64).reshape(layer.out_channels, -1)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        r = ranks["r"]
        root = s[:r].sqrt()
        return (u[:, :r] * root, root[:, None] * vh[:r])

    def to_module(
        self,
        layer: LayerInfo,
        factors: tuple[torch.Tensor, ...],
        bias: torch.Tensor | None,
        options: Mapping[str, Any],
    ) -> nn.Module:
        left, right = factors
        r = right.shape[0]
        first = nn.Conv2d(
            layer.in_channels,
            r,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=False,
        )
        second = nn.Conv2d(r, layer.out_channels, 1, bias=bias is not None)
        with torch.no_grad():
            first.weight.copy_(right.reshape(r, layer.in_channels, *layer.kernel_size))
            second.weight.copy_(left.reshape(layer.out_channels, r, 1, 1))
            if bias is not None and second.bias is not None:
                second.bias.copy_(bias)
        return nn.Sequential(first, second)

    def reconstruct(
        self, layer: LayerInfo, factors: tuple[torch.Tensor, ...], options: Mapping[str, Any]
    ) -> torch.Tensor:
        left, right = factors
        return (left @ right).reshape(layer.weight_shape)
