"""full_finetune and ``rankopt finetune`` stream training batches (issue 16, item 3)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rankopt.data import Split
from rankopt.errors import DataError
from rankopt.evaluators import evaluate_accuracy, full_finetune


def _damaged(model: nn.Module, scale: float = 0.6) -> nn.Module:
    """A copy of ``model`` with seeded noise added to every weight (accuracy drops)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=gen))
    return out


def test_full_finetune_streams_a_dataloader(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    (x, y), val = digits_data["train"], digits_data["val"]
    student = _damaged(trained_digits_net)
    before = evaluate_accuracy(student, *val)
    seen: list[int] = []

    class Recording(TensorDataset):
        def __getitem__(self, i: int) -> Any:
            seen.append(int(i))
            return super().__getitem__(i)

    loader = DataLoader(
        Recording(x, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    tuned = full_finetune(student, trained_digits_net, loader, epochs=2, lr=0.01)
    after = evaluate_accuracy(tuned, *val)
    assert math.isfinite(after) and after > before + 0.05 and after > 0.8
    assert len(seen) == 2 * x.shape[0]  # every image read once per epoch, none kept around


def test_full_finetune_streamed_rejects_teacher_logits_and_unsized_batches(
    trained_digits_net: nn.Module, digits_data: dict[str, Any]
) -> None:
    x, y = digits_data["train"]
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    with pytest.raises(DataError, match="cannot be row-aligned with streamed batches"):
        full_finetune(copy.deepcopy(trained_digits_net), torch.zeros(len(y), 10), loader, epochs=1)
    unsized = (batch for batch in loader)
    with pytest.raises(DataError, match="generator have no len"):
        full_finetune(copy.deepcopy(trained_digits_net), None, unsized, epochs=1)


def test_split_training_batches_are_seeded_and_cover_the_split(
    digits_data: dict[str, Any],
) -> None:
    x, y = digits_data["train"]
    split = Split(TensorDataset(x, y), "training")
    first = [b[1] for b in split.training_batches(100, seed=3)]
    again = [b[1] for b in split.training_batches(100, seed=3)]
    assert len(first) == math.ceil(x.shape[0] / 100) == len(split.training_batches(100, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.equal(torch.cat(first).sort().values, y.sort().values)
    assert not torch.equal(torch.cat(first), y)  # shuffled


def _write_folder(root: Path, n_per_class: int, size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
            arr[..., c] += 150  # class c is bright in channel c
            Image.fromarray(arr, mode="RGB").save(root / cls / f"{i}.png")


def test_cli_finetune_on_an_image_folder_never_loads_the_training_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from optuna.trial import TrialState

    from rankopt.cli import main
    from rankopt.plan import CompressionPlan

    _write_folder(tmp_path / "imgs", 30)  # 90 images: 63 train, 9 val, 18 test
    common = ["--model", "rankopt_testmodels:small_net", "--data", str(tmp_path / "imgs")]
    common += ["--threads", "1", "--device", "cpu"]
    argv = ["search", *common, "--n-trials", "1", "--finetune-steps", "2"]
    argv += ["--finetune-samples", "16", "--run-dir", str(tmp_path / "run"), "--study-name", "s"]
    argv += ["--rank-multiple", "1"]  # small_net's layers are below ONNX Runtime's block (16)
    assert main(argv) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/run/study.db")
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    plan = CompressionPlan.from_dict(trial.user_attrs["plan"]).save(tmp_path / "plan.json")
    capsys.readouterr()

    sampled: list[int] = []
    streamed: list[int] = []
    real_sample, real_batches = Split.sample, Split.training_batches

    def sample(self: Split, n: int, seed: int) -> Any:
        sampled.append(n)
        if self.name == "training" and n >= len(self):
            raise AssertionError(f"the whole training split ({n} images) was loaded")
        return real_sample(self, n, seed)

    def training_batches(self: Split, batch_size: int, seed: int) -> Any:
        streamed.append(batch_size)
        return real_batches(self, batch_size, seed)

    monkeypatch.setattr(Split, "sample", sample)
    monkeypatch.setattr(Split, "training_batches", training_batches)
    rc = main(["finetune", str(plan), *common, "--epochs", "2", "--no-calibrate"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert streamed == [64] and sampled == []
    assert "finetune: epoch 2/2 loss" in err
    row = re.search(r"^compressed\s+([0-9.]+)", out, flags=re.MULTILINE)
    assert row is not None, out
    accuracy = float(row.group(1))
    assert 0.0 <= accuracy <= 1.0 and accuracy * 18 == pytest.approx(round(accuracy * 18), abs=1e-3)
