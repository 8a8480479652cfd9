"""Applying a plan to its model: prune the channel groups, then decompose the layers."""

from __future__ import annotations

from torch import nn

from rankopt.errors import InvalidPlanError
from rankopt.plan._plan import CompressionPlan, model_fingerprint
from rankopt.pruning import prune_model

__all__ = ["apply_plan"]


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def apply_plan(
    model: nn.Module, plan: CompressionPlan, *, check_fingerprint: bool = True
) -> nn.Module:
    """Build the compressed model described by ``plan``.

    The input model is left untouched: it is deep-copied, the copy's channel groups in
    ``plan.pruning`` are pruned (torch-pruning), and each planned layer of the copy is
    replaced by the method's module (plain torch layers) initialised from the decomposed
    (pruned) dense weights. Layers the plan does not list, and ``keep`` layers, stay as they
    are.

    Args:
        model: The dense model the plan was made for.
        plan: The plan.
        check_fingerprint: Reject a plan whose fingerprint differs from the model's.

    Returns:
        The compressed model, in the mode (train / eval) of ``model``.

    Raises:
        InvalidPlanError: the plan was made for another model (fingerprint, missing layer or
            weight-shape mismatch; the message names the layer and both shapes) or a rank is
            out of range.
    """
    from rankopt.spaces import build_module, describe_layer

    fingerprint = model_fingerprint(model)
    if check_fingerprint and plan.fingerprint != fingerprint:
        _raise_mismatch(model, plan, fingerprint)
    compressed = prune_model(model, plan.input_shape, plan.pruning)
    modules = dict(compressed.named_modules())
    built: list[tuple[str, nn.Module]] = []
    for lp in plan.layers:
        module = modules.get(lp.layer)
        if module is None:
            candidates = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
            raise InvalidPlanError(
                f"plan layer {lp.layer!r} is not in the model; its conv/linear layers are: "
                f"{', '.join(candidates[:12])}{' ...' if len(candidates) > 12 else ''}"
            )
        weight = getattr(module, "weight", None)
        shape = tuple(weight.shape) if weight is not None else ()
        if lp.weight_shape and shape != tuple(lp.weight_shape):
            raise InvalidPlanError(
                f"layer {lp.layer!r}: plan was made for weight shape {tuple(lp.weight_shape)} "
                f"but the model's weight has shape {shape}"
            )
        if lp.method == "keep":
            continue
        info = describe_layer(lp.layer, module)
        built.append((lp.layer, build_module(module, info, lp.method, lp.ranks, lp.options)))
    for name, new in built:
        _set_submodule(compressed, name, new)
    compressed.train(model.training)
    return compressed


def _raise_mismatch(model: nn.Module, plan: CompressionPlan, fingerprint: str) -> None:
    modules = dict(model.named_modules())
    for lp in plan.layers:
        module = modules.get(lp.layer)
        weight = getattr(module, "weight", None) if module is not None else None
        if weight is None:
            raise InvalidPlanError(
                f"plan is for model {plan.model_name!r} (fingerprint {plan.fingerprint}), not "
                f"this one ({fingerprint}): layer {lp.layer!r} is not in this model"
            )
        if lp.weight_shape and tuple(weight.shape) != tuple(lp.weight_shape):
            raise InvalidPlanError(
                f"plan is for model {plan.model_name!r} (fingerprint {plan.fingerprint}), not "
                f"this one ({fingerprint}): layer {lp.layer!r} has weight shape "
                f"{tuple(weight.shape)} here but {tuple(lp.weight_shape)} in the plan"
            )
    raise InvalidPlanError(
        f"plan is for model {plan.model_name!r} with fingerprint {plan.fingerprint}, but this "
        f"model's fingerprint is {fingerprint} (parameter names or shapes differ)"
    )
