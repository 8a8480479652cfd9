"""The built-in model registry (``register_model`` / ``create_model`` / ``list_models``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import nn

from rankopt.errors import ModelError, UnknownNameError

__all__ = ["ModelFactory", "create_model", "list_models", "register_model"]


class ModelFactory(Protocol):
    """A callable that builds a fresh model for a number of input channels and classes."""

    def __call__(self, *, in_channels: int, num_classes: int) -> nn.Module:  # pragma: no cover
        """Build the model."""
        ...


_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register a model factory under ``name`` (like timm's ``register_model``).

    The factory is called with keyword arguments ``in_channels`` and ``num_classes`` and
    must return a new :class:`torch.nn.Module` each time.

    Args:
        name: Registry name, e.g. ``"resnet20"``.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def create_model(name: str, *, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a new, randomly initialised built-in model.

    Args:
        name: A registered model name (see :func:`list_models`).
        in_channels: Number of input image channels (1 for MNIST / digits).
        num_classes: Number of output logits.

    Returns:
        The model, in training mode.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the registered ones.
        ModelError: ``in_channels`` or ``num_classes`` is not a positive integer.
    """
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError("model", name, _REGISTRY) from None
    for arg, value, low in (("in_channels", in_channels, 1), ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelError(
                f"{arg}={value!r} is not allowed for model {name!r}; it must be an integer >= {low}"
            )
    return factory(in_channels=in_channels, num_classes=num_classes)


def list_models() -> list[str]:
    """Names of all registered built-in models, sorted."""
    return sorted(_REGISTRY)
