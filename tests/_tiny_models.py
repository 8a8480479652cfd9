"""Tiny models for tests that run ``rankopt`` in subprocesses (``--model _tiny_models:...``).

Importable as a plain module when ``tests/`` is on ``PYTHONPATH``; the models are small enough
that one search trial with a 10-step proxy fine-tune takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


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
    """``--model _tiny_models:digits_net``: an untrained :class:`DigitsNet`."""
    return DigitsNet(num_classes)


def train_digits_net(path: Path, *, steps: int = 300, seed: int = 0) -> Path:
    """Train :class:`DigitsNet` on rankopt's ``digits`` training split; save its state_dict.

    About 2 s on 2 cores for ~95 % validation accuracy.

    Args:
        path: Where to write the state_dict (``torch.save``).
        steps: Adam steps of batch 64.
        seed: Seed of the initialisation and the batches.

    Returns:
        ``path``.
    """
    from rankopt.data import load_data

    data = load_data("digits")
    x, y = data.train
    torch.manual_seed(seed)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), path)
    return path
