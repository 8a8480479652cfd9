"""Layer-local sensitivity scores: the output KL predicted from one layer's output error.

Decomposing layer ``L`` changes its output on image ``n`` by ``delta_n``. To second order,
the KL divergence of the network's softmax output from the dense one is

    ``KL_n ~ 1/2 * delta_n^T F_n delta_n``,  ``F_n = sum_y p_y g_y g_y^T``

where ``p`` is the dense model's output distribution on image ``n`` and
``g_y = d log p_y / d y_L`` is the gradient of the log-probability of class ``y`` with
respect to the layer's output (``F_n`` is the Fisher information of the output at ``y_L``).
So one forward pass that keeps every layer's input and output, and one backward pass per
class kept, give each layer everything its points need: a point costs one forward of the
*layer* on the kept inputs, not two of the network. The profile then grows linearly with the
layers instead of as layers x network (issue 36).

Checked against the network-output KL in ``benchmarks/BENCHMARKS_SCALE.md`` (Spearman over
the profile's points and over random plans). The classes kept per image are its
:data:`FISHER_CLASSES` most probable ones (keeping all 10 of a 10-class model changed the
plan-level Spearman by 0.004). The output change is scored raw: removing its per-channel mean
where a BatchNorm follows (what BN re-calibration absorbs) ranked plans slightly worse
(Spearman vs the plans' KL 0.775 instead of 0.797 on resnet8 / mnist5k), so it is not done.

Memory: the inputs, outputs and per-class gradients of the layers of one *group* are held at
once; layers are grouped so that a group holds at most :data:`CAPTURE_BYTES`, and each group
costs one forward and :data:`FISHER_CLASSES` backward passes over the profile's images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CAPTURE_BATCH",
    "CAPTURE_BYTES",
    "FISHER_CLASSES",
    "LayerCapture",
    "capture_groups",
    "capture_layers",
    "local_score",
]

FISHER_CLASSES = 4
"""Most probable classes per image whose gradients make the Fisher information."""
CAPTURE_BYTES = 768 * 2**20
"""Most bytes of captured tensors (inputs, outputs, gradients) held at once (768 MiB)."""
CAPTURE_BATCH = 32
"""Images per forward / backward pass while capturing (bounds the autograd graph)."""
_FLOAT_BYTES = 4


@dataclass(frozen=True)
class LayerCapture:
    """What one layer's points are scored with.

    Attributes:
        inputs: ``(N, ...)`` the dense layer's input on the profile images (float32).
        outputs: ``(N, ...)`` its dense output.
        grads: ``(J, N, ...)``: ``sqrt(p_y) * d log p_y / d output`` for the ``J`` most
            probable classes ``y`` of each image.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor
    grads: torch.Tensor


def _layer_bytes(names: Sequence[str], sizes: dict[str, tuple[int, int]]) -> int:
    """Bytes one image's capture of ``names`` holds (input, output and the gradients)."""
    return sum((sizes[n][0] + (1 + FISHER_CLASSES) * sizes[n][1]) * _FLOAT_BYTES for n in names)


def _io_sizes(
    model: nn.Module, names: Sequence[str], image: torch.Tensor
) -> dict[str, tuple[int, int]]:
    """Per layer ``(input numel, output numel)`` of one image (one forward pass)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name in names:

        def hook(
            _m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor, n: str = name
        ) -> None:
            sizes[n] = (args[0][0].numel(), out[0].numel())

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(image[:1])
    finally:
        for h in hooks:
            h.remove()
    return sizes


def capture_groups(
    model: nn.Module,
    names: Sequence[str],
    images: torch.Tensor,
    *,
    limit_bytes: int = CAPTURE_BYTES,
) -> list[list[str]]:
    """Split ``names`` (in order) into groups whose captures each fit ``limit_bytes``.

    A layer that alone exceeds the limit is a group of its own.
    """
    sizes = _io_sizes(model, names, images)
    n = int(images.shape[0])
    groups: list[list[str]] = []
    current: list[str] = []
    for name in names:
        if name not in sizes:  # never called in a forward pass: scored elsewhere
            continue
        if current and _layer_bytes([*current, name], sizes) * n > limit_bytes:
            groups.append(current)
            current = []
        current.append(name)
    if current:
        groups.append(current)
    return groups


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def capture_layers(
    model: nn.Module, names: Sequence[str], images: torch.Tensor
) -> dict[str, LayerCapture]:
    """One forward and :data:`FISHER_CLASSES` backward passes per batch over ``images``.

    Args:
        model: The dense model in eval mode (left untouched; no parameter gradient is made).
        names: Layers to capture.
        images: The profile's images (on the model's device).

    Returns:
        ``name -> LayerCapture``. A layer called more than once per forward pass (a shared
        module) is left out: its points are scored by the network-output KL instead.
    """
    ins: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    outs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    grads: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    calls: dict[str, int] = {}
    live: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(
            _m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor, n: str = name
        ) -> None:
            calls[n] = calls.get(n, 0) + 1
            ins[n].append(args[0].detach())
            outs[n].append(out.detach())
            live[n] = out

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for part in _batches(int(images.shape[0]), CAPTURE_BATCH):
            live.clear()
            x = images[part].detach().requires_grad_(True)
            with torch.enable_grad():
                logp = F.log_softmax(model(x).double(), dim=1)
                k = min(FISHER_CLASSES, logp.shape[1])
                top_logp, top = logp.detach().topk(k, dim=1)
                weights = (top_logp.exp()).sqrt()
                order = [n for n in names if n in live]
                per_class: list[tuple[torch.Tensor, ...]] = []
                for j in range(k):
                    picked = logp.gather(1, top[:, j : j + 1]).squeeze(1)
                    per_class.append(
                        torch.autograd.grad(
                            (weights[:, j] * picked).sum(),
                            [live[n] for n in order],
                            retain_graph=j < k - 1,
                            allow_unused=True,
                        )
                    )
            for i, n in enumerate(order):
                grads[n].append(
                    torch.stack(
                        [
                            torch.zeros_like(live[n]) if g[i] is None else g[i].detach().float()
                            for g in per_class
                        ]
                    )
                )
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    n_batches = -(-int(images.shape[0]) // CAPTURE_BATCH)
    return {
        n: LayerCapture(
            inputs=torch.cat(ins[n]),
            outputs=torch.cat(outs[n]),
            grads=torch.cat(grads[n], dim=1),
        )
        for n in names
        if calls.get(n, 0) == n_batches and len(grads[n]) == n_batches
    }


def local_score(capture: LayerCapture, module: nn.Module) -> float:
    """Predicted mean KL (nats per image) of replacing the layer by ``module``.

    ``1/2 * mean_n sum_j (g_jn . delta_n)^2`` with ``delta = module(inputs) - outputs``.
    """
    with torch.no_grad():
        delta = torch.cat(
            [
                module(capture.inputs[part]) - capture.outputs[part]
                for part in _batches(int(capture.inputs.shape[0]), 128)
            ]
        ).double()
        n = delta.shape[0]
        flat = delta.reshape(n, -1)
        g = capture.grads.reshape(capture.grads.shape[0], n, -1).double()
        dots = (g * flat[None]).sum(dim=2)  # (J, N)
        return float(0.5 * (dots**2).sum(dim=0).mean())
