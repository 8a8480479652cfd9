"""Shared fixtures: tiny models (``rankopt_testmodels``) and data, milliseconds on the CPU."""

from __future__ import annotations

import pytest
import torch
from rankopt_testmodels import TinyResNet, train_digits_net_on
from torch import nn

# One thread: tiny models run fastest so, and timings do not depend on other processes
# competing for the two cores (torch threads spin-wait when oversubscribed).
torch.set_num_threads(1)


@pytest.fixture
def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet().eval()


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
    return train_digits_net_on(*digits_data["train"], steps=400, seed=0).eval()
