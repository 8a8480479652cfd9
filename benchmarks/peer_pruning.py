"""Peer: structured channel pruning with torch-pruning, down to a target MACs ratio.

torch-pruning (PyPI ``torch-pruning`` 1.6.1, Fang et al., "DepGraph", CVPR 2023) removes
whole channels; its ``DependencyGraph`` groups every layer that must lose the same channels
(a conv, its BatchNorm, the next conv's input channels, and across a residual addition the
convs and shortcuts that feed it), so residual ResNets stay consistent. It installs into the
main interpreter without touching torch::

    python3 -m pip install --no-deps torch-pruning==1.6.1

The recipe is the library's own "prune to a target speed-up" loop (``progressive_pruning``
of torch-pruning's ``benchmarks/main.py``): a ``tp.pruner.BasePruner`` (``MetaPruner`` is its
deprecated alias) with ``pruning_ratio=1.0`` spread over ``iterative_steps`` linear steps,
the classifier in ``ignored_layers``, and ``pruner.step()`` repeated until the model's MACs
are at most the target. Here MACs are rankopt's fvcore count (:func:`rankopt.count_macs`,
the count every benchmark row uses), not torch-pruning's own counter. With 400 steps one
step removes 0.25 % of every group's channels, so the result lands just under the target
(one step of the channel rounding below it at most).

Importance (``importance=``):

- ``"l2"`` (default row): ``GroupMagnitudeImportance(p=2)``, the L2 norm of each channel's
  weights summed over its dependency group; data-free, the README's first example.
- ``"taylor"``: ``GroupTaylorImportance``, first-order Taylor ``|w * dL/dw|`` from the
  cross-entropy gradient of ``calibration`` (images, labels), recomputed before every step.
- ``"lamp"`` / ``"fpgm"``: the library's other data-free scores.

``global_pruning=True`` ranks channels across layers (one threshold for the whole model)
instead of the same ratio per layer; ``max_pruning_ratio`` (0.9) stops any group from losing
all of its channels.

Main function: :func:`pruned_model`. ``python3 -m benchmarks.peer_pruning`` prints the smoke
numbers (MACs ratio, accuracy right after pruning and after BatchNorm calibration, time)
for 50 / 25 / 10 % and, with ``--finetune EPOCHS``, compares the importances after a short
fine-tune.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import rankopt

IMPORTANCES: tuple[str, ...] = ("l2", "taylor", "lamp", "fpgm")
NOTE = (
    "**torch-pruning** 1.6.1 (`python3 -m pip install --no-deps torch-pruning==1.6.1`): "
    "structured channel pruning; its DependencyGraph prunes every layer tied to a channel "
    "together (BatchNorm, next conv, residual additions), so ResNets stay consistent. "
    "`tp.pruner.BasePruner` (MetaPruner) with L2 group-magnitude importance, the same "
    "channel ratio in every group, classifier ignored, a 400-step linear schedule stopped at "
    "the first step whose fvcore MACs are within the budget (torch-pruning's own "
    "prune-to-a-speed-up loop). Channel counts are integers shared by each residual group, "
    "so the model lands one rounding step under the budget (resnet8: 0.484 / 0.217 / 0.079 "
    "of the MACs for 50 / 25 / 10 %). Its models are thinner dense networks, not low-rank "
    "ones. On resnet8/mnist5k at 25 % with a 2-epoch fine-tune, per-layer L2 (0.981) beat "
    "per-layer Taylor (0.956), global L2 (0.956) and global Taylor (0.638), so L2 per layer "
    "is the row."
)
"""Peer note for the report (what the row is and what it cannot do)."""
DEFAULT_STEPS = 400
"""Iterative steps of the pruner (torch-pruning's benchmark default for a speed-up target)."""


def _classifier_name(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` of ``model`` (the classifier torch-pruning must keep)."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("no nn.Linear in the model: pass ignored= (the classifier) explicitly")
    return names[-1]


def _importance(name: str) -> Any:
    """torch-pruning's importance object for ``name`` (one of :data:`IMPORTANCES`)."""
    import torch_pruning as tp

    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "lamp":
        return tp.importance.LAMPImportance(p=2)
    if name == "fpgm":
        return tp.importance.FPGMImportance(p=2)
    raise ValueError(f"importance must be one of {IMPORTANCES}, not {name!r}")


def pruned_model(
    model: nn.Module,
    example_shape: tuple[int, ...],
    target_macs_ratio: float,
    *,
    importance: str = "l2",
    global_pruning: bool = False,
    ignored: Sequence[str | nn.Module] | None = None,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    iterative_steps: int = DEFAULT_STEPS,
    max_pruning_ratio: float = 0.9,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of ``model`` channel-wise until its fvcore MACs <= ``target_macs_ratio``.

    Args:
        model: Trained model (left untouched; a deep copy is pruned).
        example_shape: One input without the batch dimension, e.g. ``(1, 28, 28)``.
        target_macs_ratio: Target MACs as a share of the dense model's (0 < r < 1).
        importance: ``"l2"`` (default), ``"taylor"``, ``"lamp"`` or ``"fpgm"``.
        global_pruning: One channel ranking across all layers instead of a per-layer ratio.
        ignored: Layers never pruned (names in ``model`` or modules of ``model``); default
            the classifier (the last ``nn.Linear``).
        calibration: ``(images, labels)`` for ``"taylor"`` (a few batches are enough;
            at most 256 images are used per step).
        iterative_steps: Steps that spread a 100 % pruning ratio (the resolution).
        max_pruning_ratio: Largest share of any group's channels that may be removed.

    Returns:
        The pruned model (eval mode, BatchNorm statistics as pruned, not recalibrated) and
        an info dict: ``peer``, ``pruner``, ``importance``, ``global_pruning``, ``steps``
        (taken), ``pruning_ratio`` (the per-group channel ratio reached at the last step),
        ``macs`` / ``dense_macs`` / ``macs_ratio`` (fvcore), ``params_ratio``,
        ``channels`` (output channels of every pruned conv), ``seconds`` and ``note``.

    Raises:
        ValueError: bad ratio or importance, or ``"taylor"`` without calibration data.
        rankopt.BudgetError: the target is below what ``max_pruning_ratio`` allows.
    """
    import torch_pruning as tp

    if not 0.0 < target_macs_ratio < 1.0:
        raise ValueError(f"target_macs_ratio must be in (0, 1), got {target_macs_ratio}")
    if importance == "taylor" and calibration is None:
        raise ValueError("importance='taylor' needs calibration=(images, labels)")
    t0 = time.perf_counter()
    names = {m: n for n, m in model.named_modules()}
    ignored_names = [
        item if isinstance(item, str) else names[item]
        for item in (ignored if ignored is not None else [_classifier_name(model)])
    ]
    net = copy.deepcopy(model).eval()
    dense_macs = rankopt.count_macs(net, example_shape)
    dense_params = sum(p.numel() for p in net.parameters())
    target = target_macs_ratio * dense_macs
    example = torch.randn(1, *example_shape)
    imp = _importance(importance)
    pruner = tp.pruner.BasePruner(
        net,
        example,
        importance=imp,
        global_pruning=global_pruning,
        pruning_ratio=1.0,
        max_pruning_ratio=max_pruning_ratio,
        iterative_steps=iterative_steps,
        ignored_layers=[net.get_submodule(n) for n in ignored_names],
    )
    macs, last_params = dense_macs, dense_params
    while macs > target and pruner.current_step < iterative_steps:
        if importance == "taylor":
            assert calibration is not None
            images, labels = calibration
            net.zero_grad()
            loss = nn.functional.cross_entropy(net(images[:256]), labels[:256])
            loss.backward()
        pruner.step()
        n_params = sum(p.numel() for p in net.parameters())
        if n_params != last_params:  # most small steps remove no channel: no new count
            macs, last_params = rankopt.count_macs(net, example_shape), n_params
    net.zero_grad(set_to_none=True)
    if macs > target:
        raise rankopt.BudgetError(
            f"torch-pruning: {macs / dense_macs:.3f} of the dense MACs after every step "
            f"(max_pruning_ratio {max_pruning_ratio}), target {target_macs_ratio}"
        )
    step = pruner.current_step
    channels = {n: m.out_channels for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    info: dict[str, Any] = {
        "peer": f"torch-pruning {getattr(tp, '__version__', '?')}",
        "pruner": "torch_pruning.pruner.BasePruner (MetaPruner)",
        "importance": type(imp).__name__ + (" (p=2)" if importance != "taylor" else ""),
        "global_pruning": global_pruning,
        "steps": step,
        "pruning_ratio": round(float(pruner.per_step_pruning_ratio[step]), 4),
        "target_macs_ratio": target_macs_ratio,
        "macs": macs,
        "dense_macs": dense_macs,
        "macs_ratio": macs / dense_macs,
        "params_ratio": sum(p.numel() for p in net.parameters()) / dense_params,
        "channels": channels,
        "seconds": time.perf_counter() - t0,
    }
    info["note"] = (
        f"torch-pruning BasePruner, {info['importance']}, "
        f"{'global' if global_pruning else 'per-layer'} ratio, classifier ignored, "
        f"{step}/{iterative_steps} steps (channel ratio {info['pruning_ratio']:.3f}), "
        f"MACs {info['macs_ratio']:.3f} of dense"
    )
    return net.eval(), info


def _demo() -> int:
    """Smoke check: MACs <= target, finite output, accuracy before / after calibration."""
    from rankopt.data import load_data
    from rankopt.evaluators import compute_logits, evaluate_accuracy, full_finetune
    from rankopt.models import get_pretrained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    parser.add_argument("--importance", nargs="+", default=["l2"], choices=IMPORTANCES)
    parser.add_argument("--global-pruning", action="store_true")
    parser.add_argument("--finetune", type=int, default=0, help="fine-tune epochs (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_data(args.data)
    dense, _ = get_pretrained(args.model, args.data)
    dense.eval()
    shape = tuple(splits.train[0].shape[1:])
    calib = splits.train[0][:1024]
    teacher = compute_logits(dense, splits.train[0]) if args.finetune else None
    print(f"dense {args.model}/{args.data}: test {evaluate_accuracy(dense, *splits.test):.4f}")
    for imp in args.importance:
        for ratio in args.ratios:
            model, info = pruned_model(
                dense,
                shape,
                ratio,
                importance=imp,
                global_pruning=args.global_pruning,
                calibration=splits.train,
            )
            with torch.no_grad():
                finite = bool(torch.isfinite(model(splits.test[0][:64])).all())
            acc0 = evaluate_accuracy(model, *splits.test)
            rankopt.calibrate_bn(model, calib)
            acc1 = evaluate_accuracy(model, *splits.test)
            line = (
                f"{imp:6s} global={args.global_pruning!s:5s} target {ratio:.2f}: "
                f"macs {info['macs_ratio']:.4f} (<= target: {info['macs_ratio'] <= ratio}), "
                f"params {info['params_ratio']:.3f}, finite {finite}, acc {acc0:.4f}, "
                f"after BN calibration {acc1:.4f}, {info['seconds']:.1f}s, "
                f"steps {info['steps']}, channels {list(info['channels'].values())}"
            )
            if args.finetune:
                t0 = time.perf_counter()
                full_finetune(model, teacher, splits.train, epochs=args.finetune, seed=0)
                acc2 = evaluate_accuracy(model, *splits.test)
                line += f", after {args.finetune} ep fine-tune {acc2:.4f} "
                line += f"({time.perf_counter() - t0:.0f}s)"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_demo())
