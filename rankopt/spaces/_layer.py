"""Static description of a decomposable layer (:class:`LayerInfo`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

__all__ = ["LayerInfo", "describe_layer"]

LayerKind = Literal["conv2d", "linear", "other"]


@dataclass(frozen=True)
class LayerInfo:
    """Shapes and dense cost of one layer of a model.

    For a ``Conv2d`` the weight has shape ``(out_channels, in_channels // groups, kh, kw)``
    = ``(T, S, Dh, Dw)`` in design.md's notation. A ``Linear`` is described as a 1x1 conv
    with ``in_channels = in_features`` and ``out_channels = out_features``; its
    ``output_hw`` holds ``(1, P)`` where ``P`` is the number of positions it is applied at
    (1 for a classifier head).

    Attributes:
        name: Qualified module name in the model (``"layer1.0.conv1"``).
        kind: ``"conv2d"``, ``"linear"`` or ``"other"``.
        out_channels: T (out features for a Linear).
        in_channels: S (in features for a Linear), all groups together.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``(ph, pw)`` in pixels (string paddings are resolved).
        dilation: ``(dh, dw)``.
        groups: Conv groups (1 for a Linear).
        has_bias: Whether the layer has a bias.
        input_hw: Spatial size of the input, ``(Hi, Wi)``; ``(0, 0)`` when not profiled.
        output_hw: Spatial size of the output, ``(Ho, Wo)``; ``(0, 0)`` when not profiled.
        n_params: Dense parameter count (weight and bias).
        macs: Dense multiply-accumulates per image (fvcore's unit), 0 when not profiled.
        eligible: Whether any decomposition method other than ``keep`` may apply.
        reason: Why the layer is not eligible ("" when it is).
    """

    name: str
    kind: LayerKind
    out_channels: int
    in_channels: int
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    has_bias: bool = False
    input_hw: tuple[int, int] = (0, 0)
    output_hw: tuple[int, int] = (0, 0)
    n_params: int = 0
    macs: int = 0
    eligible: bool = True
    reason: str = ""

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the dense weight tensor as torch stores it."""
        if self.kind == "linear":
            return (self.out_channels, self.in_channels)
        kh, kw = self.kernel_size
        return (self.out_channels, self.in_channels // max(self.groups, 1), kh, kw)

    @property
    def in_positions(self) -> int:
        """Number of input positions, ``Hi * Wi`` (P for a Linear)."""
        return self.input_hw[0] * self.input_hw[1]

    @property
    def out_positions(self) -> int:
        """Number of output positions, ``Ho * Wo`` (P for a Linear)."""
        return self.output_hw[0] * self.output_hw[1]

    def with_spatial(self, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> LayerInfo:
        """Return a copy with the profiled spatial sizes and the dense MACs filled in."""
        info = replace(self, input_hw=input_hw, output_hw=output_hw)
        return replace(info, macs=_dense_macs(info))


def _dense_macs(layer: LayerInfo) -> int:
    kh, kw = layer.kernel_size
    per_position = layer.in_channels // max(layer.groups, 1) * kh * kw * layer.out_channels
    return per_position * layer.out_positions


def _resolve_padding(module: nn.Conv2d) -> tuple[tuple[int, int], str]:
    """Numeric symmetric padding of a conv, or a reason why it has none."""
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0), ""
        # "same": total padding d*(k-1) per side pair; symmetric only when it is even.
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in totals):
            return (0, 0), "padding='same' with an even effective kernel pads asymmetrically"
        return (totals[0] // 2, totals[1] // 2), ""
    return (int(pad[0]), int(pad[1])), ""


def describe_layer(name: str, module: nn.Module) -> LayerInfo:
    """Describe a module without running it (no spatial sizes, ``macs = 0``).

    Args:
        name: Qualified name of the module in its model.
        module: The module; ``nn.Conv2d`` and ``nn.Linear`` can be eligible, anything
            else is described as kind ``"other"`` and not eligible.

    Returns:
        The layer's :class:`LayerInfo`; ``eligible`` is False with a ``reason`` for layers
        no method other than ``keep`` supports.
    """
    n_params = sum(p.numel() for p in module.parameters(recurse=False))
    if type(module) is nn.Linear:
        return LayerInfo(
            name=name,
            kind="linear",
            out_channels=module.out_features,
            in_channels=module.in_features,
            has_bias=module.bias is not None,
            input_hw=(1, 1),
            output_hw=(1, 1),
            n_params=n_params,
        )
    if type(module) is nn.Conv2d:
        padding, reason = _resolve_padding(module)
        kh, kw = module.kernel_size
        sh, sw = module.stride
        dh, dw = module.dilation
        if module.groups != 1:
            kind_of = "depthwise" if module.groups == module.in_channels else "grouped"
            reason = f"{kind_of} conv (groups={module.groups}): only 'keep' is supported"
        elif module.padding_mode != "zeros":
            reason = f"padding_mode={module.padding_mode!r}: only 'zeros' can be decomposed"
        return LayerInfo(
            name=name,
            kind="conv2d",
            out_channels=module.out_channels,
            in_channels=module.in_channels,
            kernel_size=(kh, kw),
            stride=(sh, sw),
            padding=padding,
            dilation=(dh, dw),
            groups=module.groups,
            has_bias=module.bias is not None,
            n_params=n_params,
            eligible=not reason,
            reason=reason,
        )
    return LayerInfo(
        name=name,
        kind="other",
        out_channels=0,
        in_channels=0,
        n_params=n_params,
        eligible=False,
        reason=f"{type(module).__name__} is not a supported layer type (Conv2d, Linear)",
    )


def conv_output_hw(layer: LayerInfo, input_hw: tuple[int, int]) -> tuple[int, int]:
    """Output spatial size of a conv layer for a given input size (PyTorch's formula)."""
    out = []
    for size, k, s, p, d in zip(
        input_hw, layer.kernel_size, layer.stride, layer.padding, layer.dilation, strict=True
    ):
        out.append(math.floor((size + 2 * p - d * (k - 1) - 1) / s + 1))
    return (out[0], out[1])
