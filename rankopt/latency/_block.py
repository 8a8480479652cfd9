"""ONNX Runtime's channel block on this CPU (light: numpy only, inside the function).

Its own module because both the runtimes (the search's default rank multiple) and the ONNX
export (padding depthwise chains to the block) read it, and neither imports the other.
"""

from __future__ import annotations

__all__ = ["nchwc_block"]


def nchwc_block() -> int:
    """ONNX Runtime's NCHWc channel block on this CPU: 16 with AVX-512F, 8 with AVX2, else 4.

    Read from numpy's CPU feature detection (the same CPUID bits ONNX Runtime's MLAS
    library checks; numpy 2 and 1 keep it in different private modules); 4 where numpy
    does not report them.
    """
    import importlib

    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = dict(importlib.import_module(module).__cpu_features__)
            break
        except (ImportError, AttributeError):
            continue
    if features.get("AVX512F"):
        return 16
    if features.get("AVX2") and features.get("FMA3"):
        return 8
    return 4
