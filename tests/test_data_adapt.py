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
from rankopt.searching import search
from rankopt.searching.objective._duplicates import n_distinct_finished

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
    assert n_distinct_finished(pair) == 3
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
    assert n_distinct_finished(study) == 3
    for t in trials:
        assert 0.0 <= t.user_attrs["accuracy"] <= 1.0
        assert math.isfinite(t.user_attrs["reconstruction_error"])
    # labels read in step with the images: the seed trial's plan keeps most of the accuracy
    # (a later trial may be a random draw, which can be poor)
    seeded = [t for t in trials if "seed" in t.user_attrs]
    assert seeded and all(t.user_attrs["accuracy"] > 0.5 for t in seeded)
    # only the fine-tune sample (200 images) and the first image (input shape) were read
    assert len(train_ds.read) == FAST["finetune_samples"] + 1
    # the same dense accuracy as the tensor pair (streamed in batches of 37)
    assert study.user_attrs["dense"]["accuracy"] == pytest.approx(
        evaluate_accuracy(trained_digits_net, *val), abs=1e-12
    )
    # a DataLoader for training too: its dataset is sampled by index
    loader = DataLoader(TensorDataset(*train), batch_size=64, shuffle=True)
    study2 = search(trained_digits_net, loader, TensorDataset(*val), **RUN)
    assert n_distinct_finished(study2) == 3


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


def _write_folder(root: Any, n_per_class: int, size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
            arr[..., c] += 150  # class c is bright in channel c
            Image.fromarray(arr, mode="RGB").save(root / cls / f"{i}.png")


def test_image_folder_streams_with_transforms(tmp_path: Any) -> None:
    from rankopt.data import load_data

    _write_folder(tmp_path / "imgs", 20)
    d = load_data(tmp_path / "imgs", stream=True, image_size=8, mean=[0.5], std=[0.25])
    assert d.input_shape == (3, 8, 8) and d.num_classes == 3
    assert d.sizes() == {"train": 42, "val": 6, "test": 12}
    assert isinstance(d.train, torch.utils.data.Dataset)
    x, label = d.train[0]
    assert label in (0, 1, 2)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert int(x.mean(dim=(1, 2)).argmax()) == label  # class c is bright in channel c
    # normalised: (pixel - 0.5) / 0.25, pixels of the bright channel ~ (150..230)/255
    assert float(x.max()) > 0.2 and float(x.min()) < -1.0
    # the same images as the in-memory loader, normalised (the split is the same too)
    mem = load_data(tmp_path / "imgs")
    assert torch.equal(torch.tensor(d.train.targets), mem.train[1])
    with pytest.raises(DataError, match="--std has 2 values for 3-channel images"):
        load_data(tmp_path / "imgs", stream=True, std=[0.2, 0.3])


def test_cli_search_on_an_image_folder(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    from rankopt.cli import main

    _write_folder(tmp_path / "imgs", 30)
    argv = ["search", "--model", "rankopt_testmodels:small_net", "--data", str(tmp_path / "imgs")]
    argv += ["--mean", "0.4", "--std", "0.3", "--n-trials", "2", "--finetune-steps", "4"]
    argv += ["--finetune-samples", "32", "--batch-size", "16", "--threads", "1"]
    argv += ["--run-dir", str(tmp_path / "run"), "--device", "cpu", "--study-name", "s"]
    argv += ["--rank-multiple", "1"]  # small_net's layers are below ONNX Runtime's block (16)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/run/study.db")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert n_distinct_finished(study) == 2
    assert all(math.isfinite(t.user_attrs["accuracy"]) for t in done)
    assert study.user_attrs["input_shape"] == [3, 12, 12]
