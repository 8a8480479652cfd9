"""ONNX export of a (compressed) model, checked by onnxruntime against PyTorch.

``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``): it needs only the
``onnx`` package, while the dynamo exporter also needs ``onnxscript``. ``nn.ChannelShuffle``
(used by GKPD modules) has no ONNX symbolic there, so the exported copy replaces it with the
equivalent reshape / transpose / reshape.

Install the extra: ``pip install 'rankopt[onnx]'`` (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankopt._optional import try_import
from rankopt.errors import ModelError, RankoptError
from rankopt.latency._block import nchwc_block

__all__ = [
    "ONNX_OPSET",
    "ONNX_REL_TOLERANCE",
    "SPIN_OFF_ABOVE_THREADS",
    "OnnxCheck",
    "check_onnx",
    "export_onnx",
    "onnx_session",
    "save_model",
]

ONNX_OPSET = 17
"""ONNX opset of exported models."""
ONNX_REL_TOLERANCE = 1e-4
"""Largest allowed ``max|onnx - torch| / max(max|torch|, 1)`` on the check batch."""
CHECK_BATCH = 8
"""Images (random normal, seeded) in the onnxruntime check batch."""


@dataclass(frozen=True)
class OnnxCheck:
    """Outcome of running an exported model in onnxruntime next to PyTorch.

    Attributes:
        path: The ONNX file.
        max_abs_diff: Largest absolute difference between onnxruntime's and PyTorch's
            outputs on the check batch (in logits).
        max_abs_output: Largest absolute PyTorch output on the check batch.
        batch_size: Images in the check batch.
    """

    path: Path
    max_abs_diff: float
    max_abs_output: float
    batch_size: int

    @property
    def rel_diff(self) -> float:
        """``max_abs_diff / max(max_abs_output, 1)`` (relative for large logits)."""
        return self.max_abs_diff / max(self.max_abs_output, 1.0)

    def describe(self) -> str:
        """One line for the command line."""
        return (
            f"onnxruntime vs PyTorch on {self.batch_size} images: max abs difference "
            f"{self.max_abs_diff:.3g} (relative {self.rel_diff:.3g}, tolerance "
            f"{ONNX_REL_TOLERANCE:g})"
        )


class _ShuffleForOnnx(nn.Module):
    """``nn.ChannelShuffle(groups)`` written as reshape / transpose / reshape."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2)
        return y.reshape(b, c, h, w)


