"""Decomposition methods, their registry, and VBMF rank estimates."""

from rankopt.spaces._base import (
    DecompositionMethod,
    Factors,
    get_method,
    list_methods,
    register_method,
)
from rankopt.spaces._layer import LayerInfo, conv_output_hw, describe_layer

__all__ = [
    "DecompositionMethod",
    "Factors",
    "LayerInfo",
    "conv_output_hw",
    "describe_layer",
    "get_method",
    "list_methods",
    "register_method",
]
