"""Decomposition methods, their registry, and VBMF rank estimates.

Importing this package registers the built-in methods: ``keep``, ``tucker2``, ``cp``,
``svd``, ``spatial_svd``, ``gkpd``, ``linear_svd``.
"""

from rankopt.spaces import (  # noqa: F401  (imported to register the methods)
    _cp,
    _gkpd,
    _keep,
    _linear_svd,
    _spatial_svd,
    _svd,
    _tucker2,
)
from rankopt.spaces._base import (
    DecompositionMethod,
    Factors,
    get_method,
    list_methods,
    register_method,
)
from rankopt.spaces._build import (
    build_module,
    decompose,
    reconstruction_error,
    set_decompose_threads,
)
from rankopt.spaces._cache import cache_info, clear_cache, set_cache_limit
from rankopt.spaces._layer import LayerInfo, conv_output_hw, describe_layer
from rankopt.spaces._rounding import geometric_picks, ranks_at_fraction, round_rank, round_ranks
from rankopt.spaces._vbmf import EVBMFResult, estimate_rank, evbmf, vbmf_methods, vbmf_ranks

__all__ = [
    "DecompositionMethod",
    "EVBMFResult",
    "Factors",
    "LayerInfo",
    "build_module",
    "cache_info",
    "clear_cache",
    "conv_output_hw",
    "decompose",
    "describe_layer",
    "estimate_rank",
    "evbmf",
    "geometric_picks",
    "get_method",
    "list_methods",
    "ranks_at_fraction",
    "reconstruction_error",
    "register_method",
    "round_rank",
    "round_ranks",
    "set_cache_limit",
    "set_decompose_threads",
    "vbmf_methods",
    "vbmf_ranks",
]
