"""User models for the command-line tests, importable as ``rankopt_testmodels:<callable>``.

pytest puts ``tests/`` on ``sys.path``; subprocesses get it through ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import time
import weakref
from pathlib import Path

import torch
from torch import nn


class SmallNet(nn.Module):
    """A small CNN for 1x8x8 digits: two 3x3 convs, a 1x1 conv and a Linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def small_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The :class:`SmallNet` (accepts ``num_classes`` / ``in_channels``)."""
    torch.manual_seed(0)
    return SmallNet(num_classes=num_classes, in_channels=in_channels)


#: Env var naming the file :class:`InterruptibleSmallNet` writes when it blocks in a trial.
READY_FILE_ENV = "RANKOPT_TEST_READY_FILE"
_trained_instances: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_n_trained_instances = [0]  # ever seen: the WeakSet forgets the instances of past trials


class InterruptibleSmallNet(SmallNet):
    """:class:`SmallNet` whose second trial blocks in its fine-tune until Ctrl-C (SIGINT).

    Only when the environment variable ``RANKOPT_TEST_READY_FILE`` names a file: each trial
    fine-tunes its own copy of the model, so the first training-mode forward of the second
    distinct instance in this process is inside the second trial's fine-tune. That forward
    writes the file (the signal to the test that a trial is really in progress) and sleeps
    until the KeyboardInterrupt of a SIGINT arrives (at most 120 s, then it raises). Without
    the variable it is a plain :class:`SmallNet` (same state_dict).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ready = os.environ.get(READY_FILE_ENV)
        if ready and self.training and self not in _trained_instances:
            _trained_instances.add(self)
            _n_trained_instances[0] += 1
            if _n_trained_instances[0] == 2:
                Path(ready).write_text(str(os.getpid()))
                deadline = time.monotonic() + 120.0
                while time.monotonic() < deadline:
                    time.sleep(0.01)  # SIGINT raises KeyboardInterrupt here
                raise RuntimeError("InterruptibleSmallNet: no SIGINT within 120 s")
        return super().forward(x)


def interruptible_small_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The :class:`InterruptibleSmallNet` (same weights as :func:`small_net`)."""
    torch.manual_seed(0)
    return InterruptibleSmallNet(num_classes=num_classes, in_channels=in_channels)


def five_class_net() -> nn.Module:
    """A :class:`SmallNet` with a fixed 5-class head (ignores the data's class count)."""
    torch.manual_seed(0)
    return SmallNet(num_classes=5)


class FlatNet(nn.Module):
    """Flattens a 1x8x8 image into a Linear layer: any other input size cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def flat_net() -> nn.Module:
    """The :class:`FlatNet` (only 8x8 inputs)."""
    torch.manual_seed(0)
    return FlatNet()


class DepthwiseOnly(nn.Module):
    """Only layers no method can decompose: a depthwise conv and a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(1, 8, 3, padding=1, groups=1, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 10, 1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grouped(torch.relu(self.dw(torch.relu(self.expand(x))))).mean(dim=(2, 3))


def depthwise_only() -> nn.Module:
    """:class:`DepthwiseOnly` with its 1-input-channel stem shared so it is ineligible too."""
    torch.manual_seed(0)
    model = DepthwiseOnly()
    model.stem_alias = model.expand  # shared by two names: ineligible
    return model


class Scale(nn.Module):
    """A custom module with its own parameter (per-channel scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class MixedNet(nn.Module):
    """Every kind of unsupported layer next to ordinary decomposable ones.

    Unsupported: ``row_conv`` (Conv1d), ``up`` (ConvTranspose2d), ``grouped`` (Conv2d with
    groups=2), ``dw`` (depthwise Conv2d), ``shared`` (one Conv2d used under two names),
    ``scale`` (custom module with a parameter). Decomposable: ``conv1``, ``conv2``,
    ``conv3``, ``fc``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.row_conv = nn.Conv1d(24, 24, 3, padding=1)
        self.up = nn.ConvTranspose2d(24, 16, 2, stride=2)
        self.scale = Scale(16)
        self.shared = nn.Conv2d(16, 16, 1)
        self.shared_again = self.shared
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1, stride=2)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.grouped(torch.relu(self.dw(x))))
        x = torch.relu(self.conv2(x))
        n, c, h, w = x.shape
        x = self.row_conv(x.reshape(n, c, h * w)).reshape(n, c, h, w)
        x = self.scale(torch.relu(self.up(x)))
        x = torch.relu(self.shared(x))
        x = torch.relu(self.shared_again(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def mixed_net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The :class:`MixedNet`."""
    torch.manual_seed(0)
    return MixedNet(num_classes=num_classes, in_channels=in_channels)


#: Reasons ``profile`` must give for the layers of :class:`MixedNet` it leaves dense.
MIXED_INELIGIBLE = {
    "dw": "depthwise",
    "grouped": "group",
    "row_conv": "Conv1d",
    "up": "ConvTranspose2d",
    "scale": "Scale",
    "shared": "shared",
}
