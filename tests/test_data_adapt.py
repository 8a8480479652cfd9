"""search() takes a tensor pair, a Dataset or a DataLoader; only the fine-tune sample is read."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from optuna.trial import TrialState
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rankopt.data import as_split
from rankopt.errors import DataError
from rankopt.evaluators import evaluate_accuracy
from rankopt.search import search

FAST: dict[str, Any] = {"finetune_steps": 10, "finetune_samples": 200, "batch_size": 32}
RUN: dict[str, Any] = {"max_macs": 0.5, "n_trials": 3, "device": "cpu", **FAST}


class CountingDataset(Dataset[tuple[torch.Tensor, int]]):
    """A map-style dataset that counts which items were read (no ``targets``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.read: list[int] = []

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.read.append(i)
        return self.images[i], int(self.labels[i])


def _values(study: Any) -> list[Any]:
    return [t.values for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_tensor_dataset_gives_the_same_trials_as_the_tensor_pair(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    train, val = digits_data["train"], digits_data["val"]
    pair = search(trained_digits_net, train, val, **RUN)
    wrapped = search(trained_digits_net, TensorDataset(*train), TensorDataset(*val), **RUN)
    assert len(_values(pair)) == 3
    assert _values(wrapped) == _values(pair)
    assert wrapped.user_attrs["dense"] == pair.user_attrs["dense"]
    assert pair.user_attrs["dense"]["accuracy"] > 0.8


def test_dataloaders_and_plain_datasets_run_to_the_end(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    train, val = digits_data["train"], digits_data["val"]
    train_ds = CountingDataset(*train)
    val_loader = DataLoader(CountingDataset(*val), batch_size=37, shuffle=False)
    study = search(trained_digits_net, train_ds, val_loader, **RUN)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        assert 0.5 < t.user_attrs["accuracy"] <= 1.0
        assert math.isfinite(t.user_attrs["reconstruction_error"])
    # only the fine-tune sample (200 images) and the first image (input shape) were read
    assert len(train_ds.read) == FAST["finetune_samples"] + 1
    # the same dense accuracy as the tensor pair (streamed in batches of 37)
    assert study.user_attrs["dense"]["accuracy"] == pytest.approx(
        evaluate_accuracy(trained_digits_net, *val), abs=1e-12
    )
    # a DataLoader for training too: its dataset is sampled by index
    loader = DataLoader(TensorDataset(*train), batch_size=64, shuffle=True)
    study2 = search(trained_digits_net, loader, TensorDataset(*val), **RUN)
    assert len(study2.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_sample_reads_only_the_sample() -> None:
    images = torch.arange(1000, dtype=torch.float32).reshape(1000, 1, 1, 1)
    labels = torch.arange(1000) % 10
    ds = CountingDataset(images, labels)
    x, y = as_split(ds, "training").sample(64, seed=3)
    assert x.shape == (64, 1, 1, 1) and y.dtype == torch.int64
    assert len(ds.read) == 64
    px, py = as_split((images, labels), "training").sample(64, seed=3)
    assert torch.equal(x, px) and torch.equal(y, py)  # same seeded sample as the tensor pair
    assert torch.equal(y, x.flatten().long() % 10)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (np.zeros((4, 1, 8, 8)), "numpy.ndarray"),
        ([torch.zeros(4, 1, 8, 8)], "builtins.list"),
        ((np.zeros((4, 1, 8, 8)), np.zeros(4)), "pair of ndarray and ndarray"),
        ({"images": torch.zeros(4, 1, 8, 8)}, "builtins.dict"),
    ],
)
def test_other_types_are_a_data_error_naming_the_type(
    trained_digits_net: nn.Module, digits_data: dict[str, Any], data: Any, fragment: str
) -> None:
    with pytest.raises(DataError, match="training data is a") as info:
        search(trained_digits_net, data, digits_data["val"], **RUN)
    assert fragment in str(info.value)
    assert "Dataset" in str(info.value) or "tensors" in str(info.value)


def test_streamed_labels_outside_the_outputs_are_a_data_error(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    images, labels = digits_data["val"]
    bad = CountingDataset(images, labels + 5)  # labels up to 14 for 10 outputs
    with pytest.raises(DataError, match=r"validation labels range over 5\.\.14"):
        search(trained_digits_net, digits_data["train"], DataLoader(bad, batch_size=64), **RUN)


def test_items_that_are_not_tensors_name_the_fix(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    class Raw(Dataset[tuple[Any, int]]):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> tuple[Any, int]:
            return np.zeros((1, 8, 8), dtype=np.float32).tolist(), 0

    with pytest.raises(DataError, match="ToTensor"):
        search(trained_digits_net, Raw(), digits_data["val"], **RUN)
