"""Every model the tests and benchmarks use, defined once.

Importable as ``rankopt_testmodels:<callable>`` (``--model`` of the CLI, ``load_user_model``):
pytest puts ``tests/`` on ``sys.path``; subprocesses get it through ``PYTHONPATH``.
``conftest.py`` builds its fixtures from these classes.
"""

from __future__ import annotations

import os
import time
import weakref
from pathlib import Path

import torch
from torch import nn


class Block(nn.Module):
    """Residual block: 3x3 conv (stride 2, dilation on the second), BN, 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=2, dilation=2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class TinyResNet(nn.Module):
    """A small ResNet with a depthwise block, a non-square conv and a Linear head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1, bias=True)
        self.block1 = Block(8, 16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.pw = nn.Conv2d(16, 24, 1, bias=True)
        self.wide = nn.Conv2d(24, 24, (3, 5), padding=(1, 2), bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.block1(x)
        x = torch.relu(self.pw(self.dw(x)))
        x = torch.relu(self.wide(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class DigitsNet(nn.Module):
    """A small CNN for 1x8x8 digits: three 3x3 convs, a 1x1 conv and a Linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv4(torch.relu(self.conv3(x))))
        return self.fc(x.mean(dim=(2, 3)))


def digits_net(num_classes: int = 10) -> nn.Module:
    """``--model rankopt_testmodels:digits_net``: an untrained :class:`DigitsNet`."""
    return DigitsNet(num_classes)


#: Env var naming the file :class:`BlockingDigitsNet` writes when it blocks in a trial.
BLOCK_FILE_ENV = "RANKOPT_TEST_BLOCK_FILE"
_blocking_seen: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_n_blocking_seen = [0]


class BlockingDigitsNet(DigitsNet):
    """:class:`DigitsNet` whose third trial in this process blocks inside its fine-tune.

    Only when ``RANKOPT_TEST_BLOCK_FILE`` names a file: the first training-mode forward of
    the third distinct instance (each trial fine-tunes its own copy) writes the process id
    to the file and sleeps (at most 120 s, then raises), so that a test can kill the
    worker while it certainly holds a RUNNING trial whose parameters are sampled. Without
    the variable it is a plain :class:`DigitsNet` (same state_dict).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = os.environ.get(BLOCK_FILE_ENV)
        if block and self.training and self not in _blocking_seen:
            _blocking_seen.add(self)
            _n_blocking_seen[0] += 1
            if _n_blocking_seen[0] == 3:
                Path(block).write_text(str(os.getpid()))
                deadline = time.monotonic() + 120.0
                while time.monotonic() < deadline:
                    time.sleep(0.01)
                raise RuntimeError("BlockingDigitsNet: not killed within 120 s")
        return super().forward(x)


def blocking_digits_net(num_classes: int = 10) -> nn.Module:
    """``--model rankopt_testmodels:blocking_digits_net``: see :class:`BlockingDigitsNet`."""
    return BlockingDigitsNet(num_classes)


def train_digits_net_on(
    images: torch.Tensor, labels: torch.Tensor, *, steps: int = 400, seed: int = 0
) -> DigitsNet:
    """:class:`DigitsNet` trained by ``steps`` Adam steps (lr 3e-3) of batch 64.

    Seeded (initialisation with ``seed``, batches with ``seed + 1``): about 2 s on 2 cores
    for ~95 % validation accuracy on the digits.

    Args:
        images: Training images (N, 1, 8, 8).
        labels: Training labels (N,).
        steps: Adam steps.
        seed: Seed of the initialisation and the batches.

    Returns:
        The trained model (in training mode).
    """
    torch.manual_seed(seed)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def train_digits_net(path: Path, *, steps: int = 300, seed: int = 0) -> Path:
    """Train :class:`DigitsNet` on rankopt's ``digits`` training split; save its state_dict.

    Args:
        path: Where to write the state_dict (``torch.save``).
        steps: Adam steps of batch 64 (see :func:`train_digits_net_on`).
        seed: Seed of the initialisation and the batches.

    Returns:
        ``path``.
    """
    from rankopt.data import load_data

    model = train_digits_net_on(*load_data("digits").train, steps=steps, seed=seed)
    torch.save(model.state_dict(), path)
    return path


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
