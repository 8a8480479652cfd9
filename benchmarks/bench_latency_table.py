"""How well the per-layer latency table predicts whole-model latency (built-in resnet8).

Builds the table for resnet8 on 1x28x28 (random weights: latency does not depend on them),
then for a few plans compares the table's prediction with the compressed model's measured
latency, all models timed interleaved with the dense one. Reports absolute latency_ms and
the ratio to dense, batch 1 and 64, one thread.

Usage: ``PYTHONPATH=. python benchmarks/bench_latency_table.py [--runs 15]``
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from rankopt.latency import latency_table, time_interleaved_ms
from rankopt.models import create_model
from rankopt.plan import LayerPlan
from rankopt.spaces import build_module, get_method

INPUT = (1, 28, 28)
METHODS = ("tucker2", "svd", "spatial_svd", "linear_svd")


def uniform_plan(
    model: nn.Module, table_layers: dict, method: str, target: float
) -> list[LayerPlan]:
    """``method`` on every 3x3 conv it supports at ~``target`` of its MACs; others dense."""
    impl = get_method(method)
    plans = []
    for name, layer in table_layers.items():
        if layer.kind != "conv2d" or layer.kernel_size == (1, 1) or not impl.supports(layer):
            continue
        if layer.in_channels <= 3:  # the input conv stays dense, as in the VBMF seed
            continue
        full = impl.rank_space(layer)
        best = min(
            ({k: max(1, round(s / 200 * f)) for k, f in full.items()} for s in range(1, 201)),
            key=lambda r: abs(impl.macs(layer, r) / layer.macs - target),
        )
        shape = tuple(model.get_submodule(name).weight.shape)
        plans.append(LayerPlan(name, method, best, {}, shape))
    return plans


def apply(model: nn.Module, plans: list[LayerPlan], layers: dict) -> nn.Module:
    out = copy.deepcopy(model)
    for lp in plans:
        new = build_module(out.get_submodule(lp.layer), layers[lp.layer], lp.method, lp.ranks)
        parent, _, attr = lp.layer.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, attr, new)
    return out.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("resnet8").eval()
    start = time.perf_counter()
    table = latency_table(
        model,
        INPUT,
        METHODS,
        n_runs=args.runs,
        cache_dir=args.cache_dir,
        progress=lambda d, t, w: print(f"  [{d}/{t}] {w}", flush=True),
    )
    print(f"table: {time.perf_counter() - start:.1f} s, {table.cache_path}")
    layers = dict(table.layers)
    plans = {
        f"{m} 50%": uniform_plan(model, layers, m, 0.5) for m in ("tucker2", "svd", "spatial_svd")
    }
    plans["tucker2 30%"] = uniform_plan(model, layers, "tucker2", 0.3)
    models = [model] + [apply(model, p, layers) for p in plans.values()]
    x_shape = INPUT
    print(
        f"{'plan':14s} {'batch':>5s} {'pred ms':>8s} {'meas ms':>8s} {'err %':>6s} "
        f"{'pred/dense':>10s} {'meas/dense':>10s}"
    )
    for bs in (1, 64):
        x = torch.randn(bs, *x_shape)
        times = time_interleaved_ms(models, x, n_warmup=3, n_runs=args.runs)
        print(
            f"{'dense':14s} {bs:5d} {table.model_ms[bs]:8.2f} {times[0]:8.2f} "
            f"{100 * (table.model_ms[bs] / times[0] - 1):6.1f}"
        )
        for (name, plan), t in zip(plans.items(), times[1:], strict=True):
            pred = table.predict_model_ms(plan, bs)
            print(
                f"{name:14s} {bs:5d} {pred:8.2f} {t:8.2f} {100 * (pred / t - 1):6.1f} "
                f"{pred / table.model_ms[bs]:10.2f} {t / times[0]:10.2f}"
            )


if __name__ == "__main__":
    main()
