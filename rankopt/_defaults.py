"""Defaults shared by the command line and the studies' "next commands" (light: no imports).

A root module because ``rankopt --help`` must not import torch, and every subpackage that
would own these names imports it on load.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DATA", "DEFAULT_LATENCY_RUNTIME", "DEFAULT_MODEL"]

DEFAULT_MODEL = "resnet8"
"""The built-in model of ``rankopt search`` and ``apply`` / ``finetune`` unless told."""

DEFAULT_DATA = "mnist5k"
"""The built-in data set of the command line unless told."""

DEFAULT_LATENCY_RUNTIME = "onnxruntime"
"""Where a study's plans run unless told (``search``, ``finetune``): ONNX Runtime, as ``rankopt
apply --out x.onnx`` exports them. Issue 37: MACs went down while the time on it went up, so
a search predicts every plan's time there and keeps plans no slower than dense."""
