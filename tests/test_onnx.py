"""ONNX export: onnxruntime's outputs equal PyTorch's within 1e-4 for every method."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from rankopt.errors import RankoptError
from rankopt.evaluators import profile
from rankopt.latency._onnx import ONNX_REL_TOLERANCE, check_onnx, export_onnx, save_model
from rankopt.models import create_model
from rankopt.plan import CompressionPlan, LayerPlan, apply_plan, model_fingerprint

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (rankopt[onnx])")
pytest.importorskip("onnx", reason="onnx is not installed (rankopt[onnx])")

SHAPE = (1, 28, 28)
CONV_METHODS = ("tucker2", "cp", "spatial_svd", "gkpd", "svd")
RANKS = {"tucker2": {"r_in": 4, "r_out": 6}, "cp": {"r": 6}, "spatial_svd": {"r": 5}}


def _every_method_plan(model: nn.Module) -> CompressionPlan:
    """A plan on a built-in model using every conv method, channel SVD and linear SVD."""
    prof = profile(model, SHAPE)
    layers, k = [], 0
    for info in prof.layers:
        if not info.eligible:
            continue
        if info.kind == "linear":
            method = "linear_svd"
        elif tuple(info.kernel_size) == (1, 1):
            method = "svd"
        elif info.weight_shape[1] <= 3:
            method = "keep"  # the input conv stays dense, as the VBMF seed keeps it
        else:
            method = CONV_METHODS[k % len(CONV_METHODS)]
            k += 1
        ranks = {} if method == "keep" else RANKS.get(method, {"r": 3})
        layers.append(LayerPlan(info.name, method, ranks, {}, tuple(info.weight_shape)))
    return CompressionPlan(
        model_name="resnet8",
        fingerprint=model_fingerprint(model),
        input_shape=SHAPE,
        layers=tuple(layers),
    )


@pytest.fixture(scope="module")
def compressed() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet8", in_channels=1, num_classes=10)
    # non-trivial BatchNorm statistics, so the exported BN folding is checked too
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *SHAPE))
    model.eval()
    plan = _every_method_plan(model)
    assert {lp.method for lp in plan.layers} >= {*CONV_METHODS, "linear_svd"}
    return apply_plan(model, plan).eval()


def test_export_of_every_method_matches_pytorch(compressed: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    checked = export_onnx(compressed, SHAPE, path)
    assert checked is not None and path.is_file()
    assert checked.rel_diff <= ONNX_REL_TOLERANCE
    assert checked.max_abs_output > 1e-3  # the logits are not all zero
    print(checked.describe())
    # Independent of export_onnx's own check: another batch size (dynamic batch axis)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(3))
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        expected = compressed(x)
    assert got.shape == (5, 10)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_check_fails_when_outputs_differ(compressed: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(compressed, SHAPE, path, check=False)
    other = create_model("resnet8", in_channels=1, num_classes=10).eval()
    other = apply_plan(other, _every_method_plan(other)).eval()
    with pytest.raises(RankoptError, match=r"differ from PyTorch's by .* limit is 0\.0001"):
        check_onnx(other, SHAPE, path)


def test_save_model_picks_the_format_from_the_suffix(compressed: nn.Module, tmp_path: Path) -> None:
    line = save_model(compressed, SHAPE, tmp_path / "m.pt")
    assert "torch.load" in line
    again = torch.load(tmp_path / "m.pt", weights_only=False)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(again(x), compressed(x))
    line = save_model(compressed, SHAPE, tmp_path / "m.ONNX")
    assert "ONNX opset" in line and "max abs difference" in line
    import onnx

    onnx.checker.check_model(onnx.load(str(tmp_path / "m.ONNX")))


def test_cli_apply_and_finetune_write_checked_onnx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import rankopt_testmodels
    from sklearn.datasets import load_digits

    from rankopt.cli import main

    torch.manual_seed(0)
    net = rankopt_testmodels.small_net()
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    torch.save((images, torch.tensor(bunch.target)), tmp_path / "digits.pt")
    shapes = {n: tuple(net.get_submodule(n).weight.shape) for n in ("conv2", "conv3", "fc")}
    plan = CompressionPlan(
        model_name="rankopt_testmodels:small_net",
        fingerprint=model_fingerprint(net),
        input_shape=(1, 8, 8),
        layers=(
            LayerPlan("conv2", "gkpd", {"r": 2}, {}, shapes["conv2"]),
            LayerPlan("conv3", "svd", {"r": 4}, {}, shapes["conv3"]),
            LayerPlan("fc", "linear_svd", {"r": 3}, {}, shapes["fc"]),
        ),
    )
    plan_path = plan.save(tmp_path / "plan.json")
    model_args = ["--model", "rankopt_testmodels:small_net", "--weights", str(weights)]
    out = tmp_path / "small.onnx"
    rc = main(["apply", str(plan_path), *model_args, "--num-classes", "10", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0 and out.is_file(), stdout
    assert "max abs difference" in stdout and "ONNX opset 17" in stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = images[:16]
    with torch.no_grad():
        expected = apply_plan(net, plan)(x)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    tuned = tmp_path / "tuned.onnx"
    argv = ["finetune", str(plan_path), *model_args, "--data", str(tmp_path / "digits.pt")]
    rc = main([*argv, "--epochs", "1", "--threads", "1", "--out", str(tuned)])
    stdout = capsys.readouterr().out
    assert rc == 0 and tuned.is_file(), stdout
    assert f"wrote {tuned} (ONNX opset 17)" in stdout
    # Latency against dense, side by side, on the runtime of the .onnx file written.
    ratios = re.search(
        r"latency ([0-9.]+) at batch 1, ([0-9.]+) at batch 64 \(ONNX Runtime", stdout
    )
    assert ratios is not None and min(float(r) for r in ratios.groups()) > 0, stdout
    dense_row = re.search(r"^dense\s+\S+\s+\d+\s+\d+\s+([0-9.]+)\s+([0-9.]+)$", stdout, re.M)
    assert dense_row is not None and min(float(t) for t in dense_row.groups()) > 0, stdout
    # fine-tuned weights differ from the applied plan's
    tuned_out = ort.InferenceSession(str(tuned), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )[0]
    assert float(abs(torch.from_numpy(tuned_out) - expected).max()) > 1e-3


def test_sessions_above_one_thread_do_not_spin_and_leave_other_sessions_alone(
    compressed: nn.Module, tmp_path: Path
) -> None:
    from rankopt.latency._onnx import onnx_session

    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = compressed(x)
    for n_threads in (2, 1):
        session = onnx_session(compressed, SHAPE, n_threads=n_threads)
        options = session.get_session_options()
        assert options.intra_op_num_threads == n_threads
        if n_threads > 1:
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        else:  # one thread: no pool threads, nothing set
            with pytest.raises(RuntimeError, match="allow_spinning"):
                options.get_session_config_entry("session.intra_op.allow_spinning")
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    # A session of the user's own, with default options, still opens in this process.
    export_onnx(compressed, SHAPE, tmp_path / "m.onnx", check=False)
    own = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert own.get_session_options().use_per_session_threads


def test_an_unaligned_cp_depthwise_chain_is_padded_to_the_block_with_the_same_outputs(
    tmp_path: Path,
) -> None:
    """Issue 37 item 2: CP's depthwise conv at a rank above ONNX Runtime's channel block and
    not a multiple of it runs off its blocked kernels; the export pads it with zero channels."""
    from rankopt.latency._block import nchwc_block
    from rankopt.latency._onnx import _exportable_copy, pad_depthwise_chains

    torch.manual_seed(0)
    model = create_model("resnet8", in_channels=1, num_classes=10).eval()
    block = nchwc_block()
    rank = 2 * block + 2  # above the block, not a multiple of it
    layer = {info.name: info for info in profile(model, SHAPE).eligible_layers}["layer3.0.conv2"]
    plan = CompressionPlan(
        model_name="resnet8",
        fingerprint=model_fingerprint(model),
        input_shape=SHAPE,
        layers=(
            LayerPlan("layer3.0.conv2", "cp", {"r": rank}, {}, tuple(layer.weight_shape)),
            LayerPlan("layer2.0.conv2", "cp", {"r": block}, {}, (32, 32, 3, 3)),
        ),
    )
    small = apply_plan(model, plan).eval()
    padded = _exportable_copy(small)
    chain = padded.get_submodule("layer3.0.conv2")
    assert [chain[0].out_channels, chain[1].groups, chain[2].in_channels] == [3 * block] * 3
    aligned = padded.get_submodule("layer2.0.conv2")  # a multiple of the block: left alone
    assert aligned[1].groups == block
    assert pad_depthwise_chains(padded, block) == 0  # nothing left to pad
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), small(x), rtol=1e-5, atol=1e-5)
    path = tmp_path / "cp.onnx"
    check = export_onnx(small, SHAPE, path)  # checked against PyTorch in ONNX Runtime
    assert check is not None and check.rel_diff <= ONNX_REL_TOLERANCE
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = small(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())
