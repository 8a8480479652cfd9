"""Time decomposing every eligible layer of ResNet-18 and building the compressed model.

Usage: ``python benchmarks/bench_decompose.py [--ranks vbmf|0.25]``.

torchvision's ResNet-18 (random weights, 10 classes, 3x32x32 input). Ranks are the VBMF
estimates (Tucker-2 on kxk convs, SVD on 1x1 convs and the Linear head: the seed recipe)
or one fraction of full rank. Prints the seconds of a cold run (empty factor cache: VBMF,
decomposition and ``apply_plan``) and of a second ``apply_plan`` with the same ranks
(factors served from the cache). Target on 2 CPU cores: < 10 s cold, < 0.5 s warm.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torchvision
from torch import nn

from rankopt import CompressionPlan, LayerPlan, apply_plan, profile, vbmf_ranks
from rankopt.evaluators import ModelProfile
from rankopt.spaces import cache_info, clear_cache, get_method


def make_plan(model: nn.Module, prof: ModelProfile, ranks: str) -> CompressionPlan:
    """The seed-recipe plan for every eligible layer at VBMF ranks or a rank fraction."""
    modules = dict(model.named_modules())
    layers = []
    for info in prof.eligible_layers:
        if info.kind == "linear":
            method = "linear_svd"
        else:
            method = "svd" if info.kernel_size == (1, 1) else "tucker2"
        module = modules[info.name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
        if ranks == "vbmf":
            chosen = vbmf_ranks(module, method)
        else:
            full = get_method(method).rank_space(info)
            chosen = {k: max(1, round(v * float(ranks))) for k, v in full.items()}
        layers.append(LayerPlan(info.name, method, chosen, {}, info.weight_shape))
    return CompressionPlan("resnet18", prof.fingerprint, prof.input_shape, tuple(layers))


def main() -> None:
    """Run the benchmark and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", default="vbmf", help="'vbmf' or a fraction of full rank")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    prof = profile(model, (3, 32, 32))
    clear_cache()
    start = time.perf_counter()
    plan = make_plan(model, prof, args.ranks)
    compressed = apply_plan(model, plan)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    apply_plan(model, plan)
    warm = time.perf_counter() - start
    n_params = sum(p.numel() for p in compressed.parameters())
    print(
        f"resnet18 @3x32x32: {len(plan.layers)} layers, ranks={args.ranks}, "
        f"torch threads={torch.get_num_threads()}, load average={os.getloadavg()[0]:.2f}"
    )
    print(f"dense: {prof.macs} macs, {prof.n_params} params; compressed params: {n_params}")
    print(f"cold (VBMF + decompose + build): {cold:.3f} s   (target < 10 s)")
    print(f"warm (same ranks, cached factors): {warm:.3f} s   (target < 0.5 s)")
    print(f"cache: {cache_info()}")


if __name__ == "__main__":
    main()
