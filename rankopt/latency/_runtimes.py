"""Where latency is measured: eager PyTorch or ONNX Runtime (the deployment runtime).

Each runtime is a class that owns everything about running a model on it: how a model is
prepared (:meth:`LatencyRuntime.compile`), what identifies its measurements in the disk
cache (:meth:`LatencyRuntime.signature`) and how a whole model with one layer swapped for
each of several modules is timed (:meth:`LatencyRuntime.time_swapped_ms`). The latency
table, the search's latency budget and the benchmarks take a runtime by name
(:data:`RUNTIMES`).

Why two: eager PyTorch on a CPU pays 10-20 microseconds of dispatch per operator and runs
BatchNorm and ReLU as separate passes over memory, so a factorised layer (2-3 small convs
instead of one) saves little time at small sizes. ONNX Runtime, which ``rankopt apply
--out model.onnx`` exports for, fuses Conv + BatchNorm + ReLU and has little per-operator
overhead, so its time follows the MACs much more closely (measured on resnet8: a uniform
Tucker-2 plan at 17 % of the MACs runs at 0.55x dense at batch 1 and 0.51x at batch 64 in
ONNX Runtime, 0.62x and about 1.0x in eager PyTorch).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rankopt.errors import UnknownNameError
from rankopt.latency._block import nchwc_block
from rankopt.latency._timing import Runner, time_runners_ms

if TYPE_CHECKING:  # torch is imported where it runs: `rankopt --help` stays light
    import torch
    from torch import nn

__all__ = [
    "DEFAULT_LATENCY_THREADS",
    "RUNTIMES",
    "LatencyRuntime",
    "OnnxRuntime",
    "TorchRuntime",
    "get_runtime",
    "nchwc_block",
]

DEFAULT_LATENCY_THREADS = 1
"""Threads the latency table and latency comparisons time at unless told.

At 2 threads on a 2-core VM the ONNX Runtime table mispredicted whole plans by up to 65 %
(at 1 thread: 7 %, ``benchmarks/BENCHMARKS_LATENCY_2THREADS.md``): a second thread shares
its core with everything else the machine runs, and a small CPU model gains little from it.
"""


def _swapped(model: nn.Module, layer_name: str, module: nn.Module) -> nn.Module:
    """A copy of ``model`` with ``layer_name`` replaced by ``module``."""
    parent_name, _, attr = layer_name.rpartition(".")
    original = model.get_submodule(layer_name)
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)
    try:
        return copy.deepcopy(model)
    finally:
        setattr(parent, attr, original)


class LatencyRuntime(ABC):
    """A runtime the latency of a model is measured on (CPU, float32)."""

    name: ClassVar[str]
    description: ClassVar[str]
    unreachable_hint: ClassVar[str] = ""
    """Appended to the error of a latency budget below what this runtime can reach: what
    else could meet it (empty: nothing to add)."""

    @property
    def rank_multiple(self) -> int:
        """The rank multiple a search uses by default when it measures latency here."""
        return 1

    @abstractmethod
    def signature(self) -> dict[str, str]:
        """What identifies this runtime's measurements in the disk cache (name, version)."""

    @abstractmethod
    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> Runner:
        """``model`` (eval mode, CPU, float32) prepared to run here, as a callable."""

    def check_available(self) -> None:  # noqa: B027 - most runtimes need nothing more
        """Raise :class:`~rankopt.errors.RankoptError` naming what to install, if anything."""

    def time_swapped_ms(
        self,
        model: nn.Module,
        layer_name: str,
        modules: Sequence[nn.Module],
        x: torch.Tensor,
        *,
        n_warmup: int = 3,
        n_runs: int = 15,
    ) -> list[float]:
        """Latency_ms of the whole ``model`` with ``layer_name`` replaced by each of
        ``modules`` in turn (the layer itself first for the dense time), interleaved; the
        variants paired with the first round by round (:func:`paired_medians_ms`)."""
        shape = tuple(x.shape[1:])
        runners = [self.compile(_swapped(model, layer_name, m), shape) for m in modules]
        return time_runners_ms(runners, x, n_warmup=n_warmup, n_runs=n_runs, paired=True)

    def time_models_ms(
        self,
        models: Sequence[nn.Module],
        x: torch.Tensor,
        *,
        n_warmup: int = 3,
        n_runs: int = 15,
        paired: bool = False,
    ) -> list[float]:
        """Median latency_ms of each model on ``x``, measured interleaved (``paired``: the
        others relative to the first round by round, :func:`paired_medians_ms`)."""
        shape = tuple(x.shape[1:])
        runners = [self.compile(m, shape) for m in models]
        return time_runners_ms(runners, x, n_warmup=n_warmup, n_runs=n_runs, paired=paired)


