"""Peers that run in venvs of their own (musco, AIMET): the subprocess, the check, the load.

Both write ``<prefix>_<ratio>.pt`` (a whole module, ``torch.save``) and a ``.json`` of what
they did next to it; here every file is loaded and checked the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import rankopt


def run_in_venv(cmd: Sequence[str], timeout_s: float) -> None:
    """Run a peer's venv command with one BLAS / OpenMP thread and no ``PYTHONPATH`` (the
    venv's own site-packages must come first).

    Raises:
        subprocess.CalledProcessError: the command failed (its stderr is in the exception).
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        list(cmd), env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)


def load_peer_model(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """A peer's written model (eval mode, CPU) and its info (the ``.json`` beside it)."""
    path = Path(path)
    model = torch.load(path, weights_only=False, map_location="cpu").eval()
    info = json.loads(path.with_suffix(".json").read_text())
    return model, info


def checked_models(
    prefix: str, dense: nn.Module, data_name: str, ratios: Sequence[float], out: Path
) -> dict[float, Path]:
    """``{ratio: out/<prefix>_<ratio>.pt}``, each checked: fvcore MACs at most ``ratio`` of
    the dense model's, and a finite output on 64 test images.

    Raises:
        RuntimeError: a model is over its budget or not finite.
    """
    from rankopt.data import load_data

    images = load_data(data_name).test[0][:64]
    shape = tuple(images.shape[1:])
    dense_macs = rankopt.count_macs(dense, shape)
    paths: dict[float, Path] = {}
    for r in ratios:
        path = out / f"{prefix}_{r:g}.pt"
        model, _ = load_peer_model(path)
        macs = rankopt.count_macs(model, shape)
        with torch.no_grad():
            finite = bool(torch.isfinite(model(images)).all())
        if macs > r * dense_macs or not finite:
            raise RuntimeError(
                f"{path}: MACs {macs / dense_macs:.4f} (target {r}), finite {finite}"
            )
        paths[r] = path
    return paths
