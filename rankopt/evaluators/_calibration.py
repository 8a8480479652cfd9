"""BatchNorm re-calibration after a decomposition.

Truncating a layer changes the mean and variance of its output; BatchNorm layers in eval
mode keep normalising with the dense network's statistics, which costs far more accuracy than
the truncation itself (resnet8 on mnist5k, uniform Tucker-2 at 50 % of the MACs: 0.47 before,
0.94 after re-estimating the statistics, with no gradient step). :func:`calibrate_bn`
re-estimates them in one no-grad pass.
"""

from __future__ import annotations

import torch
from torch import nn

from rankopt.errors import DataError, SettingsError

__all__ = ["calibrate_bn"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """Re-estimate the running statistics of every BatchNorm layer of ``model`` in place.

    Resets each BatchNorm's running mean / variance and averages the batch statistics over
    ``images`` cumulatively (``momentum=None`` during the pass, so every image counts the
    same, whatever the batch size), with the rest of the model in train mode and no
    gradient. Dropout is kept in eval mode so that it does not perturb the statistics.
    Every module's training mode and every BatchNorm's momentum are restored afterwards.

    On the dense model this is a near no-op: the statistics it estimates are those the
    model was trained with, up to sampling noise.

    Args:
        model: The network (modified in place).
        images: ``(N, C, H, W)`` training images (no labels needed; N >= 2).
        batch_size: Images per forward pass (>= 2: BatchNorm needs two samples).

    Returns:
        ``model`` itself, for chaining.

    Raises:
        SettingsError: ``batch_size`` < 2.
        DataError: fewer than 2 images.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise SettingsError(f"batch_size = {batch_size!r} must be an integer >= 2")
    if images.dim() < 2 or images.shape[0] < 2:
        raise DataError(
            f"calibrate_bn needs at least 2 images, got a tensor of shape {tuple(images.shape)}"
        )
    bns = [m for m in model.modules() if isinstance(m, _BN_TYPES) and m.track_running_stats]
    if not bns:
        return model
    saved_modes = [(m, m.training) for m in model.modules()]
    saved_momentum = [(bn, bn.momentum) for bn in bns]
    device = _device_of(model)
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over all batches
            bn.train()
        n = images.shape[0]
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size]
            if batch.shape[0] < 2:  # a last batch of one image has no variance
                break
            model(batch.to(device))
    finally:
        for bn, momentum in saved_momentum:
            bn.momentum = momentum
        for m, was in saved_modes:
            m.training = was
    return model
