"""The protocol every decomposition method implements, and the method registry."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from rankopt.errors import InvalidPlanError, UnknownNameError, UnsupportedLayerError
from rankopt.spaces._layer import LayerInfo

__all__ = [
    "DecompositionMethod",
    "Factors",
    "get_method",
    "list_methods",
    "register_method",
]

Factors = tuple[torch.Tensor, ...]
Ranks = Mapping[str, int]
Options = Mapping[str, Any]


class DecompositionMethod(abc.ABC):
    """One way of replacing a dense layer by a chain of smaller standard layers.

    Subclasses set :attr:`name` and :attr:`rank_names` and implement the abstract methods.
    ``n_params`` counts weights and biases of the built module exactly; ``macs`` counts its
    multiply-accumulates per image exactly as fvcore does (bias adds are not counted).
    Factors are computed in float64 and cached by :func:`rankopt.spaces.decompose`.

    A concrete subclass must also override :meth:`decompose` (no reusable basis, e.g. CP)
    or :meth:`decompose_from_basis` (with :meth:`cache_basis`), or both: each default is
    written in terms of the other, so a class that overrides neither raises ``TypeError``
    when it is defined.
    """

    name: ClassVar[str]
    rank_names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        abstract = any(
            getattr(getattr(cls, n, None), "__isabstractmethod__", False) for n in dir(cls)
        )
        if not abstract and not (
            _overrides(cls, "decompose") or _overrides(cls, "decompose_from_basis")
        ):
            raise TypeError(
                f"decomposition method class {cls.__qualname__} overrides neither decompose "
                "nor decompose_from_basis; it must override one of them (decompose for a "
                "method without a rank-independent basis, else cache_basis and "
                "decompose_from_basis)"
            )

    # ----------------------------------------------------------------- eligibility
    def unsupported_reason(self, layer: LayerInfo) -> str | None:
        """Why this method cannot be applied to ``layer``, or None when it can."""
        if not layer.eligible:
            return layer.reason
        if layer.kind != "conv2d":
            return f"{self.name} applies to Conv2d layers, not {layer.kind}"
        return None

    def supports(self, layer: LayerInfo) -> bool:
        """Whether this method can be applied to ``layer``."""
        return self.unsupported_reason(layer) is None

    def check_supported(self, layer: LayerInfo) -> None:
        """Raise :class:`UnsupportedLayerError` when ``layer`` is not supported."""
        reason = self.unsupported_reason(layer)
        if reason is not None:
            raise UnsupportedLayerError(f"layer {layer.name!r}: method {self.name!r}: {reason}")

    # ----------------------------------------------------------------- spaces
    def option_space(self, layer: LayerInfo) -> dict[str, list[Any]]:
        """Categorical options the search may choose per layer (e.g. GKPD factor shapes)."""
        return {}

    def default_options(self, layer: LayerInfo) -> dict[str, Any]:
        """Options used when a plan gives none."""
        return {}

    @abc.abstractmethod
    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """Full (largest meaningful) value of each rank; the smallest allowed is 1."""

    def validate(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> None:
        """Check ranks and options for ``layer``; raise with the layer, value and range."""
        self.check_supported(layer)
        options = self.resolve_options(layer, options)
        full = self.rank_space(layer, options)
        if set(ranks) != set(full):
            raise InvalidPlanError(
                f"layer {layer.name!r}: method {self.name!r} takes ranks "
                f"{sorted(full)}, got {sorted(ranks)}"
            )
        for key, value in ranks.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidPlanError(
                    f"layer {layer.name!r}: rank {key}={value!r} must be an integer "
                    f"in [1, {full[key]}]"
                )
            if not 1 <= value <= full[key]:
                raise InvalidPlanError(
                    f"layer {layer.name!r}: rank {key}={value} is out of range; "
                    f"allowed is [1, {full[key]}] for method {self.name!r}"
                )

    def resolve_options(self, layer: LayerInfo, options: Options | None) -> dict[str, Any]:
        """Defaults overlaid with ``options``; unknown or invalid values raise."""
        merged = self.default_options(layer)
        space = self.option_space(layer)
        for key, value in (options or {}).items():
            if key not in space:
                raise InvalidPlanError(
                    f"layer {layer.name!r}: method {self.name!r} has no option {key!r}; "
                    f"options are {sorted(space) or '(none)'}"
                )
            if value not in space[key]:
                raise InvalidPlanError(
                    f"layer {layer.name!r}: option {key}={value!r} is not allowed for method "
                    f"{self.name!r}; choose one of {space[key]}"
                )
            merged[key] = value
        return merged

    # ----------------------------------------------------------------- costs
    @abc.abstractmethod
    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """Parameters (weights + bias) of the module built at ``ranks``."""

    @abc.abstractmethod
    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """Multiply-accumulates per image of the module built at ``ranks``.

        Needs ``layer.input_hw`` / ``layer.output_hw`` (a profiled layer).
        """

    # ----------------------------------------------------------------- build
    def decompose(
        self, weight: torch.Tensor, layer: LayerInfo, ranks: Ranks, options: Options
    ) -> Factors:
        """Factors of ``weight`` (float64) at ``ranks``; not cached (see ``spaces.decompose``).

        The default truncates the rank-independent basis of :meth:`cache_basis` with
        :meth:`decompose_from_basis`; a method overrides either this (no reusable basis,
        e.g. CP) or those two.
        """
        if not _overrides(type(self), "decompose_from_basis"):
            raise NotImplementedError(
                f"method {getattr(self, 'name', '?')!r} ({type(self).__qualname__}) must override "
                "decompose or decompose_from_basis"
            )
        return self.decompose_from_basis(
            self.cache_basis(weight, layer, options), weight, layer, ranks, options
        )

    @abc.abstractmethod
    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """Build plain torch layers (float32) holding ``factors`` and the original bias."""

    def cache_basis(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> Any:  # pragma: no cover - default: no rank-independent basis
        """Rank-independent work (e.g. a full SVD) that ``decompose`` may reuse; None if none."""
        return None

    def decompose_from_basis(
        self,
        basis: Any,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Ranks,
        options: Options,
    ) -> Factors:
        """Factors at ``ranks`` from a basis made by :meth:`cache_basis` (cheap when cached).

        The default ignores ``basis`` and calls :meth:`decompose`.
        """
        if not _overrides(type(self), "decompose"):
            raise NotImplementedError(
                f"method {getattr(self, 'name', '?')!r} ({type(self).__qualname__}) must override "
                "decompose or decompose_from_basis"
            )
        return self.decompose(weight, layer, ranks, options)

    @abc.abstractmethod
    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """The dense weight (float64, ``layer.weight_shape``) the factors stand for.

        Used by :func:`rankopt.spaces.reconstruction_error`.
        """


def _overrides(cls: type[DecompositionMethod], name: str) -> bool:
    """Whether ``cls`` (or a base between it and DecompositionMethod) defines ``name``."""
    return getattr(cls, name) is not getattr(DecompositionMethod, name)


_REGISTRY: dict[str, DecompositionMethod] = {}

M = TypeVar("M", bound=type[DecompositionMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`DecompositionMethod` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"decomposition method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return deco


def get_method(name: str) -> DecompositionMethod:
    """The registered method called ``name``.

    Raises:
        UnknownNameError: no such method; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("method", name, _REGISTRY) from None


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_REGISTRY)
