"""User models: torchvision architectures or ``package.module:callable``, plus weights."""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankopt.errors import ModelError, first_line
from rankopt.models._registry import create_model, list_models

__all__ = ["load_state_dict_file", "load_user_model"]

_MAX_LISTED = 5


def load_user_model(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """Build a user's model and optionally load its weights.

    ``spec`` is one of:

    * a built-in model name (:func:`rankopt.models.list_models`), built randomly
      initialised with ``in_channels`` (default 1) and ``num_classes`` (default 10);
    * ``"package.module:callable"``: the module is imported and the callable is called
      with ``num_classes`` / ``in_channels`` as keyword arguments when given and accepted by
      its signature, else with no arguments; it must return an ``nn.Module``;
    * a torchvision architecture name (``torchvision.models.list_models()``), built with
      ``torchvision.models.get_model(spec, weights=None, num_classes=...)``.

    When ``in_channels`` is given and differs from the first convolution's input channels
    (and a callable did not take it), that convolution is replaced by a freshly initialised
    one with ``in_channels`` inputs (same kernel, stride, padding, dilation, bias). When
    weights are given, the first convolution takes the file's channel count instead, the
    weights are loaded, and only then is it folded to ``in_channels``: 3 -> 1 sums the
    kernel over the colour channels (the same output as the grey image repeated into RGB),
    1 -> 3 repeats it divided by 3 (the same output as the mean of the colour channels).

    Args:
        spec: The model, as above.
        weights: Path of a ``state_dict`` file (``torch.save(model.state_dict(), path)``;
            also a checkpoint dict holding it under ``"state_dict"``, ``"model_state_dict"``
            or ``"model"``, with an optional ``"module."`` prefix), or of a whole pickled
            ``nn.Module``. A state_dict is read with ``weights_only=True``; only a file
            that is not a plain state_dict is read with ``weights_only=False``, which runs
            pickled code: load only files you trust.
        num_classes: Number of output classes (None: the architecture's default).
        in_channels: Input channels of the data (None: keep the architecture's).

    Returns:
        The model, in eval mode.

    Raises:
        ModelError: the model cannot be built, ``num_classes`` / ``in_channels`` is < 1,
            the weights file is missing, unreadable or does not fit (missing / unexpected
            keys, shape mismatches are listed), or its first conv's channels are neither
            ``in_channels`` nor foldable to it (1 <-> 3).
    """
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ModelError(f"model {spec!r}: {key} = {value!r} must be an integer >= 1")
    if spec in list_models():
        model = create_model(spec, in_channels=in_channels or 1, num_classes=num_classes or 10)
    elif ":" in spec:
        model = _from_callable(spec, num_classes=num_classes, in_channels=in_channels)
    else:
        model = _from_torchvision(spec, num_classes=num_classes)
    state = load_state_dict_file(weights) if weights is not None else None
    file_channels = _first_conv_channels(model, state) if state is not None else None
    if file_channels is not None or in_channels is not None:
        _adapt_in_channels(model, file_channels or in_channels or 1, spec)
    if state is not None:
        _load_checked(model, state, path=os.fspath(weights or ""), spec=spec)
        if in_channels is not None and file_channels is not None:
            _fold_in_channels(model, in_channels, spec)
    return model.eval()


# ---------------------------------------------------------------------- building
def _from_callable(spec: str, *, num_classes: int | None, in_channels: int | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelError(f"model {spec!r}: expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(
            f"model {spec!r}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelError(
                f"model {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(target):
        raise ModelError(f"model {spec!r}: {attr!r} is a {type(target).__name__}, not callable")
    kwargs: dict[str, int] = {}
    try:
        params = inspect.signature(target).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, var_kw = {}, False  # type: ignore[assignment]
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None and (key in params or var_kw):
            kwargs[key] = value
    try:
        model = target(**kwargs)
    except Exception as exc:
        raise ModelError(
            f"model {spec!r}: calling {attr}({_fmt_kwargs(kwargs)}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _fmt_kwargs(kwargs: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _from_torchvision(spec: str, *, num_classes: int | None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if spec not in available:
        raise ModelError(
            f"model {spec!r} is not a built-in model ({', '.join(list_models())}), not a "
            f"torchvision architecture (see torchvision.models.list_models(), e.g. resnet18) "
            f"and not of the form 'package.module:callable'"
        )
    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model: nn.Module = torchvision.models.get_model(spec, **kwargs)
    except Exception as exc:
        raise ModelError(
            f"torchvision model {spec!r} cannot be built with "
            f"{_fmt_kwargs(kwargs)}: {type(exc).__name__}: {exc}"
        ) from exc
    return model


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``Conv2d`` in module order and its name; None when there is none."""
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _first_conv_channels(model: nn.Module, state: Mapping[str, torch.Tensor]) -> int | None:
    """Input channels of the model's first conv in a state_dict (None: not in the file)."""
    found = _first_conv(model)
    weight = state.get(f"{found[0]}.weight") if found is not None else None
    if weight is None or weight.dim() != 4 or found is None:
        return None
    return int(weight.shape[1]) * found[1].groups


def _fold_in_channels(model: nn.Module, in_channels: int, spec: str) -> None:
    """Fold the loaded first conv's kernel to ``in_channels`` inputs (1 <-> 3 only)."""
    found = _first_conv(model)
    if found is None or found[1].in_channels == in_channels:
        return
    name, conv = found
    have = conv.in_channels
    if {have, in_channels} != {1, 3}:
        raise ModelError(
            f"model {spec!r}: its weights' first conv {name!r} takes {have} input channels "
            f"and the data has {in_channels}; only 3 -> 1 (grey images) and 1 -> 3 are "
            f"folded: give data with {have} channels"
        )
    weight = conv.weight.detach()
    folded = weight.sum(dim=1, keepdim=True) if in_channels == 1 else weight.repeat(1, 3, 1, 1) / 3
    new = _adapt_in_channels(model, in_channels, spec)
    if new is not None:
        with torch.no_grad():
            new.weight.copy_(folded)
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)


def _adapt_in_channels(model: nn.Module, in_channels: int, spec: str) -> nn.Conv2d | None:
    """Replace the first Conv2d (module order) by one with ``in_channels`` inputs if needed;
    returns the new conv (None when nothing was replaced)."""
    for name, child in model.named_modules():
        if not isinstance(child, nn.Conv2d):
            continue
        if child.in_channels == in_channels:
            return None
        if child.groups != 1:
            raise ModelError(
                f"model {spec!r}: its first conv {name!r} has groups="
                f"{child.groups}; cannot adapt it to {in_channels} input channels"
            )
        new = nn.Conv2d(
            in_channels,
            child.out_channels,
            child.kernel_size,  # type: ignore[arg-type]
            stride=child.stride,  # type: ignore[arg-type]
            padding=child.padding,  # type: ignore[arg-type]
            dilation=child.dilation,  # type: ignore[arg-type]
            bias=child.bias is not None,
            padding_mode=child.padding_mode,
        ).to(device=child.weight.device, dtype=child.weight.dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        return new
    return None  # no Conv2d at all (e.g. an MLP): nothing to adapt


# ---------------------------------------------------------------------- weights
def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a weights file: a state_dict, a checkpoint dict holding one, or a pickled module.

    Args:
        path: The file.

    Returns:
        The state_dict (``"module."`` prefixes of DataParallel removed).

    Raises:
        ModelError: the file is missing, unreadable, or holds no state_dict.
    """
    p = Path(path).expanduser()
    text = os.fspath(path)
    if not p.exists():
        raise ModelError(f"weights file {text!r} does not exist")
    if not p.is_file():
        raise ModelError(f"weights file {text!r} is not a regular file")
    obj: Any
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as safe_exc:
        # not a plain state_dict: maybe a whole pickled nn.Module (trusted files only)
        try:
            obj = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelError(
                f"weights file {text!r} cannot be read: {first_line(safe_exc)}"
                f" / {type(exc).__name__}: {first_line(exc)}"
            ) from exc
    except Exception as exc:
        raise ModelError(
            f"weights file {text!r} cannot be read: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                obj = inner.state_dict()
                break
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ModelError(
            f"weights file {text!r} holds a {type(obj).__name__}, not a "
            f"state_dict (a mapping of parameter names to tensors) or nn.Module"
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"({len(keys)}) {shown}{more}"


def _load_checked(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, path: str, spec: str
) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if mismatched:
        problems.append(
            f"shape mismatch on key {'; on key '.join(mismatched[:_MAX_LISTED])}"
            + (f" ({len(mismatched)} keys in all)" if len(mismatched) > 1 else "")
        )
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if problems:
        raise ModelError(
            f"weights file {path!r} does not fit model {spec!r}: " + "; ".join(problems)
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"weights file {path!r} does not fit model {spec!r}: {first_line(exc)}"
        ) from exc
