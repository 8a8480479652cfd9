"""Devices: ``device="auto" | "cpu" | "cuda" | "cuda:N"`` for the search and the evaluators.

Neutral ground (imports no rankopt subpackage). Decompositions are always computed in
float64 on the CPU (:mod:`rankopt.spaces`) and their modules are built on the device of the
dense weight, so a dense model on the GPU gives compressed models on the GPU.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rankopt.errors import SettingsError

__all__ = ["DEVICE_CHOICES", "Device", "model_device", "on_device", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")
"""Device names the command line offers (the API also takes ``cuda:N`` and torch devices)."""

Device = str | torch.device


def resolve_device(device: Device | None) -> torch.device:
    """The torch device for ``device``.

    Args:
        device: ``"auto"`` or None (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, or a :class:`torch.device`.

    Returns:
        The device.

    Raises:
        SettingsError: the name is not a device, or CUDA is asked for and not available.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise SettingsError(
            f"device = {device!r} is not a device; choose one of {', '.join(DEVICE_CHOICES)} "
            "or cuda:N"
        ) from None
    if dev.type not in ("cpu", "cuda"):
        raise SettingsError(
            f"device = {device!r}: rankopt runs on the CPU or CUDA; choose one of "
            f"{', '.join(DEVICE_CHOICES)} or cuda:N"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(
                f"device = {device!r} but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use device 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise SettingsError(
                f"device = {device!r} but this machine has {count} CUDA device(s): "
                f"cuda:0..cuda:{count - 1}"
            )
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _same(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True
    index_a = a.index if a.index is not None else torch.cuda.current_device()
    index_b = b.index if b.index is not None else torch.cuda.current_device()
    return index_a == index_b


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself when it is already on ``device``, else a copy moved there.

    The caller's model is never moved: the search and the evaluators leave it untouched.
    """
    if _same(model_device(model), device):
        return model
    return copy.deepcopy(model).to(device)