class TorchRuntime(LatencyRuntime):
    """Eager PyTorch under ``torch.inference_mode`` at the current thread count."""

    name = "torch"
    description = "eager PyTorch"
    unreachable_hint = (
        "; eager PyTorch pays a fixed dispatch cost per operator and runs BatchNorm and ReLU "
        "as passes of their own, so a factorised layer (two or three convs) saves little "
        "time on a small model: ONNX Runtime (latency_runtime='onnxruntime', "
        "--latency-runtime onnxruntime, the runtime of `rankopt apply --out small.onnx`) "
        "fuses them and its time follows the MACs (benchmarks/BENCHMARKS_LATENCY.md and "
        "BENCHMARKS_LATENCY_TORCH.md compare the two)"
    )

    def signature(self) -> dict[str, str]:
        """Torch's version (also in the machine signature)."""
        import torch

        return {"runtime": self.name, "runtime_version": torch.__version__}

    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> Runner:
        """The model itself, run in eval mode without autograd."""
        import torch

        model.eval()

        def run(x: torch.Tensor) -> Any:
            with torch.inference_mode():
                return model(x)

        return run

    def time_swapped_ms(
        self,
        model: nn.Module,
        layer_name: str,
        modules: Sequence[nn.Module],
        x: torch.Tensor,
        *,
        n_warmup: int = 3,
        n_runs: int = 15,
    ) -> list[float]:
        """As the base class, swapping the modules in place (no copies of the model)."""
        from rankopt.latency._grid import time_swapped_ms

        return time_swapped_ms(model, layer_name, modules, x, n_warmup=n_warmup, n_runs=n_runs)


class OnnxRuntime(LatencyRuntime):
    """ONNX Runtime's CPU provider on the model exported as ``rankopt apply --out x.onnx``
    does (opset 17, all graph optimisations), at torch's current thread count."""

    name = "onnxruntime"
    description = "ONNX Runtime (CPU provider), the model as rankopt exports it"

    @property
    def rank_multiple(self) -> int:
        """The channel block of its CPU convolutions on this machine (:func:`nchwc_block`).

        ONNX Runtime runs convolutions in a blocked layout (NCHWc); a factor conv whose
        channel count is not a multiple of the block falls back to the plain kernels with
        layout reorders around it. Measured on resnet8 (AVX-512, block 16): CP at rank 16 on
        a 16-channel 3x3 conv saves 11 % of the model's time at batch 64, the grid's
        neighbours at ranks 12 and 20 save 5 % and cost 1 % more. With ranks rounded to
        multiples of 4 the latency table, interpolating between unaligned grid points,
        mispredicted whole plans by up to 34 % (batch 64) and 24 % (batch 1); with multiples
        of the block, by at most 10 % on the same kind of plans, and the fastest reachable
        resnet8 is still 0.40x dense.
        """
        return nchwc_block()

    def check_available(self) -> None:
        """Raise when ``onnx`` / ``onnxruntime`` are missing (``pip install 'rankopt[onnx]'``)."""
        from rankopt.latency._onnx import _require

        _require("onnx")
        _require("onnxruntime")

    def signature(self) -> dict[str, str]:
        """onnxruntime's version."""
        from rankopt.latency._onnx import _require

        ort = _require("onnxruntime")
        # "spin": timings at several threads with spinning pool threads measured the other
        # sessions' spinning, not the model (rankopt.latency._onnx.onnx_session).
        return {"runtime": self.name, "runtime_version": str(ort.__version__), "spin": "off"}

    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> Runner:
        """An in-memory ONNX export of the model in an onnxruntime session."""
        import torch

        from rankopt.latency._onnx import onnx_session

        session = onnx_session(model, input_shape, n_threads=torch.get_num_threads())
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> Any:
            return session.run(None, {name: x.numpy()})

        return run


RUNTIMES: dict[str, LatencyRuntime] = {r.name: r for r in (TorchRuntime(), OnnxRuntime())}
"""Latency runtimes by name."""


def get_runtime(name: str) -> LatencyRuntime:
    """The runtime called ``name``.

    Raises:
        UnknownNameError: not one of :data:`RUNTIMES` (the message lists them).
    """
    if name not in RUNTIMES:
        raise UnknownNameError("latency runtime", name, sorted(RUNTIMES))
    return RUNTIMES[name]