class _UnflattenForOnnx(nn.Module):
    """``nn.Unflatten(dim, sizes)`` that keeps ``-1`` as ``-1`` in the traced graph.

    ``nn.Unflatten`` resolves ``-1`` in Python, so the trace bakes in the example's batch.
    """

    def __init__(self, dim: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.dim = dim
        self.sizes = tuple(int(s) for s in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim % x.dim()
        head = [x.shape[i] for i in range(dim)]
        tail = [x.shape[i] for i in range(dim + 1, x.dim())]
        return x.reshape(*head, *self.sizes, *tail)


def _exportable_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy in eval mode, ``ChannelShuffle`` / ``Unflatten`` made exportable."""
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    for name, module in list(net.named_modules()):
        new: nn.Module | None = None
        if isinstance(module, nn.ChannelShuffle):
            new = _ShuffleForOnnx(int(module.groups))
        elif isinstance(module, nn.Unflatten) and isinstance(module.unflattened_size, tuple):
            new = _UnflattenForOnnx(int(module.dim), module.unflattened_size)
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, new)
    pad_depthwise_chains(net, nchwc_block())
    return net


def pad_depthwise_chains(net: nn.Module, block: int) -> int:
    """Widen every ``Sequential(1x1 S->R, depthwise R, 1x1 R->T)`` (CP's module) whose R
    is above ``block`` and not a multiple of it to the next multiple, with zero channels:
    the outputs are the same, in place.

    ONNX Runtime runs a depthwise conv whose channel count is a multiple of its NCHWc block
    in its blocked kernels and any other one in its plain kernel: on resnet8 a CP rank of 130
    at layer3.0.conv2 ran the whole model 5.5x slower at batch 64 than rank 128, and rank 144
    (the padded 130) 4.8x faster than 130 (``benchmarks/BENCHMARKS_ORT_PROFILE.md``). A plan
    searched with another rank multiple (eager PyTorch's 1) exports fast so.

    Returns:
        How many chains were widened.
    """
    widened = 0
    for module in list(net.modules()):
        if not isinstance(module, nn.Sequential) or len(module) != 3:
            continue
        first, mid, last = module[0], module[1], module[2]
        if not (
            isinstance(first, nn.Conv2d)
            and isinstance(mid, nn.Conv2d)
            and isinstance(last, nn.Conv2d)
        ):
            continue
        r = int(mid.in_channels)
        chain = (
            first.kernel_size == (1, 1) == last.kernel_size
            and first.groups == 1 == last.groups
            and first.out_channels == r == mid.out_channels == mid.groups == last.in_channels
        )
        if not chain or r <= block or r % block == 0:
            continue
        extra = -(-r // block) * block - r
        module[0] = _padded_conv(first, out_extra=extra)
        module[1] = _padded_conv(mid, out_extra=extra, in_extra=extra)
        module[2] = _padded_conv(last, in_extra=extra)
        widened += 1
    return widened


def _padded_conv(conv: nn.Conv2d, *, out_extra: int = 0, in_extra: int = 0) -> nn.Conv2d:
    """``conv`` with zero output / input channels added (a depthwise conv stays depthwise)."""
    depthwise = conv.groups > 1
    out_ch, in_ch = conv.out_channels + out_extra, conv.in_channels + in_extra
    new = nn.Conv2d(
        in_ch,
        out_ch,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=out_ch if depthwise else conv.groups,
        bias=conv.bias is not None,
    ).eval()
    with torch.no_grad():
        new.weight.zero_()
        old = conv.weight
        new.weight[: old.shape[0], : old.shape[1]] = old
        if conv.bias is not None and new.bias is not None:
            new.bias.zero_()
            new.bias[: conv.bias.shape[0]] = conv.bias
    return new


def _require(module: str) -> Any:
    return try_import(module, extra="onnx", needed_for="ONNX export")


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    *,
    check: bool = True,
) -> OnnxCheck | None:
    """Write ``model`` as ONNX (opset :data:`ONNX_OPSET`, dynamic batch) and check it.

    Args:
        model: The model (left untouched; a float32 CPU copy is exported).
        input_shape: Shape of one image, e.g. ``(3, 32, 32)``.
        path: Output ``.onnx`` file.
        check: Run onnxruntime on a batch of :data:`CHECK_BATCH` images and compare with
            PyTorch.

    Returns:
        The check (max abs difference, ...), or None when ``check`` is False.

    Raises:
        RankoptError: ``onnx`` / ``onnxruntime`` are missing, or the outputs differ by more
            than :data:`ONNX_REL_TOLERANCE` relative.
        ModelError: ``torch.onnx.export`` cannot export the model.
    """
    _require("onnx")
    out = Path(path)
    shape = tuple(int(s) for s in input_shape)
    net = _exportable_copy(model)
    partial = out.with_name(out.name + ".partial")
    try:
        _export(net, shape, str(partial))
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return check_onnx(net, shape, out) if check else None


def _export(net: nn.Module, shape: tuple[int, ...], target: str | io.BytesIO) -> None:
    """``torch.onnx.export`` of an exportable copy (dynamic batch) to a path or buffer.

    Raises:
        ModelError: the exporter fails (its first line quoted).
    """
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.zeros(1, *shape),),
                target,  # type: ignore[arg-type]  # a file-like object works (BytesIO)
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                verbose=False,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"torch.onnx.export cannot export {type(net).__name__}: {first}") from None


SPIN_OFF_ABOVE_THREADS = 1
"""Sessions at more threads than this run with their pool threads' spinning off."""


def onnx_session(model: nn.Module, input_shape: Sequence[int], n_threads: int = 1) -> Any:
    """An onnxruntime CPU ``InferenceSession`` of ``model`` exported in memory (dynamic
    batch, input ``"input"``), all graph optimisations on, ``n_threads`` intra-op threads
    and sequential execution: the runtime people deploy the exported file with. Above one
    thread its pool threads do not spin between runs (sessions are timed in turn; a lone
    session at batch 1 runs about 0.07 ms slower than with spinning, on resnet8 here).

    Raises:
        RankoptError: ``onnx`` / ``onnxruntime`` are missing.
        ModelError: the model cannot be exported.
    """
    _require("onnx")
    ort = _require("onnxruntime")
    buffer = io.BytesIO()
    _export(_exportable_copy(model), tuple(int(s) for s in input_shape), buffer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    if n_threads > SPIN_OFF_ABOVE_THREADS:
        # Each session has its own intra-op pool, whose threads spin for a while after a run.
        # Timing sessions in turn (the latency table interleaves one per variant), the idle
        # sessions' spinning threads took the cores: at 2 threads on 2 cores, 8 interleaved
        # resnet8 sessions ran at 27.3 ms per batch of 64 against 5.4 ms for one alone; with
        # spinning off, 5.7 ms. (A pool shared by every session, ONNX Runtime's global one,
        # ran them at 5.5 ms, but once made it refuses every session of the process that
        # does not use it, a user's own included.) Spinning off has its own cost: a latency
        # table at 2 threads on a 2-core VM timed the dense model at 10.2-12.5 ms, about its
        # time at 1 thread, and mispredicted its own plans by up to 24 % (the search warns).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def check_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> OnnxCheck:
    """Run the ONNX file in onnxruntime (CPU) and compare with ``model`` on one batch.

    Raises:
        RankoptError: ``onnxruntime`` is missing, or the outputs differ by more than
            :data:`ONNX_REL_TOLERANCE` relative.
    """
    ort = _require("onnxruntime")
    net = _exportable_copy(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(CHECK_BATCH, *input_shape, generator=gen)
    with torch.no_grad():
        expected = net(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise RankoptError(
            f"{str(path)!r}: onnxruntime returns shape {tuple(got.shape)}, PyTorch "
            f"{tuple(expected.shape)}; the export is wrong"
        )
    result = OnnxCheck(
        path=Path(path),
        max_abs_diff=float(abs(got - expected).max()),
        max_abs_output=float(abs(expected).max()),
        batch_size=CHECK_BATCH,
    )
    if not result.rel_diff <= ONNX_REL_TOLERANCE:
        raise RankoptError(
            f"{str(path)!r}: onnxruntime's outputs differ from PyTorch's by "
            f"{result.max_abs_diff:.3g} (relative {result.rel_diff:.3g}); the limit is "
            f"{ONNX_REL_TOLERANCE:g} relative; the model uses an operator the ONNX export "
            "changes; save as .pt instead"
        )
    return result


def save_model(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> str:
    """Save by suffix: ``.onnx`` -> checked ONNX export, anything else -> ``torch.save``.

    Returns:
        One line saying what was written (with the onnxruntime check for ONNX).
    """
    out = Path(path)
    if out.suffix.lower() == ".onnx":
        checked = export_onnx(model, input_shape, out, check=True)
        assert checked is not None
        return f"wrote {out} (ONNX opset {ONNX_OPSET}); {checked.describe()}"
    torch.save(model, out)
    return f"wrote {out} (load with torch.load(path, weights_only=False))"
