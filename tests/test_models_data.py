"""Built-in model zoo, user models, and data loading (rankopt.models, rankopt.data)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rankopt.data import BUILTIN_DATA, DataSplits, list_data, load_data, split_indices
from rankopt.errors import DataError, ModelError, RankoptError, UnknownNameError
from rankopt.models import create_model, list_models, load_user_model, register_model

BUILTIN = ["mobilenet_small", "resnet18", "resnet20", "resnet8", "vgg_small"]


# =============================================================================== registry
def test_list_models_has_the_zoo() -> None:
    assert set(BUILTIN) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        create_model("resnet21")
    msg = str(info.value)
    assert "resnet21" in msg and all(name in msg for name in BUILTIN)
    assert isinstance(info.value, KeyError) and isinstance(info.value, RankoptError)


def test_duplicate_registration_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet8")(lambda *, in_channels, num_classes: nn.Linear(1, 1))


@pytest.mark.parametrize("bad", [{"in_channels": 0}, {"num_classes": 1}, {"in_channels": 1.5}])
def test_create_model_rejects_bad_sizes(bad: dict[str, object]) -> None:
    with pytest.raises(ModelError, match=next(iter(bad))):
        create_model("resnet8", **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("size", [28, 8])
def test_models_forward_and_deepcopy(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, num_classes=7).eval()
    x = torch.randn(3, 1, size, size)
    with torch.no_grad():
        out = model(x)
        twin = copy.deepcopy(model)
        assert torch.equal(twin(x), out)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    # no shared modules or parameters: every module / parameter appears once
    assert len(list(model.named_modules(remove_duplicate=False))) == len(list(model.modules()))
    assert len(list(model.named_parameters(remove_duplicate=False))) == len(
        list(model.parameters())
    )
    # only standard layers, and no in-place activations
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            assert not m.inplace


def test_models_accept_rgb() -> None:
    model = create_model("resnet8", in_channels=3, num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "n_params", "n_conv"),
    [
        ("resnet8", 77_754, 9),
        ("resnet20", 272_186, 21),
        ("vgg_small", 140_458, 5),
        ("mobilenet_small", 21_018, 16),
    ],
)
def test_model_sizes(name: str, n_params: int, n_conv: int) -> None:
    model = create_model(name, in_channels=1, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == n_conv


def test_resnet_structure() -> None:
    r20 = create_model("resnet20")
    shortcuts = [m for n, m in r20.named_modules() if n.endswith("shortcut.0")]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in shortcuts] == [
        ((1, 1), (2, 2), 32),
        ((1, 1), (2, 2), 64),
    ]
    widths = sorted({m.out_channels for m in r20.modules() if isinstance(m, nn.Conv2d)})
    assert widths == [16, 32, 64]


def test_mobilenet_has_depthwise_convs() -> None:
    model = create_model("mobilenet_small")
    dw = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    ]
    assert len(dw) == 5 and all(m.kernel_size == (3, 3) for m in dw)
    chans = {m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert min(chans) == 16 and 64 in chans


# =============================================================================== user models
def test_load_user_model_torchvision_resnet18(tmp_path: Path) -> None:
    model = load_user_model("resnet18", weights=None, num_classes=10, in_channels=1)
    assert not model.training
    assert model.conv1.in_channels == 1  # type: ignore[union-attr]
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 10)
    path = tmp_path / "r18.pt"
    torch.save(model.state_dict(), path)
    again = load_user_model("resnet18", weights=str(path), num_classes=10, in_channels=1)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


@pytest.mark.parametrize(("file_channels", "data_channels"), [(3, 1), (1, 3)])
def test_load_user_model_folds_first_conv_to_the_data(
    tmp_path: Path, file_channels: int, data_channels: int
) -> None:
    torch.manual_seed(0)
    trained = load_user_model("resnet18", num_classes=10, in_channels=file_channels)
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    model = load_user_model("resnet18", weights=path, num_classes=10, in_channels=data_channels)
    assert model.conv1.in_channels == data_channels  # type: ignore[union-attr]
    x = torch.randn(2, data_channels, 32, 32)
    # 3 -> 1: the grey image repeated into RGB; 1 -> 3: the mean of the colour channels
    seen = x.repeat(1, 3, 1, 1) if data_channels == 1 else x.mean(dim=1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(seen), rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match=f"takes {file_channels} input channels and the data"):
        load_user_model("resnet18", weights=path, num_classes=10, in_channels=4)


def test_load_user_model_weight_errors_name_path_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="does not exist") as info:
        load_user_model("resnet18", weights=str(missing), num_classes=10, in_channels=1)
    assert str(missing) in str(info.value)

    path = tmp_path / "r18_10.pt"
    torch.save(
        load_user_model("resnet18", weights=None, num_classes=10, in_channels=1).state_dict(), path
    )
    with pytest.raises(ModelError) as info:
        load_user_model("resnet18", weights=str(path), num_classes=5, in_channels=1)
    msg = str(info.value)
    assert str(path) in msg and "fc.weight" in msg and "file (10, 512) vs model (5, 512)" in msg

    partial = tmp_path / "partial.pt"
    state = torch.load(path, weights_only=True)
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(ModelError, match=r"missing keys \(1\) fc\.bias.*unexpected keys \(1\)"):
        load_user_model("resnet18", weights=str(partial), num_classes=10, in_channels=1)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file" * 10)
    with pytest.raises(ModelError, match="cannot be read") as info:
        load_user_model("resnet18", weights=str(garbage), num_classes=10, in_channels=1)
    assert str(garbage) in str(info.value)


def test_load_user_model_callable_and_pickled_module(tmp_path: Path) -> None:
    model = load_user_model(
        "rankopt.models._zoo:VGGSmall", weights=None, num_classes=4, in_channels=1
    )
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 4)
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)  # a whole pickled module
    again = load_user_model(
        "rankopt.models._zoo:VGGSmall", weights=str(whole), num_classes=4, in_channels=1
    )
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    # a checkpoint dict with a DataParallel prefix
    ckpt = tmp_path / "ckpt.pt"
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, ckpt
    )
    third = load_user_model(
        "rankopt.models._zoo:VGGSmall", weights=str(ckpt), num_classes=4, in_channels=1
    )
    with torch.no_grad():
        assert torch.equal(third(x), model(x))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_such_pkg_xyz.mod:f", "cannot import module"),
        ("rankopt.models._zoo:nope", "has no attribute"),
        ("rankopt.models._zoo:__all__", "not callable"),
        ("not_an_architecture", "not a torchvision architecture"),
    ],
)
def test_load_user_model_bad_spec(spec: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        load_user_model(spec, weights=None, num_classes=10, in_channels=1)


def test_load_user_model_builtin_name() -> None:
    model = load_user_model("resnet8", weights=None, num_classes=3, in_channels=1)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 3)


# =============================================================================== built-in data
def _row_hashes(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in images}


@pytest.mark.parametrize(
    ("name", "sizes", "shape", "per_class"),
    [
        ("mnist5k", (3500, 500, 1000), (1, 28, 28), (350, 50, 100)),
        ("digits", (1257, 180, 360), (1, 8, 8), None),
    ],
)
def test_builtin_data(
    name: str,
    sizes: tuple[int, int, int],
    shape: tuple[int, int, int],
    per_class: tuple[int, int, int] | None,
) -> None:
    d = load_data(name)
    assert isinstance(d, DataSplits) and d.name == name
    assert d.num_classes == 10 and d.input_shape == shape
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == sizes
    assert d.sizes() == dict(zip(("train", "val", "test"), sizes, strict=True))
    for images, labels in (d.train, d.val, d.test):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape[1:] == shape
    # disjoint splits (no image twice: the sources hold no duplicate images)
    h_train, h_val, h_test = (_row_hashes(p[0]) for p in (d.train, d.val, d.test))
    assert len(h_train) + len(h_val) + len(h_test) == sum(sizes)
    assert not (h_train & h_val) and not (h_train & h_test) and not (h_val & h_test)
    # class balance (stratified)
    for (_, labels), n in zip((d.train, d.val, d.test), sizes, strict=True):
        counts = torch.bincount(labels, minlength=10)
        if per_class is not None:
            assert counts.tolist() == [n // 10] * 10
        else:
            assert int(counts.max() - counts.min()) <= max(3, n // 60)
    if per_class is not None:
        assert sizes == tuple(10 * c for c in per_class)
    # fixed normalisation: roughly zero mean, unit std
    all_images = torch.cat([d.train[0], d.val[0], d.test[0]])
    assert abs(float(all_images.mean())) < 0.02 and abs(float(all_images.std()) - 1) < 0.02
    # deterministic, and fresh tensors every call
    again = load_data(name)
    for a, b in zip((d.train, d.val, d.test), (again.train, again.val, again.test), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    d.train[0].zero_()
    assert not torch.equal(load_data(name).train[0], d.train[0])


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_builtin_splits_are_shuffled_and_every_prefix_is_class_balanced(name: str) -> None:
    d = load_data(name)
    for (_, labels), n in zip((d.train, d.val, d.test), (200, 50, 100), strict=True):
        counts = torch.bincount(labels[:n], minlength=10)
        assert int(counts.min()) >= 1, (name, counts.tolist())  # all 10 classes in train[:200]
        assert int(counts.max() - counts.min()) <= 2, (name, counts.tolist())
        for m in (10, 37, len(labels)):  # any prefix: each class in its share, give or take 1
            share = torch.bincount(labels, minlength=10).double() * m / len(labels)
            assert float((torch.bincount(labels[:m], minlength=10) - share).abs().max()) <= 1.5
        assert not bool((labels[1:] >= labels[:-1]).all())  # not sorted by class
    # disjoint, together every image once; the same order on every load
    spec = BUILTIN_DATA[name]
    from rankopt.data._builtin import _arrays

    _, all_labels, parts = _arrays(name)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(all_labels)))
    assert [len(p) for p in parts[1:]] == [spec.n_val, spec.n_test]
    _, _, again = _arrays.__wrapped__(name)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_split_indices_partition() -> None:
    labels = np.repeat(np.arange(5), 20)
    tr, va, te = split_indices(labels, n_val=10, n_test=20, seed=3)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    assert np.bincount(labels[te]).tolist() == [4] * 5
    _, va2, te2 = split_indices(labels, n_val=10, n_test=20, seed=3)
    assert np.array_equal(te, te2) and np.array_equal(va, va2)
    _, _, te3 = split_indices(labels, n_val=10, n_test=20, seed=4)
    assert not np.array_equal(te, te3)
    # class-sorted labels give class-interleaved splits: every 5 in a row hold 5 classes
    for part in (tr, va, te):
        assert all(len(set(labels[part[i : i + 5]].tolist())) == 5 for i in range(0, len(part), 5))


def test_list_data_and_unknown_name() -> None:
    assert list_data() == ["digits", "fashion-mnist", "mnist5k"]
    with pytest.raises(UnknownNameError, match="digits, fashion-mnist, mnist5k"):
        load_data("cifar10")


# =============================================================================== user data
def test_load_pt_tuple_and_dict(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(50, 8, 8, generator=g)  # (N, H, W): a channel axis is added
    labels = torch.arange(50) % 3
    p1 = tmp_path / "set.pt"
    torch.save((images, labels), p1)
    d = load_data(str(p1))
    assert d.input_shape == (1, 8, 8) and d.num_classes == 3
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (35, 5, 10)
    assert _row_hashes(d.train[0]).isdisjoint(_row_hashes(d.test[0]))
    assert torch.equal(load_data(p1).test[0], d.test[0])  # deterministic
    assert not torch.equal(load_data(p1, seed=1).test[1], d.test[1]) or not torch.equal(
        load_data(p1, seed=1).test[0], d.test[0]
    )
    p2 = tmp_path / "set2.pt"
    torch.save({"images": (images * 255).to(torch.uint8).unsqueeze(1), "labels": labels}, p2)
    d2 = load_data(p2)
    assert d2.train[0].dtype == torch.float32 and float(d2.train[0].max()) <= 1.0


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ((torch.rand(20, 4), torch.arange(20) % 2), r"shape \(N, C, H, W\)"),
        ((torch.rand(20, 1, 4, 4), (torch.arange(20) % 2).float()), "integer"),
        ((torch.rand(20, 1, 4, 4), torch.arange(19) % 2), r"shape \(N,\)"),
        ((torch.rand(20, 1, 4, 4), torch.zeros(20, dtype=torch.long)), "at least 2 classes"),
        ((torch.rand(5, 1, 4, 4), torch.arange(5) % 2), "at least 10"),
        ((torch.rand(20, 1, 4, 4), torch.arange(20) % 2 - 1), ">= 0"),
        ((torch.full((20, 1, 4, 4), float("nan")), torch.arange(20) % 2), "NaN"),
        ({"x": torch.rand(20, 1, 4, 4)}, "'images'"),
        ([torch.rand(2)], "expected a tuple"),
    ],
)
def test_load_pt_errors(tmp_path: Path, payload: object, match: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(DataError, match=match) as info:
        load_data(str(path))
    assert str(path) in str(info.value)


def test_load_data_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00garbage" * 8)
    with pytest.raises(DataError, match="cannot be read") as info:
        load_data(str(garbage))
    assert str(garbage) in str(info.value)
    txt = tmp_path / "data.txt"
    txt.write_text("1,2,3")
    with pytest.raises(DataError, match="suffix"):
        load_data(str(txt))


def _write_folder(root: Path, mode: str, n_per_class: int = 10, size: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(arr, mode=mode).save(root / cls / f"{i}.png")


def test_load_image_folder(tmp_path: Path) -> None:
    gray = tmp_path / "gray"
    _write_folder(gray, "L")
    d = load_data(str(gray))
    assert d.input_shape == (1, 6, 6) and d.num_classes == 2
    assert d.class_names == ("cat", "dog")
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (14, 2, 4)
    assert float(d.train[0].min()) >= 0.0 and float(d.train[0].max()) <= 1.0
    rgb = tmp_path / "rgb"
    _write_folder(rgb, "RGB")
    d3 = load_data(rgb, image_size=(4, 5))
    assert d3.input_shape == (3, 4, 5)


def test_load_image_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="ImageFolder"):
        load_data(str(empty))
    broken = tmp_path / "broken"
    _write_folder(broken, "L")
    bad = broken / "dog" / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot be read") as info:
        load_data(str(broken))
    assert "bad.png" in str(info.value)
