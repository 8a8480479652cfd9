"""Microbenchmark: one conv layer, dense vs each method's module at ~50 % of its MACs.

Two layers (16->16 3x3 at 28x28, 64->64 3x3 at 14x14), batch 1 and 64, one thread. All
modules of a layer and batch size are timed **interleaved** in the same rounds
(``rankopt.latency.time_interleaved_ms``), so the ratios to dense share the machine's
load. Also times a GKPD variant
whose B conv is one grouped conv (B repeated S1 times) instead of a batch reshape.

Usage: ``PYTHONPATH=. python benchmarks/bench_modules.py [--runs 20]``
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from rankopt.latency import time_interleaved_ms
from rankopt.spaces import conv_output_hw, describe_layer, get_method
from rankopt.spaces._layer import LayerInfo

METHODS = ("tucker2", "cp", "svd", "spatial_svd", "gkpd")


def ranks_near(method: str, layer: LayerInfo, target: float) -> dict[str, int]:
    """Ranks (all scaled together) whose MACs are closest to ``target`` x dense."""
    impl = get_method(method)
    full = impl.rank_space(layer)
    best: tuple[float, dict[str, int]] = (float("inf"), {})
    for step in range(1, 1001):
        ranks = {k: max(1, round(step / 1000 * f)) for k, f in full.items()}
        gap = abs(impl.macs(layer, ranks) / layer.macs - target)
        if gap < best[0]:
            best = (gap, ranks)
    return best[1]


def gkpd_grouped(layer: LayerInfo, factors: Any) -> nn.Module:
    """GKPD with B as one grouped conv (S1 groups, B repeated) then the grouped A conv."""
    a, b = factors
    r, t1, s1 = (int(n) for n in a.shape)
    _, t2, s2, dh, dw = (int(n) for n in b.shape)
    wb = b.permute(1, 0, 2, 3, 4).reshape(t2 * r, s2, dh, dw).repeat(s1, 1, 1, 1)
    conv_b = nn.Conv2d(
        s1 * s2,
        s1 * t2 * r,
        (dh, dw),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=s1,
        bias=False,
    )
    conv_b.weight.data.copy_(wb.float())
    conv_a = nn.Conv2d(t2 * r * s1, t2 * t1, 1, groups=t2, bias=False)
    return nn.Sequential(conv_b, nn.ChannelShuffle(s1), conv_a, nn.ChannelShuffle(t2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}")
    for s, hw in ((16, 28), (64, 14)):
        dense = nn.Conv2d(s, s, 3, padding=1, bias=False)
        info = describe_layer("conv", dense)
        layer = info.with_spatial((hw, hw), conv_output_hw(info, (hw, hw)))
        names, modules, macs = ["dense"], [dense], [1.0]
        for m in METHODS:
            impl = get_method(m)
            ranks = ranks_near(m, layer, 0.5)
            opts = impl.resolve_options(layer, None)
            factors = impl.random_factors(layer, ranks, opts, gen)
            names.append(f"{m} {ranks}")
            modules.append(impl.to_module(layer, factors, None, opts))
            macs.append(impl.macs(layer, ranks) / layer.macs)
            if m == "gkpd":
                names.append(f"gkpd_grouped {ranks}")
                modules.append(gkpd_grouped(layer, factors))
                macs.append(macs[-1])
        for bs in (1, 64):
            x = torch.randn(bs, s, hw, hw, generator=gen)
            times = time_interleaved_ms(modules, x, n_warmup=3, n_runs=args.runs)
            print(f"\n{s}->{s} 3x3 at {hw}x{hw}, batch {bs}: dense {times[0]:.3f} ms")
            print(f"  {'module':34s} {'MACs ratio':>10s} {'latency ratio':>13s}")
            for name, mr, t in zip(names[1:], macs[1:], times[1:], strict=True):
                print(f"  {name:34s} {mr:10.2f} {t / times[0]:13.2f}")


if __name__ == "__main__":
    main()
