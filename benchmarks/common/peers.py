"""Peer libraries run in rankopt's own interpreter (tensorly-torch).

The peers that need their own venvs stay standalone scripts: ``benchmarks/bench_aimet.py``
(aimet-torch) and ``benchmarks/peer_musco_worker.py`` (musco-pytorch, driven by
:mod:`benchmarks.peer_musco`); torch-pruning is :mod:`benchmarks.peer_pruning`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

import rankopt
from rankopt.searching import Budget, SearchSpace


def tltorch_model(
    model: nn.Module, space: SearchSpace, budget: Budget, input_shape: tuple[int, ...]
) -> tuple[nn.Module, str]:
    """tensorly-torch Tucker on every searchable kxk conv (the input conv stays dense), one
    rank fraction for all, the largest that fits ``budget`` by fvcore's count.

    ``tltorch.FactorizedConv.from_conv(conv, rank=f, factorization="tucker",
    implementation="factorized", decompose_weights=True)``: full Tucker over all four modes,
    ``f`` is tltorch's fraction of the dense parameter count; bisection on ``f``.

    Raises:
        ImportError: tltorch is not installed.
        BudgetError: even the smallest fraction tried does not fit.
    """
    import tltorch  # optional peer library

    targets = [
        name
        for name in space.layer_names
        if space.layer(name).kind == "conv2d"
        and space.layer(name).kernel_size != (1, 1)
        and space.layer(name).in_channels > 3
    ]

    def build(fraction: float) -> nn.Module:
        new = copy.deepcopy(model)
        for name in targets:
            parent_name, _, attr = name.rpartition(".")
            parent = new.get_submodule(parent_name) if parent_name else new
            conv = getattr(parent, attr)
            setattr(
                parent,
                attr,
                tltorch.FactorizedConv.from_conv(
                    conv,
                    rank=fraction,
                    factorization="tucker",
                    implementation="factorized",
                    decompose_weights=True,
                ),
            )
        return new.eval()

    assert budget.max_macs is not None
    lo, hi = 0.0, 1.0
    best: nn.Module | None = None
    best_f = 0.0
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        with torch.no_grad():
            candidate = build(mid)
        if rankopt.count_macs(candidate, input_shape) <= budget.max_macs:
            lo, best, best_f = mid, candidate, mid
        else:
            hi = mid
    if best is None:
        raise rankopt.BudgetError("tltorch: no rank fraction in (0, 1) fits the budget")
    return best, f"tltorch Tucker, rank fraction {best_f:.3f} of params on {len(targets)} convs"
