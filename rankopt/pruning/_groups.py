"""Coupled channel groups of a model, and pruned copies of it (torch-pruning's DependencyGraph).

Removing output channel ``i`` of a conv also removes channel ``i`` of its BatchNorm, input
channel ``i`` of every layer that reads it, and, across a residual addition, channel ``i`` of
every conv or shortcut that feeds the same sum. torch-pruning's ``DependencyGraph`` (Fang et
al., "DepGraph", CVPR 2023) traces the model once and gives each such coupled set as one
*group*; rankopt names a group by its first producer (a layer losing output channels) in the
model's module order, ranks its channels once by torch-pruning's L2 group magnitude
(data-free, so every worker agrees) and keeps the most important ones.

Nothing here is written by hand that torch-pruning does: the graph, the coupling and the
surgery are its; this module only names groups, ranks channels and validates requests.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rankopt._optional import try_import
from rankopt.errors import InvalidPlanError, ModelError
from rankopt.spaces import round_rank

__all__ = [
    "KEEP_FRACTIONS",
    "ChannelGroup",
    "ChannelPruner",
    "ChannelPruning",
    "prune_model",
]

KEEP_FRACTIONS: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
"""Shares of a group's channels the search may keep (rounded to the rank multiple)."""


@dataclass(frozen=True)
class ChannelPruning:
    """One pruned channel group of a plan.

    Attributes:
        group: The group's name: its first producer layer in module order
            (``"layer1.0.conv1"``).
        n_channels: The group's channel count in the dense model.
        kept: The dense channel indices that stay, increasing.
    """

    group: str
    n_channels: int
    kept: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"group": self.group, "n_channels": self.n_channels, "kept": list(self.kept)}

    def summary(self) -> str:
        """Short text such as ``prune(24/32)``."""
        return f"prune({len(self.kept)}/{self.n_channels})"


@dataclass(frozen=True)
class ChannelGroup:
    """Layers that must lose the same channels.

    Attributes:
        name: The first producer in module order (the group's name in plans and trials).
        n_channels: Channels of the group in the dense model.
        producers: Conv / Linear layers that lose output channels.
        consumers: Conv / Linear layers that lose input channels.
        order: Channel indices, most important first (L2 group magnitude).
    """

    name: str
    n_channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    order: tuple[int, ...]

    def kept(self, n: int) -> tuple[int, ...]:
        """The ``n`` most important channels, increasing."""
        if not 1 <= n <= self.n_channels:
            raise InvalidPlanError(
                f"channel group {self.name!r}: cannot keep {n} channels; it has "
                f"{self.n_channels}, so 1..{self.n_channels} are allowed"
            )
        return tuple(sorted(self.order[:n]))

    def counts(self, multiple: int = 1) -> tuple[int, ...]:
        """Channel counts the search offers, largest (dense) first: :data:`KEEP_FRACTIONS` of
        the group, rounded to ``multiple``."""
        out: list[int] = []
        for fraction in KEEP_FRACTIONS:
            n = round_rank(round(fraction * self.n_channels), multiple, self.n_channels)
            if n not in out:
                out.append(n)
        return tuple(out)

    def pruning(self, n: int) -> ChannelPruning:
        """The plan entry keeping ``n`` channels."""
        return ChannelPruning(self.name, self.n_channels, self.kept(n))


def _tp() -> Any:
    return try_import("torch_pruning", extra="prune", needed_for="channel pruning")


def _output_layers(model: nn.Module, input_shape: Sequence[int]) -> list[nn.Module]:
    """Layers whose output channels are the model's outputs: the last ``Linear`` (the
    classifier) and any conv / linear whose output tensor is the model's output (shares its
    storage, e.g. through a flatten); their channels are never pruned."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    outputs: dict[nn.Module, torch.Tensor] = {}  # held, so no storage is reused meanwhile

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs[module] = output

    layers: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        out = _forward_zeros(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    outs = [out] if isinstance(out, torch.Tensor) else []
    out_ptrs = {o.untyped_storage().data_ptr() for o in outs}
    ignored = [m for m, o in outputs.items() if o.untyped_storage().data_ptr() in out_ptrs]
    if linears and linears[-1] not in ignored:
        ignored.append(linears[-1])
    return ignored


def _graph(model: nn.Module, input_shape: Sequence[int]) -> Any:
    tp = _tp()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros((1, *input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():  # it traces the autograd graph
            warnings.simplefilter("ignore")  # its notes on parameters outside layers
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # torch-pruning's tracer meets many kinds of user code
        raise ModelError(
            f"torch-pruning cannot trace this model's channel dependencies "
            f"({type(exc).__name__}: {str(exc)[:200]}); search without channel pruning "
            "(prune=False, --no-prune)"
        ) from exc
    finally:
        model.train(was_training)


def _grouped(module: nn.Module) -> bool:
    """A conv with groups that is not depthwise (groups == in == out channels)."""
    if not isinstance(module, nn.Conv2d) or module.groups == 1:
        return False
    return not module.groups == module.in_channels == module.out_channels


def _forward_zeros(model: nn.Module, input_shape: Sequence[int]) -> Any:
    """The model's output for one zero image, in eval mode without gradients (its mode is
    restored)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)


