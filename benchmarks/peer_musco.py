"""Peer: musco-pytorch (MUSCO, Gusak et al. 2019) at a target MACs ratio, via its own venv.

musco-pytorch 1.0.6 needs tensorly 0.4.5, which conflicts with rankopt's tensorly >= 0.8, so
it runs in a plain venv whose interpreter appends the main site-packages to ``sys.path``
*after* its own (torch, numpy, scipy, fvcore, rankopt's dependencies come from the main
interpreter; tensorly 0.4.5 shadows the main one; nothing pulls another torch). Setup
(:func:`ensure_musco_venv` runs exactly this when ``/tmp/musco/bin/python`` is missing)::

    python3 -m venv /tmp/musco
    /tmp/musco/bin/pip install --no-deps musco-pytorch==1.0.6 flopco-pytorch==0.1.4 \\
        scikit-tensor-py3==0.4.1 tensorly==0.4.5 absl-py

Use from the main interpreter::

    from benchmarks.peer_musco import musco_models, load_musco  # from the repository root
    paths = musco_models("resnet8", "mnist5k", [0.5, 0.25, 0.1], "/tmp/musco_models")
    model, info = load_musco(paths[0.25])   # nn.Module (eval) and what musco did

:func:`musco_models` runs ``benchmarks/peer_musco_worker.py`` in the venv (one subprocess for
all ratios), which loads the model with ``rankopt.models.get_pretrained(model, data)``,
compresses it with MUSCO's VBMF rank selection in one stage, bisecting the weakening factor
until rankopt's fvcore MACs are at most the target (see the worker's docstring for the
numpy / scipy shim, musco's bug it works around, and the rank-floor fallback), and writes
``musco_<ratio>.pt`` + ``musco_<ratio>.json``. Back here every file is loaded and checked
(MACs <= target by :func:`rankopt.count_macs`, finite output). The models are plain
``torch.save`` modules (``nn.Sequential`` of ``nn.Conv2d`` in place of each decomposed
layer), so the benchmark calibrates and fine-tunes them like any other row.

``python3 -m benchmarks.peer_musco`` prints the smoke numbers for 50 / 25 / 10 %.
"""

from __future__ import annotations

import site
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import rankopt
from benchmarks.common.venv_peers import (
    checked_models,
    load_peer_model,
    run_in_venv,
)

MUSCO_VENV = Path("/tmp/musco")
MUSCO_PACKAGES: tuple[str, ...] = (
    "musco-pytorch==1.0.6",
    "flopco-pytorch==0.1.4",
    "scikit-tensor-py3==0.4.1",
    "tensorly==0.4.5",
    "absl-py",
)
WORKER = Path(__file__).resolve().parent / "peer_musco_worker.py"
NOTE = (
    "**musco-pytorch** 1.0.6 (MUSCO, Gusak et al. 2019): needs tensorly 0.4.5, so it runs in "
    "its own venv (`python3 -m venv /tmp/musco && /tmp/musco/bin/pip install --no-deps "
    "musco-pytorch==1.0.6 flopco-pytorch==0.1.4 scikit-tensor-py3==0.4.1 tensorly==0.4.5 "
    "absl-py`, torch and numpy from the main interpreter) behind a shim for numpy 2 / scipy "
    "1.17 (`np.float`, `np.int`, `np.in1d`, `eigh(eigvals=)`) and two musco bugs on 1x1 convs "
    "(`SVDDecomposedConvLayer` lacks `min_rank` and, for parameter reduction, "
    "`in/out_features`). `CompressorVBMF`: Tucker-2 on kxk convs, SVD on 1x1 convs, VBMF "
    "ranks weakened by one factor for every layer, bisected until the fvcore MACs are within "
    "the budget; one compression stage (MUSCO's multi-stage loop is for alternating with "
    "fine-tunes; the benchmark's own fine-tune follows). The input conv, dilated / grouped "
    "convs and the classifier stay dense. musco hard-codes a minimum rank of 8, which "
    "stops at 0.257 of resnet8's MACs: for 25 % and 10 % the floor is lowered to 4 and 2 "
    "(the model's JSON says so)."
)
"""Peer note for the report (what the row is and what it cannot do)."""


