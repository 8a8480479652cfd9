"""CPU latency: median wall time of a forward pass, alone or side by side with the dense
model."""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from rankopt.errors import SettingsError
from rankopt.latency._runtimes import DEFAULT_LATENCY_THREADS, get_runtime
from rankopt.latency._units import timed_rounds

__all__ = [
    "check_latency_threads",
    "compare_latency_ms",
    "measure_latency_ms",
    "timing_threads",
    "usable_cores",
]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def check_latency_threads(n_threads: int) -> None:
    """Refuse a thread count that this machine cannot time steadily.

    Raises:
        SettingsError: ``n_threads`` < 1, or more threads than the cores this process may use
            (the timings would measure the scheduler, not the model).
    """
    cores = usable_cores()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise SettingsError(f"latency_threads = {n_threads!r} must be an integer >= 1")
    if n_threads > cores:
        raise SettingsError(
            f"latency_threads = {n_threads} must be at most the {cores} CPU core(s) this "
            "process may use: with more threads than cores, threads wait for each other and "
            "the timings measure the scheduler, not the model; use 1 (the default) for "
            "steady timings"
        )


@contextlib.contextmanager
def timing_threads(n_threads: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``n_threads`` inside the block (None: unchanged);
    ONNX Runtime sessions made inside take the same count. Checked by
    :func:`check_latency_threads`; the previous count is restored."""
    if n_threads is None:
        yield
        return
    check_latency_threads(n_threads)
    saved = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def measure_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    n_warmup: int = 5,
    n_runs: int = 30,
    n_threads: int | None = None,
    runtime: str = "torch",
) -> float:
    """Median wall time of one forward pass, in milliseconds.

    The model runs in eval mode under :func:`torch.inference_mode` on the device of its
    parameters (CPU for the search; CUDA is synchronised around each run) on a fixed random
    batch. The model's training mode and torch's intra-op thread count are restored
    afterwards.

    Args:
        model: The network.
        input_shape: Shape of one input, e.g. ``(1, 28, 28)`` (without the batch dimension).
        batch_size: Images per forward pass.
        n_warmup: Untimed runs before measuring.
        n_runs: Timed runs; the median is returned.
        n_threads: Intra-op threads during the measurement (None: leave as set).
        runtime: ``"torch"`` or ``"onnxruntime"`` (a CPU float32 copy exported to ONNX;
            see :mod:`rankopt.latency._runtimes`).

    Returns:
        Median latency of one forward pass of ``batch_size`` images, in ms (> 0).

    Raises:
        SettingsError: ``n_runs`` < 1, ``batch_size`` < 1 or ``n_threads`` < 1.
        UnknownNameError: an unknown runtime.
    """
    if n_runs < 1 or batch_size < 1 or n_warmup < 0 or (n_threads is not None and n_threads < 1):
        raise SettingsError(
            f"n_runs={n_runs} and batch_size={batch_size} must be >= 1, "
            f"n_warmup={n_warmup} >= 0, n_threads={n_threads} >= 1 or None"
        )
    rt = get_runtime(runtime)
    if rt.name != "torch":
        rt.check_available()
        saved = torch.get_num_threads()
        try:
            if n_threads is not None:
                torch.set_num_threads(n_threads)
            host = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
            x = torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
            return rt.time_models_ms([host], x, n_warmup=n_warmup, n_runs=n_runs)[0]
        finally:
            torch.set_num_threads(saved)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *input_shape), generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    saved_threads = torch.get_num_threads()
    saved_modes = [(m, m.training) for m in model.modules()]
    times_ms: list[float] = []
    try:
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        model.eval()
        with torch.inference_mode():
            for _ in range(n_warmup):
                model(x)
            sync()
            for _ in range(n_runs):
                start = time.perf_counter()
                model(x)
                sync()
                times_ms.append((time.perf_counter() - start) * 1000.0)
    finally:
        for m, was in saved_modes:
            m.training = was
        if n_threads is not None:
            torch.set_num_threads(saved_threads)
    return float(statistics.median(times_ms))


def compare_latency_ms(
    models: Sequence[nn.Module],
    input_shape: tuple[int, ...],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    runtime: str = "torch",
    min_timed_s: float = 1.0,
    n_runs: int = 25,
    n_threads: int | None = DEFAULT_LATENCY_THREADS,
) -> dict[int, list[float]]:
    """Latency of each model against the first (the dense one), measured side by side.

    As the latency table and ``benchmarks/bench_latency_search.py`` measure: CPU float32
    copies, one forward pass of each model per round (the order rotated), after a warm-up, at
    ``n_threads`` threads; each model's time is the first model's median plus the median
    of its per-round difference to it, so a slow spell of a shared machine hits both alike.

    Args:
        models: The models, the reference (dense) first; not modified.
        input_shape: One input, e.g. ``(1, 28, 28)``.
        batch_sizes: Batch sizes (>= 1 each).
        runtime: ``"torch"`` or ``"onnxruntime"`` (:mod:`rankopt.latency._runtimes`).
        min_timed_s: Each model is timed at least this many seconds in all (more rounds at
            small batches; at most ``_latency_units.MAX_RUNS``).
        n_runs: Timed rounds at least (>= 1).
        n_threads: Intra-op threads while timing (default 1: steady on a shared or small
            machine; None: torch's current count); at most the usable cores.

    Returns:
        ``batch size -> latency_ms of each model``, in the order given.

    Raises:
        SettingsError: no model, a batch size < 1, ``n_runs`` < 1, or ``n_threads`` refused
            by :func:`check_latency_threads`.
        UnknownNameError: an unknown runtime.
        RankoptError: the runtime's packages are missing.
    """
    if not models or not batch_sizes or min(batch_sizes) < 1 or n_runs < 1:
        raise SettingsError(
            f"{len(models)} models must be >= 1, batch_sizes={list(batch_sizes)} non-empty "
            f"and >= 1, n_runs={n_runs} >= 1"
        )
    rt = get_runtime(runtime)
    rt.check_available()
    hosts = [copy.deepcopy(m).to(device="cpu", dtype=torch.float32).eval() for m in models]
    gen = torch.Generator().manual_seed(0)
    out: dict[int, list[float]] = {}
    with timing_threads(n_threads):
        for bs in batch_sizes:
            x = torch.randn((bs, *input_shape), generator=gen)
            probe_ms = rt.time_models_ms(hosts[:1], x, n_warmup=1, n_runs=3)[0]
            runs = timed_rounds(n_runs, min_timed_s, probe_ms)
            out[bs] = rt.time_models_ms(hosts, x, n_warmup=3, n_runs=runs, paired=True)
    return out