def _output_shape(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """Shape of the model's output for one zero image (None when it is not a tensor)."""
    out = _forward_zeros(model, input_shape)
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


def _prune_fn(module: nn.Module) -> Any:
    tp = _tp()
    return (
        tp.prune_linear_out_channels
        if isinstance(module, nn.Linear)
        else (tp.prune_conv_out_channels)
    )


class ChannelPruner:
    """The channel groups of one dense model, and pruned copies of it.

    Args:
        model: The dense model (left untouched).
        input_shape: Shape of one input image ``(C, H, W)``.

    Attributes:
        groups: The prunable groups by name, in module order: every coupled group whose
            producers are plain convs or linears, the model's outputs excluded (the
            classifier's, or a last conv's).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        tp = _tp()
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        graph = _graph(model, self.input_shape)
        names = {m: n for n, m in model.named_modules()}
        position = {n: i for i, n in enumerate(names.values())}
        importance = tp.importance.GroupMagnitudeImportance(p=2)
        found: dict[str, ChannelGroup] = {}
        for group in graph.get_all_groups(
            ignored_layers=_output_layers(model, self.input_shape),
            root_module_types=(nn.Conv2d, nn.Linear),
        ):
            producers: list[str] = []
            consumers: list[str] = []
            if any(_grouped(item.dep.target.module) for item in group):
                continue  # torch-pruning's grouped convs can break (depthwise ones do not)
            for item in group:
                module = item.dep.target.module
                if not isinstance(module, nn.Conv2d | nn.Linear) or module not in names:
                    continue
                handler = getattr(item.dep.handler, "__name__", "")
                (producers if handler == "prune_out_channels" else consumers).append(names[module])
            if not producers:
                continue
            producers.sort(key=position.__getitem__)
            n = len(group[0].idxs)
            with torch.no_grad():
                scores = importance(group)
            if scores is None:
                continue
            order = tuple(int(i) for i in torch.argsort(scores, descending=True, stable=True))
            consumers.sort(key=position.__getitem__)
            found[producers[0]] = ChannelGroup(
                producers[0], n, tuple(producers), tuple(consumers), order
            )
        self.groups: dict[str, ChannelGroup] = dict(
            sorted(found.items(), key=lambda kv: position[kv[0]])
        )
        self.dropped: dict[str, str] = {}
        """Groups torch-pruning found but could not prune into a working model, and why."""
        if not self.groups:
            return
        dense_shape = _output_shape(model, self.input_shape)
        if self._fails(list(self.groups.values()), dense_shape):
            for name, group in list(self.groups.items()):
                reason = self._fails([group], dense_shape)
                if reason:
                    del self.groups[name]
                    self.dropped[name] = reason

    def _fails(self, groups: Sequence[ChannelGroup], dense_shape: tuple[int, ...] | None) -> str:
        """Why pruning ``groups`` to a quarter of their channels does not give a model with
        the dense model's output shape ("" when it does)."""
        entries = [g.pruning(max(1, g.n_channels // 4)) for g in groups]
        try:
            pruned = prune_model(self.model, self.input_shape, entries)
            out_shape = _output_shape(pruned, self.input_shape)
        except Exception as exc:  # torch-pruning mis-handles some layers (grouped convs)
            return f"{type(exc).__name__}: {str(exc)[:120]}"
        if out_shape != dense_shape:
            return f"output shape {out_shape} instead of {dense_shape}"
        return ""

    def entries(self, channels: Mapping[str, int]) -> tuple[ChannelPruning, ...]:
        """Plan entries keeping ``channels[group]`` channels of each named group (groups
        at their full count are left out).

        Raises:
            InvalidPlanError: an unknown group or a count out of range.
        """
        out = []
        for name, n in channels.items():
            group = self.groups.get(name)
            if group is None:
                raise InvalidPlanError(
                    f"{name!r} is not a prunable channel group of this model; its groups are "
                    f"{', '.join(self.groups) or '(none)'}"
                )
            if n != group.n_channels:
                out.append(group.pruning(int(n)))
        return tuple(sorted(out, key=lambda e: list(self.groups).index(e.group)))

    def prune(self, channels: Mapping[str, int]) -> nn.Module:
        """A pruned copy of the model keeping ``channels[group]`` of each named group."""
        return prune_model(self.model, self.input_shape, self.entries(channels))


def prune_model(
    model: nn.Module, input_shape: Sequence[int], pruning: Sequence[ChannelPruning]
) -> nn.Module:
    """A copy of ``model`` with the channels of each entry's group removed but ``kept``.

    Args:
        model: The dense model (left untouched).
        input_shape: Shape of one input image ``(C, H, W)``.
        pruning: The plan's entries (an empty sequence gives a plain copy).

    Raises:
        InvalidPlanError: an entry's group is not a layer of the model, its channel count
            differs from the model's, or its kept indices are empty, repeated or out of range.
    """
    pruned = copy.deepcopy(model)
    if not pruning:
        return pruned
    graph = _graph(pruned, input_shape)
    for entry in pruning:
        try:
            module = pruned.get_submodule(entry.group)
        except AttributeError:
            raise InvalidPlanError(
                f"pruning group {entry.group!r} is not a layer of the model"
            ) from None
        if not isinstance(module, nn.Conv2d | nn.Linear):
            raise InvalidPlanError(
                f"pruning group {entry.group!r} is a {type(module).__name__}; a group is "
                "named by a Conv2d or Linear layer"
            )
        n = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        kept = set(entry.kept)
        if (
            n != entry.n_channels
            or not kept
            or len(kept) != len(entry.kept)
            or not kept <= set(range(n))
        ):
            raise InvalidPlanError(
                f"pruning group {entry.group!r}: kept = {list(entry.kept)[:8]}... of "
                f"n_channels = {entry.n_channels}, but the layer has {n} output channels; "
                f"kept must be distinct indices in 0..{n - 1}, at least one"
            )
        removed = sorted(set(range(n)) - kept)
        if removed:
            group = graph.get_pruning_group(module, _prune_fn(module), idxs=removed)
            group.prune()
    return pruned
