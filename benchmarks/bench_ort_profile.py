"""Where the time goes in ONNX Runtime: resnet8 with every conv replaced by one method.

Issue 37, item 2. Each method's module replaces every layer it is offered on (spatial methods
not on 1x1 convs), at the largest rank within ``--share`` (default 50 %) of the layer's MACs
whose ranks are all multiples of ``--multiple`` (the search's default on ONNX Runtime: its
NCHWc channel block, 16 with AVX-512), else the largest such rank at all. The model is
exported as ``rankopt apply --out x.onnx`` does, run by ONNX Runtime's CPU provider at one
thread with its profiler on; the first runs are dropped and each node's **median** over the
rest is kept (a median per node resists a shared machine's preemptions, a sum does not).

Prints, per method and batch size: the node count, the time per op type (``Conv`` is a plain
convolution, ``FusedConv`` one with its BatchNorm / ReLU fused, ``ReorderInput`` /
``ReorderOutput`` layout changes into and out of ONNX Runtime's blocked NCHWc layout) and the
five slowest nodes.

Usage: ``PYTHONPATH=. python benchmarks/bench_ort_profile.py [--runs 40] [--share 0.5]``
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import statistics
from typing import Any

import torch
from torch import nn

from rankopt.evaluators import profile
from rankopt.latency._grid import method_module
from rankopt.latency._onnx import _export, _exportable_copy, _require
from rankopt.latency._runtimes import nchwc_block
from rankopt.models import create_model
from rankopt.spaces import get_method
from rankopt.spaces._layer import LayerInfo

METHODS = ("svd", "spatial_svd", "tucker2", "cp")
SHAPE = (1, 28, 28)
WARMUP_RUNS = 5


def _ranks(method: str, layer: LayerInfo, share: float, multiple: int) -> dict[str, int] | None:
    impl = get_method(method)
    if not impl.supports(layer) or not impl.offered_for(layer):
        return None
    within = [
        r for r in impl.useful_ranks(layer) if impl.macs(layer, r, None) <= share * layer.macs
    ]
    aligned = [r for r in within if all(v % multiple == 0 for v in r.values())]
    return (aligned or within or [None])[-1]


def decomposed(method: str, share: float, multiple: int) -> tuple[nn.Module, dict[str, Any]]:
    """resnet8 with every offered conv replaced by ``method``'s module (random factors)."""
    model = create_model("resnet8", in_channels=1, num_classes=10).eval()
    if method == "dense":
        return model, {}
    gen = torch.Generator().manual_seed(0)
    chosen: dict[str, Any] = {}
    for layer in profile(model, SHAPE).eligible_layers:
        if layer.kind == "linear":
            continue
        ranks = _ranks(method, layer, share, multiple)
        if ranks is None:
            continue
        chosen[layer.name] = ranks
        parent, _, attr = layer.name.rpartition(".")
        setattr(
            model.get_submodule(parent) if parent else model,
            attr,
            method_module(method, layer, ranks, gen),
        )
    return model.eval(), chosen


def profile_ort(model: nn.Module, batch_size: int, runs: int, prefix: str) -> dict[str, Any]:
    """Per-node medians of ONNX Runtime's profiler over ``runs`` runs after the warm-up."""
    ort = _require("onnxruntime")
    buffer = io.BytesIO()
    _export(_exportable_copy(model), SHAPE, buffer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    x = torch.randn(batch_size, *SHAPE).numpy()
    total = WARMUP_RUNS + runs
    for _ in range(total):
        session.run(None, {"input": x})
    path = session.end_profiling()
    with open(path) as fh:
        events = json.load(fh)
    os.remove(path)
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // total
    durations: dict[str, list[float]] = collections.defaultdict(list)
    op_type: dict[str, str] = {}
    for e in kernels[WARMUP_RUNS * per_run :]:
        name = e["name"].removesuffix("_kernel_time")
        durations[name].append(float(e["dur"]))
        op_type[name] = str(e["args"].get("op_name"))
    medians = {name: statistics.median(d) for name, d in durations.items()}
    by_op: collections.Counter[str] = collections.Counter()
    for name, us in medians.items():
        by_op[op_type[name]] += us
    slowest = sorted(medians.items(), key=lambda kv: -kv[1])[:5]
    return {
        "total_us": round(sum(medians.values()), 1),
        "nodes": len(medians),
        "by_op_us": {op: round(us, 1) for op, us in by_op.most_common()},
        "slowest_us": {name: round(us, 1) for name, us in slowest},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--multiple", type=int, default=nchwc_block())
    parser.add_argument("--out", default="/tmp/rankopt_ort_profile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for method in ("dense", *METHODS):
        model, chosen = decomposed(method, args.share, args.multiple)
        if chosen:
            print(method, "ranks:", json.dumps(chosen))
        for bs in (1, 64):
            result = profile_ort(model, bs, args.runs, f"{args.out}_{method}_{bs}")
            print(method, f"batch {bs}:", json.dumps(result))


if __name__ == "__main__":
    main()
