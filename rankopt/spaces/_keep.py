"""``keep``: the dense layer itself (no decomposition)."""

from __future__ import annotations

import torch
from torch import nn

from rankopt.errors import UnsupportedLayerError
from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo

__all__ = ["Keep"]


@register_method("keep")
class Keep(DecompositionMethod):
    """Keep the dense layer. Supports every layer, ineligible ones included; no ranks.

    ``n_params`` and ``macs`` are the dense layer's.
    :func:`rankopt.spaces.build_module` returns a deep copy of the original module.
    """

    rank_names = ()
    label = "keep (dense)"
    abbreviation = "keep"
    color = "#d9d9d9"

    def unsupported_reason(self, layer: LayerInfo) -> str | None:
        """Always None: keeping a layer is always possible."""
        return None

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """No ranks: ``{}``."""
        return {}

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """The dense parameter count."""
        return layer.n_params

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """The dense MACs per image (from the geometry for Conv2d / Linear, else ``layer.macs``)."""
        if layer.kind in ("conv2d", "linear"):
            kh, kw = layer.kernel_size
            per_position = layer.in_channels // max(layer.groups, 1) * kh * kw
            return per_position * layer.out_channels * layer.out_positions
        return layer.macs

    def decompose(
        self, weight: torch.Tensor, layer: LayerInfo, ranks: Ranks, options: Options
    ) -> Factors:
        """The weight itself, as float64: ``(W,)``."""
        return (weight.detach().to(torch.float64).clone(),)

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """A dense ``Conv2d`` / ``Linear`` with the layer's geometry holding ``factors[0]``."""
        (weight,) = factors
        module: nn.Conv2d | nn.Linear
        if layer.kind == "linear":
            module = nn.Linear(layer.in_channels, layer.out_channels, bias=bias is not None)
        elif layer.kind == "conv2d":
            module = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
                bias=bias is not None,
            )
        else:
            raise UnsupportedLayerError(
                f"layer {layer.name!r}: keep cannot rebuild a {layer.kind!r} layer from its "
                "weight; use rankopt.spaces.build_module, which copies the module"
            )
        with torch.no_grad():
            module.weight.copy_(weight.reshape(module.weight.shape).to(torch.float32))
            if bias is not None and module.bias is not None:
                module.bias.copy_(bias.to(torch.float32))
        return module

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """The weight itself."""
        return factors[0]
