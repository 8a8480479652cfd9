"""The grid peers' models at every MACs fraction of :data:`~.peers.GRID_MACS`.

- tensorly-torch: :func:`benchmarks.common.peers.tltorch_model` (Tucker on every kxk conv,
  one rank fraction, the largest that fits the MACs) in this interpreter;
- musco: :func:`benchmarks.peer_musco.musco_models` in its venv (created when missing,
  a quick ``pip install --no-deps``), models kept in ``--peers-dir`` between runs;
- AIMET spatial SVD: :func:`benchmarks.peer_aimet.aimet_models` only where its venv already
  exists (aimet-torch pins its own torch stack; this benchmark does not build it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import rankopt
from benchmarks.common.peers import tltorch_model
from benchmarks.common.recipes import bench_space, n_outputs_of
from benchmarks.common.venv_peers import load_peer_model
from benchmarks.fashion.harness import Task
from benchmarks.fashion_latency.peers import GRID_MACS, Timed
from rankopt.searching import Budget

AIMET_PYTHON = Path("/tmp/aimet/bin/python")
"""The AIMET venv's interpreter (:mod:`benchmarks.peer_aimet`)."""


def tltorch_grid(task: Task) -> Callable[[], dict[float, Timed]]:
    """Builds tensorly-torch Tucker models at every grid fraction."""

    def build() -> dict[float, Timed]:
        space = bench_space(task.model, task.input_shape, n_outputs_of(task.model, task.train[0]))
        out = {}
        for fraction in GRID_MACS:
            budget = Budget(max_macs=rankopt.parse_budget(fraction, task.dense_macs))
            try:
                with warnings.catch_warnings():  # tensorly: each rank above a mode's size
                    warnings.simplefilter("ignore", UserWarning)
                    model, note = tltorch_model(task.model, space, budget, task.input_shape)
            except rankopt.BudgetError as exc:
                out[fraction] = Timed(fraction, None, note=str(exc))
                continue
            out[fraction] = Timed(fraction, model, note=note)
        return out

    return build


def _why(exc: Exception) -> str:
    """An exception in one line, with the tail of a subprocess's stderr."""
    stderr = str(getattr(exc, "stderr", "") or "").strip()
    return f"{type(exc).__name__}: {(stderr or str(exc))[-300:]}"


def _venv_grid(
    prefix: str, folder: Path, make: Callable[[list[float]], object]
) -> dict[float, Timed]:
    """Each missing grid fraction made by ``make([fraction])`` (one at a time, so one that
    fails leaves the others), then every file read back."""
    folder.mkdir(parents=True, exist_ok=True)
    failed: dict[float, str] = {}
    for fraction in GRID_MACS:
        if not (folder / f"{prefix}_{fraction:g}.pt").exists():
            try:
                make([fraction])
            except Exception as exc:  # the peer fails at this fraction: say, go on
                failed[fraction] = _why(exc)
    out = {}
    for fraction in GRID_MACS:
        if fraction in failed:
            out[fraction] = Timed(fraction, None, note=f"{prefix} failed: {failed[fraction]}")
            continue
        model, info = load_peer_model(folder / f"{prefix}_{fraction:g}.pt")
        out[fraction] = Timed(fraction, model, note=str(info.get("note") or prefix))
    return out


def musco_grid(task: Task, folder: Path) -> Callable[[], dict[float, Timed]]:
    """Builds (or reads back from ``folder``) the musco models at every grid fraction."""

    def build() -> dict[float, Timed]:
        from benchmarks.peer_musco import musco_models

        return _venv_grid(
            "musco", folder, lambda r: musco_models(task.model_name, task.data_name, r, folder)
        )

    return build


def aimet_grid(task: Task, folder: Path) -> Callable[[], dict[float, Timed]]:
    """Builds (or reads back) the AIMET spatial-SVD models; raises without the AIMET venv."""

    def build() -> dict[float, Timed]:
        missing = [f for f in GRID_MACS if not (folder / f"aimet_{f:g}.pt").exists()]
        if missing and not AIMET_PYTHON.exists():
            raise FileNotFoundError(
                f"no AIMET venv at {AIMET_PYTHON} (aimet-torch pins its own torch stack; "
                "benchmarks.peer_aimet.ensure_aimet_venv builds it, this run did not)"
            )
        from benchmarks.peer_aimet import aimet_models

        return _venv_grid(
            "aimet", folder, lambda r: aimet_models(task.model_name, task.data_name, r, folder)
        )

    return build
