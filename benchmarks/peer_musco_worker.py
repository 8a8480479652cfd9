"""musco-pytorch to a target MACs ratio; runs inside the musco venv (see peer_musco.py).

Called by :func:`peer_musco.musco_models` as::

    /tmp/musco/bin/python benchmarks/peer_musco_worker.py --main-site SITE \\
        --model resnet8 --data mnist5k --out DIR 0.5 0.25 0.1

and writes ``DIR/musco_<ratio>.pt`` (``torch.save`` of the whole compressed module) and
``DIR/musco_<ratio>.json`` (what was chosen and reached). The venv holds musco-pytorch
1.0.6, flopco-pytorch, scikit-tensor-py3 and tensorly 0.4.5 (musco needs the old tensorly;
rankopt's interpreter has tensorly >= 0.8); ``--main-site`` is appended to ``sys.path``
*after* the venv's own site-packages, so torch, numpy, scipy, fvcore and rankopt's other
dependencies come from the main interpreter while tensorly 0.4.5 shadows the main one.

Compatibility shim (:func:`_shim`, applied before musco is imported): musco / scikit-tensor
were written for numpy < 1.20 and scipy < 1.12, so the removed aliases ``np.float``,
``np.int``, ``np.complex``, ``np.bool``, ``np.object`` and ``np.in1d`` are put back (as the
builtins / ``np.isin`` on the flattened input, which is what they were), and
``scipy.linalg.eigh(..., eigvals=(lo, hi))`` is mapped to ``subset_by_index=[lo, hi]``.
Nothing else in musco is changed, except two things in its rank floor (``_set_min_rank``):
musco 1.0.6's ``SVDDecomposedConvLayer`` (1x1 convs) reads ``self.min_rank`` without ever
setting it, an ``AttributeError`` on every 1x1 conv, so the class gets musco's own value 8
(and, for ``param_reduction``, its ``in_features`` / ``out_features``, which only the linear
variant has, are aliased to the channel counts); and the optional floor override below.

Rank selection (one compression stage, no fine-tune between stages):

- ``vbmf`` (default; ``CompressorVBMF``, MUSCO's own criterion): Tucker-2 on kxk convs,
  SVD on 1x1 convs, ranks from VBMF on the two unfoldings "weakened" by one factor ``w``
  for every layer: ``rank = full - w * (full - vbmf)``, floored at musco's ``min_rank``.
  ``w`` = 0 keeps full ranks, 1 is the VBMF rank, above 1 goes below it. The largest MACs
  under the target is found by bisecting ``w`` (MACs do not increase with ``w``).
- ``param_reduction`` (``CompressorPR`` with Tucker-2): every layer divides its parameters
  by one rate ``r``; bisection on ``log r``.

MUSCO's multi-stage loop (``nglobal_compress_iters`` > 1) is meant to alternate compression
and fine-tuning; without the fine-tunes it only re-decomposes the cores at ranks the single
stage can reach directly, so one stage is used and the benchmark's own calibration and
fine-tune follow. musco hard-codes ``min_rank = 8`` (Tucker-2 and SVD layers), which caps
the compression of 16- and 32-channel layers; when a target is below what rank 8 allows,
the worker retries with the floor lowered to 4, 2, then 1 (by wrapping musco's rank
estimators; the JSON's ``min_rank`` and ``note`` say so). Layers musco cannot take stay
dense: convs with <= 3 input channels (the input conv, as Kim et al. do; musco also fails
on 1-input-channel convs), dilated or grouped convs (musco drops dilation and groups), and
the classifier (the last ``nn.Linear``; negligible MACs, and a rank-8 SVD of a 10-class
head only costs accuracy).

Limit: where VBMF finds rank 0 (weights it reads as pure noise), musco's ``weaken_rank``
keeps the *full* rank, and a full-rank Tucker-2 costs more than the dense conv whatever the
weakening factor. On an untrained resnet20 every layer does that (1.24x the dense MACs at
the strongest setting; the worker raises RuntimeError); use ``--selection param_reduction``
for such a model. Trained resnet8 on mnist5k has no such layer.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One BLAS thread: on a small shared machine OpenBLAS's default pool made each of VBMF's
# small SVDs take seconds instead of milliseconds (0.7 s vs 200 s for one resnet8 stage).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
MUSCO_MIN_RANK = 8
"""The floor musco hard-codes in its Tucker-2 and SVD layers."""
FALLBACK_MIN_RANKS: tuple[int, ...] = (MUSCO_MIN_RANK, 4, 2, 1)


def _shim() -> None:
    """Restore what musco / scikit-tensor use from old numpy and scipy (see module doc)."""
    import numpy as np
    import scipy.linalg

    for alias, value in (
        ("float", float),
        ("int", int),
        ("complex", complex),
        ("bool", bool),
        ("object", object),
    ):
        if alias not in np.__dict__:
            setattr(np, alias, value)
    if "in1d" not in np.__dict__:

        def in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False) -> Any:
            return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)

        np.in1d = in1d  # type: ignore[attr-defined]
    original = scipy.linalg.eigh
    if getattr(original, "_musco_shim", False):
        return

    @functools.wraps(original)
    def eigh(*args: Any, eigvals: tuple[int, int] | None = None, **kwargs: Any) -> Any:
        if eigvals is not None:
            kwargs["subset_by_index"] = [int(eigvals[0]), int(eigvals[1])]
        return original(*args, **kwargs)

    eigh._musco_shim = True  # type: ignore[attr-defined]
    scipy.linalg.eigh = eigh


def _set_min_rank(min_rank: int) -> None:
    """Make musco's rank estimators use ``min_rank`` instead of the hard-coded 8."""
    import musco.pytorch.compressor.decompositions.svd_layer as svd_layer
    import musco.pytorch.compressor.decompositions.tucker2 as tucker2
    from musco.pytorch.compressor.rank_selection import estimator

    def floor(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            kwargs["min_rank"] = min_rank
            return fn(*args, **kwargs)

        return wrapped

    # musco 1.0.6 reads self.min_rank in SVDDecomposedConvLayer (1x1 convs) but never sets
    # it (AttributeError on every 1x1 conv); a class attribute fills the gap.
    svd_layer.SVDDecomposedConvLayer.min_rank = MUSCO_MIN_RANK
    # ... and its param_reduction branch reads self.in_features / self.out_features, which
    # only the linear variant has (AttributeError): alias them to the channel counts.
    svd_layer.SVDDecomposedConvLayer.in_features = property(lambda self: self.in_channels)
    svd_layer.SVDDecomposedConvLayer.out_features = property(lambda self: self.out_channels)
    for module in (tucker2, svd_layer):
        module.estimate_vbmf_ranks = floor(estimator.estimate_vbmf_ranks)  # type: ignore[attr-defined]
        module.estimate_rank_for_compression_rate = floor(  # type: ignore[attr-defined]
            estimator.estimate_rank_for_compression_rate
        )


def skipped_layers(model: Any) -> dict[str, str]:
    """Conv / linear layers musco must not touch, with the reason."""
    from torch import nn

    skip: dict[str, str] = {}
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        skip[linears[-1]] = "classifier"
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels <= 3:
                skip[name] = "input conv (<= 3 input channels)"
            elif m.dilation != (1, 1) or m.groups != 1:
                skip[name] = "dilated or grouped (musco drops both)"
    return skip


def compress(
    model: Any, shape: tuple[int, ...], selection: str, value: float, skip: dict[str, str]
) -> tuple[Any, dict[str, Any]]:
    """One musco compression stage of ``model`` at weakening factor / rate ``value``."""
    from flopco import FlopCo
    from musco.pytorch.compressor.compressor import CompressorPR, CompressorVBMF

    stats = FlopCo(model, img_size=(1, *shape), device="cpu")
    names = [n for n, t in stats.ltypes.items() if n not in skip]
    ranks: dict[str, Any] = {n: None for n in skip if n in stats.ltypes}
    if selection == "vbmf":
        compressor: Any = CompressorVBMF(
            model, stats, ranks=ranks, vbmf_weakenen_factors={n: value for n in names}
        )
    elif selection == "param_reduction":
        compressor = CompressorPR(
            model,
            stats,
            conv2d_nn_decomposition="tucker2",
            ranks=ranks,
            param_reduction_rates={n: value for n in names},
        )
    else:
        raise ValueError(f"selection must be 'vbmf' or 'param_reduction', not {selection!r}")
    with contextlib.redirect_stdout(io.StringIO()):  # musco prints every layer it decomposes
        while not compressor.done:
            compressor.compression_step()
    chosen = {
        k: (list(map(int, v)) if isinstance(v, list | tuple) else int(v))
        for k, v in compressor.ranks.items()
    }
    return compressor.compressed_model.eval(), chosen


def to_target(
    model: Any,
    shape: tuple[int, ...],
    ratio: float,
    selection: str,
    steps: int = 14,
    tolerance: float = 0.003,
) -> tuple[Any, dict[str, Any]]:
    """Bisect ``selection``'s knob so that fvcore MACs <= ``ratio`` of dense, as close as
    possible (at most ``steps`` evaluations, stopping within ``tolerance`` of the dense
    MACs under the target); lower musco's rank floor only when the target needs it."""
    import torch

    import rankopt

    dense_macs = rankopt.count_macs(model, shape)
    target = ratio * dense_macs
    skip = skipped_layers(model)
    evals = 0

    def at(value: float) -> tuple[Any, dict[str, Any], int]:
        nonlocal evals
        evals += 1
        with torch.no_grad():
            compressed, ranks = compress(model, shape, selection, value, skip)
        return compressed, ranks, rankopt.count_macs(compressed, shape)

    # the knob's strongest setting: every rank at the floor
    extreme = 1e4 if selection == "vbmf" else 1e6
    low = 0.0 if selection == "vbmf" else 1.0
    for min_rank in FALLBACK_MIN_RANKS:
        _set_min_rank(min_rank)
        best = at(extreme)
        if best[2] <= target:
            break
    else:
        raise RuntimeError(
            f"musco: {best[2] / dense_macs:.3f} of the dense MACs at min_rank 1, target {ratio}"
        )
    floor_ratio = best[2] / dense_macs
    lo, hi, best_value = low, extreme, extreme
    for _ in range(steps):
        mid = 0.5 * (lo + hi) if selection == "vbmf" else math.sqrt(lo * hi)
        if selection == "vbmf" and hi > 64:
            mid = min(mid, 2.0 * max(lo, 1.0))  # walk up from w ~ 1 before halving
        candidate = at(mid)
        if candidate[2] <= target:
            hi, best, best_value = mid, candidate, mid
            if candidate[2] >= target - tolerance * dense_macs:
                break  # close enough: every evaluation decomposes the whole model
        else:
            lo = mid
    compressed, ranks, macs = best
    knob = "vbmf weakening factor" if selection == "vbmf" else "param reduction rate"
    note = (
        f"musco {'CompressorVBMF' if selection == 'vbmf' else 'CompressorPR (tucker2)'}, "
        f"one stage, {knob} {best_value:.4g} on every layer, min_rank {min_rank}"
        + ("" if min_rank == MUSCO_MIN_RANK else f" (musco's {MUSCO_MIN_RANK} cannot reach it)")
        + f", MACs {macs / dense_macs:.3f} of dense; dense: {', '.join(sorted(skip))}"
    )
    info = {
        "peer": "musco-pytorch 1.0.6",
        "selection": selection,
        "knob": knob,
        "value": best_value,
        "min_rank": min_rank,
        "floor_macs_ratio_at_min_rank": floor_ratio,
        "target_macs_ratio": ratio,
        "macs": macs,
        "dense_macs": dense_macs,
        "macs_ratio": macs / dense_macs,
        "ranks": ranks,
        "skipped": skip,
        "evaluations": evals,
        "note": note,
    }
    return compressed, info


def main() -> int:
    """Command line (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratios", nargs="+", type=float, help="target MACs ratios")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--selection", default="vbmf", choices=("vbmf", "param_reduction"))
    parser.add_argument("--main-site", action="append", default=[])
    args = parser.parse_args()
    # Run by the peer venv's interpreter (its own packages first), so the main interpreter's
    # site-packages (torch, numpy...) go after them and the checkout first: rankopt's editable
    # install is a .pth file that sys.path.extend does not read.
    sys.path.extend(args.main_site)
    sys.path.insert(0, str(ROOT))
    _shim()
    import torch

    from rankopt.data import load_data
    from rankopt.models import get_pretrained

    torch.set_num_threads(1)
    shape = tuple(load_data(args.data).train[0].shape[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    for ratio in args.ratios:
        model, _ = get_pretrained(args.model, args.data)
        t0 = time.perf_counter()
        compressed, info = to_target(model.eval(), shape, ratio, args.selection)
        info["seconds"] = time.perf_counter() - t0
        info.update(model=args.model, data=args.data)
        torch.save(compressed, args.out / f"musco_{ratio:g}.pt")
        (args.out / f"musco_{ratio:g}.json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"ratio {ratio:g}: {info['note']} ({info['seconds']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
