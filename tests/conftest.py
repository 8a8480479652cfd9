"""Shared fixtures: tiny models and data that run in milliseconds on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

# One thread: tiny models run fastest so, and timings do not depend on other processes
# competing for the two cores (torch threads spin-wait when oversubscribed).
torch.set_num_threads(1)


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


@pytest.fixture
def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


class DigitsNet(nn.Module):
    """A small CNN for 8x8 digits: three 3x3 convs, a 1x1 conv and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv4(torch.relu(self.conv3(x))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="session")
def digits_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """sklearn's 8x8 digits, fixed split (train 1257 / val 180 / test 360)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]
    return {
        "train": (images[:1257], labels[:1257]),
        "val": (images[1257:1437], labels[1257:1437]),
        "test": (images[1437:], labels[1437:]),
    }


@pytest.fixture(scope="session")
def trained_digits_net(digits_data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """DigitsNet trained for 400 Adam steps (about 2 s on 2 cores), ~95% val accuracy."""
    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = digits_data["train"]
    gen = torch.Generator().manual_seed(1)
    for _ in range(400):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