def ensure_musco_venv(venv: Path | str = MUSCO_VENV) -> Path:
    """Create the musco venv if its interpreter is missing; its python's path.

    Raises:
        subprocess.CalledProcessError: venv creation or pip failed.
    """
    venv = Path(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--no-deps", *MUSCO_PACKAGES], check=True
        )
    return python


def _main_sites() -> list[str]:
    """The main interpreter's site-packages (appended after the venv's own)."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def musco_models(
    model_name: str,
    data_name: str,
    ratios: Sequence[float],
    out_dir: Path | str,
    *,
    selection: str = "vbmf",
    venv: Path | str = MUSCO_VENV,
    timeout_s: float = 3600.0,
) -> dict[float, Path]:
    """Compress ``model_name`` trained on ``data_name`` with musco at every MACs ratio.

    Args:
        model_name: A built-in model of :func:`rankopt.models.get_pretrained` (its cached
            weights are used; the venv loads it the same way).
        data_name: Its data set (``mnist5k``, ``fashion-mnist``, ...).
        ratios: Target MACs ratios (compressed / dense fvcore MACs).
        out_dir: Where ``musco_<ratio>.pt`` / ``.json`` go.
        selection: ``"vbmf"`` (MUSCO's weakened VBMF ranks, default) or
            ``"param_reduction"`` (one parameter-reduction rate for every layer).
        venv: The musco venv (created when missing, see :func:`ensure_musco_venv`).
        timeout_s: Limit for the subprocess.

    Returns:
        ``{ratio: path of the .pt}`` for every ratio, each checked here: fvcore MACs at
        most ``ratio`` of the dense model's and a finite output.

    Raises:
        subprocess.CalledProcessError: the worker failed (its stderr is in the exception).
        RuntimeError: a written model is over its budget or not finite.
    """
    from rankopt.models import get_pretrained

    python = ensure_musco_venv(venv)
    out = Path(out_dir)
    dense, _ = get_pretrained(model_name, data_name)  # trains and caches once, here
    cmd = [str(python), str(WORKER), "--model", model_name, "--data", data_name]
    cmd += ["--out", str(out), "--selection", selection]
    for path in _main_sites():
        cmd += ["--main-site", path]
    cmd += [f"{r:g}" for r in ratios]
    run_in_venv(cmd, timeout_s)
    return checked_models("musco", dense, data_name, ratios, out)


load_musco = load_peer_model
"""A model written by the musco venv (eval mode) and its info (the ``.json``)."""


def _demo() -> int:
    """Smoke check: MACs ratio, accuracy before / after BatchNorm calibration, time."""
    import argparse

    from rankopt.data import load_data
    from rankopt.evaluators import evaluate_accuracy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    parser.add_argument("--selection", default="vbmf", choices=("vbmf", "param_reduction"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/musco_models"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    paths = musco_models(args.model, args.data, args.ratios, args.out, selection=args.selection)
    print(f"musco_models: {time.perf_counter() - t0:.0f}s for {len(paths)} ratios")
    splits = load_data(args.data)
    for ratio, path in paths.items():
        model, info = load_musco(path)
        acc0 = evaluate_accuracy(model, *splits.test)
        rankopt.calibrate_bn(model, splits.train[0][:1024])
        acc1 = evaluate_accuracy(model, *splits.test)
        print(
            f"target {ratio:.2f}: macs {info['macs_ratio']:.4f}, acc {acc0:.4f}, after BN "
            f"calibration {acc1:.4f}, {info['seconds']:.0f}s ({info['evaluations']} musco "
            f"runs) | {info['note']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(_demo())
