"""Time decomposing + building every eligible conv of ResNet-18 (random weights).

Usage: ``python benchmarks/bench_decompose.py [--method tucker2] [--fraction 0.25]``.
Prints the seconds of a cold run (empty cache) and of a second run with the same ranks
(served from the cache). Target on 2 CPU cores: < 10 s cold, < 0.5 s warm for Tucker-2 at a
quarter of full rank.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torch import nn

from rankopt.spaces import (
    LayerInfo,
    build_module,
    cache_info,
    clear_cache,
    conv_output_hw,
    describe_layer,
    get_method,
)


def _layers(model: nn.Module, input_hw: tuple[int, int]) -> list[tuple[nn.Conv2d, LayerInfo]]:
    """Every Conv2d with its profiled LayerInfo (spatial sizes from forward hooks)."""
    sizes: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):

            def hook(
                m: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor, n: str = name
            ) -> None:
                sizes[n] = (tuple(inp[0].shape[-2:]), tuple(out.shape[-2:]))  # type: ignore[assignment]

            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, *input_hw))
    for h in hooks:
        h.remove()
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            info = describe_layer(name, mod)
            hw_in, hw_out = sizes[name]
            assert conv_output_hw(info, hw_in) == hw_out
            out.append((mod, info.with_spatial(hw_in, hw_out)))
    return out


def run(method: str, fraction: float) -> float:
    """Decompose and build every eligible conv once; return wall seconds."""
    impl = get_method(method)
    start = time.perf_counter()
    for mod, info in LAYERS:
        if not impl.supports(info):
            continue
        full = impl.rank_space(info)
        ranks = {k: max(1, round(v * fraction)) for k, v in full.items()}
        build_module(mod, info, method, ranks)
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="tucker2")
    parser.add_argument("--fraction", type=float, default=0.25)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    LAYERS = _layers(model, (32, 32))
    clear_cache()
    cold = run(args.method, args.fraction)
    warm = run(args.method, args.fraction)
    n = sum(get_method(args.method).supports(i) for _, i in LAYERS)
    print(
        f"method={args.method} fraction={args.fraction} layers={n} "
        f"torch threads={torch.get_num_threads()}"
    )
    print(f"cold (decompose + build): {cold:.3f} s")
    print(f"warm (same ranks, cached): {warm:.3f} s")
    print(f"cache: {cache_info()}")
