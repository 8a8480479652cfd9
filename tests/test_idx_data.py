"""Fashion-MNIST / MNIST-format idx folders: the loader, its split and its bad inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from rankopt.data import load_data
from rankopt.data._idx import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    IDX_FILES,
    IdxImages,
    is_idx_dir,
    read_idx,
)
from rankopt.errors import DataError

REAL = FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"


def _idx_bytes(values: np.ndarray) -> bytes:
    header = bytes((0, 0, 0x08, values.ndim)) + b"".join(
        int(n).to_bytes(4, "big") for n in values.shape
    )
    return header + values.astype(np.uint8).tobytes()


def _write(path: Path, values: np.ndarray, *, gz: bool = True) -> Path:
    blob = _idx_bytes(values)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


def _fixture(root: Path, n_train: int = 400, n_test: int = 50, size: int = 6) -> dict[str, Path]:
    """Four idx files; pixel (0, 0) of every image holds its label times 20 (so the
    images of one class are recognisable after the split)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 255, size=(n, size, size))
        images[:, 0, 0] = labels * 20
        gz = part == "train"  # both forms: gzip and plain
        paths[f"{part}_images"] = _write(root / IDX_FILES[f"{part}_images"], images, gz=gz)
        paths[f"{part}_labels"] = _write(root / IDX_FILES[f"{part}_labels"], labels)
    return paths


def test_read_idx_roundtrip(tmp_path: Path) -> None:
    values = np.arange(24).reshape(2, 3, 4)
    for gz in (True, False):
        got = read_idx(_write(tmp_path / f"a{gz}", values, gz=gz), n_dims=3)
        assert got.shape == (2, 3, 4) and got.dtype == np.uint8
        assert np.array_equal(got, values)


def test_idx_folder_split_and_stream(tmp_path: Path) -> None:
    _fixture(tmp_path / "fm")
    assert is_idx_dir(tmp_path / "fm") and not is_idx_dir(tmp_path)
    d = load_data(tmp_path / "fm")
    assert d.input_shape == (1, 6, 6) and d.num_classes == 10
    # 400 train images: 40 validation (a tenth, stratified), the t10k file is the test split
    assert d.sizes() == {"train": 360, "val": 40, "test": 50}
    assert torch.bincount(d.val[1], minlength=10).tolist() == [4] * 10
    # scaled to [0, 1] (no mean / std given): the label pixel is label * 20 / 255
    for images, labels in (d.train, d.val, d.test):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert torch.allclose(images[:, 0, 0, 0], labels.float() * 20 / 255)
    # train and val partition the train file
    pix = torch.cat([d.train[0], d.val[0]]).reshape(400, -1)
    assert len({tuple(r.tolist()) for r in pix}) == 400
    # streamed: the same items, normalised per batch, uint8 kept in memory
    s = load_data(tmp_path / "fm", stream=True, mean=[0.5], std=[0.25])
    assert isinstance(s.train, IdxImages) and len(s.train) == 360
    image, label = s.val[3]
    assert image.shape == (1, 6, 6) and int(label) == int(d.val[1][3])
    assert torch.allclose(image, (d.val[0][3] - 0.5) / 0.25)
    batch = s.test.__getitems__([0, 7])
    assert torch.allclose(batch[1][0], (d.test[0][7] - 0.5) / 0.25)
    loader = torch.utils.data.DataLoader(s.train, batch_size=64)
    x, y = next(iter(loader))
    assert x.shape == (64, 1, 6, 6) and torch.equal(y, d.train[1][:64])


def test_idx_folder_bad_mean_std(tmp_path: Path) -> None:
    _fixture(tmp_path)
    with pytest.raises(DataError, match="1 channel"):
        load_data(tmp_path, mean=[0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="must be > 0"):
        load_data(tmp_path, std=[0.0])


def test_fashion_mnist_missing_package_names_apt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr("rankopt.data._idx.FASHION_MNIST_DIR", tmp_path / "none")
    with pytest.raises(DataError, match=r"apt-get install -y dataset-fashion-mnist") as info:
        load_data("fashion-mnist")
    assert "train-images-idx3-ubyte.gz" in str(info.value) and str(tmp_path) in str(info.value)


def test_fashion_mnist_from_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fixture(tmp_path, n_train=100)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    d = load_data("fashion-mnist")
    assert d.name == "fashion-mnist" and d.class_names[9] == "Ankle boot"
    assert d.sizes() == {"train": 90, "val": 10, "test": 50}


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("truncate", r"train-images-idx3-ubyte.gz' is truncated: 1400 value bytes, its header"),
        ("magic", r"has magic number 0x00000903; an idx file .* starts with 0x00000803"),
        ("counts", r"holds 400 images but train-labels-idx1-ubyte holds 399 labels"),
        ("not_gzip", r"cannot be read"),
        ("header", r"shorter than its 16-byte header"),
        ("long", r"longer than its header says"),
        ("label", r"holds label 12; labels must be class indices below 10"),
    ],
)
def test_idx_bad_files(tmp_path: Path, damage: str, match: str) -> None:
    paths = _fixture(tmp_path)
    images = paths["train_images"]
    blob = gzip.decompress(images.read_bytes())
    if damage == "truncate":
        images.write_bytes(gzip.compress(blob[: 16 + 1400]))
    elif damage == "magic":
        images.write_bytes(gzip.compress(blob[:2] + b"\x09" + blob[3:]))
    elif damage == "counts":
        _write(tmp_path / IDX_FILES["train_labels"], np.arange(399) % 10)
    elif damage == "not_gzip":
        images.write_bytes(blob)
    elif damage == "header":
        images.write_bytes(gzip.compress(blob[:10]))
    elif damage == "long":
        images.write_bytes(gzip.compress(blob + b"\x00"))
    elif damage == "label":
        labels = np.arange(50) % 10
        labels[3] = 12
        _write(tmp_path / IDX_FILES["test_labels"], labels)
    with pytest.raises(DataError, match=match):
        load_data(tmp_path)


def test_cli_bad_idx_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rankopt.cli import main

    paths = _fixture(tmp_path)
    blob = gzip.decompress(paths["train_images"].read_bytes())
    paths["train_images"].write_bytes(gzip.compress(blob[:100]))
    code = main(["profile", "--data", str(tmp_path), "--model", "resnet8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("rankopt: error:") and "truncated" in err[0]


@pytest.mark.skipif(not REAL.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist() -> None:
    d = load_data("fashion-mnist")
    assert d.sizes() == {"train": 55000, "val": 5000, "test": 10000}
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert torch.bincount(d.val[1], minlength=10).tolist() == [500] * 10
    assert torch.bincount(d.test[1], minlength=10).tolist() == [1000] * 10
    train = torch.cat([d.train[0], d.val[0]])
    assert abs(float(train.mean())) < 0.01 and abs(float(train.std()) - 1) < 0.01
    s = load_data("fashion-mnist", stream=True)
    assert torch.equal(s.val[17][0], d.val[0][17]) and int(s.val[17][1]) == int(d.val[1][17])
