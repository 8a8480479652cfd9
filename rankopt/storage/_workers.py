"""A supervisor for N local ``rankopt search`` worker processes on one study.

Each worker is a ``python -m rankopt search`` subprocess with its own ``--worker-index``
(hence its own sampler seed) and a share of the CPU cores. Their progress lines are relayed
with a ``[worker i]`` prefix; Ctrl-C (or SIGTERM) is forwarded to them once as SIGINT, a
second Ctrl-C kills them. Used by ``rankopt workers``; importing it loads nothing heavy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["WorkersOutcome", "run_workers", "threads_per_worker"]

#: Seconds to wait for a relay thread to drain its worker's output after the worker exits.
RELAY_JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WorkersOutcome:
    """How the workers ended.

    Attributes:
        exit_codes: Exit code of each worker, by worker index.
        interrupted: Whether Ctrl-C (or SIGTERM) stopped them.
    """

    exit_codes: tuple[int, ...]
    interrupted: bool

    @property
    def failed(self) -> list[str]:
        """``"worker i (exit code c)"`` for every worker that did not exit with 0."""
        return [f"worker {i} (exit code {c})" for i, c in enumerate(self.exit_codes) if c != 0]

    @property
    def exit_code(self) -> int:
        """130 when interrupted, else the first non-zero worker exit code, else 0."""
        if self.interrupted:
            return 130
        return next((c for c in self.exit_codes if c != 0), 0)


def threads_per_worker(n_workers: int) -> int:
    """Torch threads for each of ``n_workers`` workers: ``max(1, usable cores // n)``."""
    if hasattr(os, "sched_getaffinity"):
        cores: int | None = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count()
    return max(1, (cores or 1) // n_workers)


def _relay(index: int, stream: IO[str]) -> None:
    for line in stream:
        sys.stderr.write(f"[worker {index}] {line}")
        sys.stderr.flush()


def _wait_all(procs: Sequence[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.wait()


def run_workers(
    n_workers: int,
    search_argv: Sequence[str],
    *,
    study_name: str,
    threads: int,
    say: Callable[[str], None],
) -> WorkersOutcome:
    """Start ``n_workers`` ``rankopt search`` processes, relay their output, wait for them.

    Args:
        n_workers: Number of worker processes (>= 1).
        search_argv: Options of ``rankopt search`` shared by every worker (storage, budget,
            model, ...); each worker gets ``--study-name``, ``--worker-index`` and
            ``--threads`` added.
        study_name: The study every worker works on.
        threads: Torch (and OpenMP / MKL) threads per worker.
        say: Where supervisor messages go (one line each).

    Returns:
        The workers' exit codes and whether they were interrupted.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONUNBUFFERED"] = "1"
    procs: list[subprocess.Popen[str]] = []
    relays: list[threading.Thread] = []
    for index in range(n_workers):
        cmd = [sys.executable, "-m", "rankopt", "search", *search_argv]
        cmd += ["--study-name", study_name, "--worker-index", str(index)]
        cmd += ["--threads", str(threads)]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,  # each worker's own front: the caller prints one
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # Ctrl-C reaches the workers once, through us
        )
        procs.append(proc)
        assert proc.stderr is not None
        thread = threading.Thread(target=_relay, args=(index, proc.stderr), daemon=True)
        thread.start()
        relays.append(thread)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    interrupted = False
    try:
        try:
            _wait_all(procs)
        except KeyboardInterrupt:
            interrupted = True
            say(f"interrupted: stopping {n_workers} workers; finished trials stay in the study")
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            try:
                _wait_all(procs)
            except KeyboardInterrupt:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                _wait_all(procs)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        for thread in relays:
            thread.join(timeout=RELAY_JOIN_TIMEOUT_S)
    return WorkersOutcome(
        exit_codes=tuple(int(proc.returncode) for proc in procs), interrupted=interrupted
    )
