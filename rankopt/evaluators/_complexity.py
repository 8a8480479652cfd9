"""Model complexity: per-layer profile (fvcore) and analytic cost of a plan."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from rankopt.errors import InvalidPlanError, ModelError
from rankopt.plan import CompressionPlan, model_fingerprint
from rankopt.spaces import LayerInfo, describe_layer, get_method

__all__ = ["Cost", "ModelProfile", "cost", "count_macs", "profile"]

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)
_CANDIDATE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.Linear,
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


@dataclass(frozen=True)
class Cost:
    """Analytic cost of a model.

    Attributes:
        macs: Multiply-accumulates per image (fvcore's flop unit).
        n_params: Parameter count.
    """

    macs: int
    n_params: int


@dataclass(frozen=True)
class ModelProfile:
    """Per-layer shapes and dense costs of a model, from one fvcore trace.

    Attributes:
        layers: One :class:`LayerInfo` per Conv2d / Linear layer, plus unsupported layers
            that hold parameters (``eligible`` False with the reason), in module order.
        macs: Total multiply-accumulates per image counted by fvcore.
        n_params: Total parameter count of the model.
        input_shape: Shape of one input image ``(C, H, W)``.
        fingerprint: :func:`rankopt.plan.model_fingerprint` of the model.
        skipped_ops: Ops fvcore could not count (name -> occurrences); their cost is not in
            ``macs``.
    """

    layers: tuple[LayerInfo, ...]
    macs: int
    n_params: int
    input_shape: tuple[int, ...]
    fingerprint: str
    skipped_ops: Mapping[str, int] = field(default_factory=dict)

    @property
    def eligible_layers(self) -> tuple[LayerInfo, ...]:
        """Layers at least one method other than ``keep`` may apply to."""
        return tuple(layer for layer in self.layers if layer.eligible)

    @property
    def ineligible_layers(self) -> tuple[LayerInfo, ...]:
        """Layers left dense, each with its reason."""
        return tuple(layer for layer in self.layers if not layer.eligible)

    def layer(self, name: str) -> LayerInfo:
        """The layer called ``name``.

        Raises:
            InvalidPlanError: no profiled layer has that name.
        """
        for info in self.layers:
            if info.name == name:
                return info
        raise InvalidPlanError(
            f"layer {name!r} is not a profiled layer of this model; layers are: "
            + ", ".join(info.name for info in self.layers[:12])
            + (" ..." if len(self.layers) > 12 else "")
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence fvcore's and the JIT tracer's warnings (they go in ``skipped_ops``)."""
    loggers = [logging.getLogger(n) for n in ("fvcore", "fvcore.nn.jit_analysis")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _example(model: nn.Module, example_input: torch.Tensor | tuple[int, ...]) -> torch.Tensor:
    if isinstance(example_input, torch.Tensor):
        x = example_input[:1] if example_input.dim() >= 2 else example_input.unsqueeze(0)
    else:
        try:
            shape = tuple(int(s) for s in example_input)
        except (TypeError, ValueError):
            raise ModelError(
                f"example input must be a tensor or a shape like (1, 28, 28), got {example_input!r}"
            ) from None
        if not shape or any(s <= 0 for s in shape):
            raise ModelError(f"input shape {shape} must be non-empty with positive sizes")
        x = torch.zeros((1, *shape))
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    return x.to(device)


def _flop_analysis(model: nn.Module, x: torch.Tensor) -> Any:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def count_macs(model: nn.Module, example_input: torch.Tensor | tuple[int, ...]) -> int:
    """Multiply-accumulates per image of ``model`` as fvcore counts them.

    Args:
        model: Any module.
        example_input: A batch (only its first item is used) or the shape of one image.

    Returns:
        fvcore's total (one multiply-add counts as one flop in fvcore).
    """
    x = _example(model, example_input)
    was_training = model.training
    model.eval()
    try:
        with _quiet(), torch.no_grad():
            return int(_flop_analysis(model, x).total())
    finally:
        model.train(was_training)


def profile(model: nn.Module, example_input: torch.Tensor | tuple[int, ...]) -> ModelProfile:
    """Profile a model: every Conv2d / Linear with its shapes and dense cost.

    Runs one forward pass with hooks (spatial sizes) and one fvcore trace (MACs).
    Layers that cannot be decomposed are listed with ``eligible=False`` and a reason:
    grouped / depthwise convs, modules reached under two names (shared), modules never
    called in the forward pass, and unsupported layer types that hold parameters
    (Conv1d, ConvTranspose2d, custom modules, ...).

    Args:
        model: The dense model.
        example_input: A batch (its first item is used) or the shape of one image
            ``(C, H, W)``.

    Returns:
        The :class:`ModelProfile`.

    Raises:
        ModelError: the model cannot run this input.
    """
    x = _example(model, example_input)
    names_of: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names_of.setdefault(id(module), []).append(name)

    candidates: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name or isinstance(module, _NORM_TYPES):
            continue
        if isinstance(module, _CANDIDATE_TYPES) or any(
            True
            for _ in module.parameters(recurse=False)  # custom modules with parameters
        ):
            candidates[name] = module

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def make_hook(name: str) -> Any:
        def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if name not in shapes and inputs and isinstance(inputs[0], torch.Tensor):
                out = output if isinstance(output, torch.Tensor) else None
                shapes[name] = (tuple(inputs[0].shape), tuple(out.shape) if out is not None else ())

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in candidates.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
        with _quiet(), torch.no_grad():
            analysis = _flop_analysis(model, x)
            total_macs = int(analysis.total())
            skipped = dict(analysis.unsupported_ops())
    except Exception as exc:  # any failure of the user's forward pass
        raise ModelError(
            f"the model cannot run an input of shape {tuple(x.shape)}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers: list[LayerInfo] = []
    for name, module in candidates.items():
        info = describe_layer(name, module)
        if name in shapes:
            in_shape, out_shape = shapes[name]
            if info.kind == "conv2d":
                info = info.with_spatial(
                    (in_shape[-2], in_shape[-1]), (out_shape[-2], out_shape[-1])
                )
            elif info.kind == "linear":
                positions = max(1, _numel(out_shape[1:]) // max(1, info.out_channels))
                info = info.with_spatial((1, positions), (1, positions))
        aliases = names_of.get(id(module), [name])
        if info.eligible and len(aliases) > 1:
            info = replace(
                info,
                eligible=False,
                reason=f"shared by {len(aliases)} parents ({', '.join(aliases)}): "
                "decomposing it would change every use",
            )
        elif info.eligible and name not in shapes:
            info = replace(info, eligible=False, reason="not called in the forward pass")
        layers.append(info)

    return ModelProfile(
        layers=tuple(layers),
        macs=total_macs,
        n_params=sum(p.numel() for p in model.parameters()),
        input_shape=tuple(x.shape[1:]),
        fingerprint=model_fingerprint(model),
        skipped_ops=skipped,
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def cost(profile: ModelProfile, plan: CompressionPlan) -> Cost:
    """Analytic cost of the model that :func:`rankopt.apply_plan` builds from ``plan``.

    Dense totals minus each planned layer's dense cost plus its method's analytic cost;
    equals fvcore's count of the built model (tested).

    Raises:
        InvalidPlanError: a planned layer is not in the profile, or its ranks are invalid.
    """
    macs = profile.macs
    n_params = profile.n_params
    for lp in plan.layers:
        if lp.method == "keep":
            continue
        info = profile.layer(lp.layer)
        method = get_method(lp.method)
        method.validate(info, lp.ranks, lp.options)
        macs += method.macs(info, lp.ranks, lp.options) - info.macs
        n_params += method.n_params(info, lp.ranks, lp.options) - info.n_params
    return Cost(macs=macs, n_params=n_params)
