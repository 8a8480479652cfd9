"""``rankopt search --model resnet18 --weights w.pt --num-classes 10 --data <ImageFolder>``.

Issue 36's "Done when": a torchvision ResNet-18 the user trained (RGB weights) searched on
their own ImageFolder, here of grey 16x16 PNGs (the first conv is folded to one channel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from rankopt.cli import main


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A grey ImageFolder (3 classes x 12 images, 16x16) and RGB resnet18 weights."""
    root = tmp_path_factory.mktemp("user-model")
    rng = np.random.default_rng(0)
    for i in range(36):
        folder = root / "folder" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.normal(80 + 40 * (i % 3), 30, (16, 16)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    torch.manual_seed(0)
    weights = root / "w.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    return {"folder": str(root / "folder"), "weights": str(weights)}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKOPT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.slow  # about 40 s on 2 shared cores: the profile decomposes 512-channel layers
def test_search_a_users_resnet18_on_an_image_folder(
    capsys: pytest.CaptureFixture[str], user_files: dict[str, str], tmp_path: Path
) -> None:
    from rankopt.storage._open import run_dir_url
    from rankopt.studies import load_study

    model = ["--model", "resnet18", "--weights", user_files["weights"], "--num-classes", "10"]
    fast = ["--methods", "svd,tucker2", "--min-layer-share", "0.08", "--n-trials", "1"]
    fast += ["--finetune-steps", "2", "--finetune-samples", "16", "--batch-size", "8"]
    fast += ["--latency-runtime", "none"]  # a table of resnet18's layers takes minutes
    run_dir = str(tmp_path / "runs")
    argv = ["search", *model, "--data", user_files["folder"], *fast, "--threads", "1"]
    rc = main([*argv, "--run-dir", run_dir])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "training resnet18" not in err  # the user's weights, no built-in training
    study = load_study(run_dir_url(run_dir))
    assert study.user_attrs["input_shape"] == [1, 16, 16]
    # torchvision resnet18 (11,181,642 parameters) with conv1 folded from 3 channels to 1:
    # 64 x 2 x 7 x 7 = 6,272 fewer; at 1x16x16 the stages run at 4, 2, 1 and 1 pixels
    assert study.user_attrs["dense"]["n_params"] == 11_181_642 - 6_272
    assert study.user_attrs["dense"]["macs"] == 15_177_728
    assert len(study.user_attrs["settings"]["eligible_layers"]) == 4
    assert "recommended plan: trial 0" in out


def test_builtin_name_without_weights_on_a_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], user_files: dict[str, str], tmp_path: Path
) -> None:
    argv = ["search", "--model", "resnet18", "--data", user_files["folder"]]
    assert main([*argv, "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rankopt: error: --model resnet18 without --weights")
    assert "give --weights" in err[-1] and "fashion-mnist" in err[-1]
