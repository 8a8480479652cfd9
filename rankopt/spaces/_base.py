"""The protocol every decomposition method implements, and the method registry."""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from rankopt.errors import InvalidPlanError, UnknownNameError, UnsupportedLayerError
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._rounding import ranks_at_fraction

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

    Subclasses set :attr:`rank_names` (``register_method`` sets :attr:`name`) and implement
    the abstract methods; :attr:`label`, :attr:`abbreviation` and :attr:`color` say how
    reports and figures show the method (label and abbreviation default to the name).
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
    spatial: ClassVar[bool] = False
    """Whether the method factorises the kernel's spatial axes (Tucker-2, CP, spatial SVD,
    GKPD): on a 1x1 conv it then reduces to channel SVD, so the search does not offer it."""
    vbmf_seed: ClassVar[int] = 0
    """Preference of Kim et al.'s recipe (the search's ``vbmf`` seed) for this method: it
    takes, per layer, the offered method with the highest value (0: never). Tucker-2 (2) on
    kxk convs, channel SVD (1) on 1x1 convs, SVD (1) on linear layers."""
    #: False when the built module's CPU latency does not follow its MACs (measured in
    #: ``benchmarks/bench_modules.py``); per runtime see :meth:`latency_friendly_on`.
    latency_friendly: ClassVar[bool] = True
    #: Runtimes (by name, e.g. ``"onnxruntime"``) on which the module's latency follows its
    #: MACs even where :attr:`latency_friendly` is False. Runtime code lives in
    #: :mod:`rankopt.latency`; a method only names the runtimes.
    latency_friendly_runtimes: ClassVar[frozenset[str]] = frozenset()
    #: Human-readable name in legends and reports, e.g. ``"Tucker-2"``.
    label: ClassVar[str] = ""
    #: Short name in per-layer summaries, e.g. ``"T2"`` in ``T2(4,8)``.
    abbreviation: ClassVar[str] = ""
    #: Colour in figures (CSS, e.g. ``"#1f77b4"``); ``""`` lets the figures pick one.
    color: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        abstract = any(getattr(getattr(cls, n, None), "__isabstractmethod__", 0) for n in dir(cls))
        if not (
            abstract or _overrides(cls, "decompose") or _overrides(cls, "decompose_from_basis")
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

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]] | None:
        """What VBMF reads to estimate this method's ranks: per rank name, the matrices
        whose EVBMF ranks (their maximum) estimate it; None when VBMF does not apply.

        Args:
            weight: The dense weight in float64 (``layer.weight_shape``).
            layer: The layer.
            options: Resolved method options.
        """
        return None

    @property
    def supports_vbmf(self) -> bool:
        """Whether :meth:`vbmf_matrices` is implemented (VBMF can estimate the ranks)."""
        return type(self).vbmf_matrices is not DecompositionMethod.vbmf_matrices

    def offered_for(self, layer: LayerInfo) -> bool:
        """Whether the search offers this method on ``layer`` (it may still be applied).

        A spatial method on a 1x1 conv is the same matrix factorisation as channel SVD;
        only one of them is offered.
        """
        return not (self.spatial and layer.kernel_size == (1, 1))

    def latency_friendly_on(self, runtime: str) -> bool:
        """Whether the module's latency follows its MACs on ``runtime`` (a name in
        ``rankopt.latency.RUNTIMES``): a search with a latency table measured there offers
        the method, and the table times it, only then. Default: :attr:`latency_friendly`,
        or the runtime is one of :attr:`latency_friendly_runtimes`."""
        return self.latency_friendly or runtime in self.latency_friendly_runtimes

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

    def rank_path(
        self, layer: LayerInfo, options: Options | None = None, *, max_points: int = 48
    ) -> list[dict[str, int]]:
        """Ranks from smallest to full along one line: every rank at the same fraction f.

        Tying the rank names to one fraction keeps multi-rank methods balanced (Tucker-2's
        ``r_in`` and ``r_out`` shrink together instead of giving lopsided pairs such as
        (52, 14)). The fractions step through the ranks of the largest rank name, every one
        of them up to ``max_points``, else geometrically spaced (dense at low ranks, where
        each step matters most). Duplicates are dropped; the list ends at full rank.

        Args:
            layer: The profiled layer.
            options: Method options (defaults fill the rest).
            max_points: Most points on the path (>= 2).

        Returns:
            Rank dicts in increasing order of every rank.
        """
        full = self.rank_space(layer, self.resolve_options(layer, options))
        if not full:
            return [{}]
        top = max(full.values())
        if top <= max_points:
            steps = list(range(1, top + 1))
        else:
            ratio = top ** (1.0 / (max_points - 1))
            steps = sorted({max(1, min(top, round(ratio**i))) for i in range(max_points)})
            steps[-1] = top
        path: list[dict[str, int]] = []
        for step in steps:
            ranks = ranks_at_fraction(full, step / top)
            if not path or ranks != path[-1]:
                path.append(ranks)
        return path

    def useful_ranks(
        self,
        layer: LayerInfo,
        options: Options | None = None,
        *,
        min_rank: int = 1,
        max_points: int = 48,
    ) -> list[dict[str, int]]:
        """The points of :meth:`rank_path` where this method is worth using on ``layer``.

        A point is kept when it is strictly cheaper than the dense layer in multiply-
        accumulates and in parameters (a decomposition that costs more than what it replaces
        is never offered, seeded or realised), and when every rank is at least
        ``min_rank`` (e.g. the classifier's number of outputs).

        Returns:
            Rank dicts in increasing order (empty when the method cannot save anything here).
        """
        resolved = self.resolve_options(layer, options)
        out = []
        for ranks in self.rank_path(layer, resolved, max_points=max_points):
            if min(ranks.values(), default=min_rank) < min_rank:
                continue
            if self.macs(layer, ranks, resolved) >= layer.macs:
                continue
            if self.n_params(layer, ranks, resolved) >= layer.n_params:
                continue
            if self.feasible(layer, ranks):
                out.append(ranks)
        return out

    def feasible(self, layer: LayerInfo, ranks: Ranks) -> bool:
        """Whether computing ``ranks`` stays in the method's time / memory bound (default
        True); :meth:`useful_ranks` keeps only these, :meth:`bound_note` says what it cut."""
        return True

    def bound_note(self, layer: LayerInfo) -> str | None:
        """One line: the ranks of ``layer`` left out to stay in the method's bounds, or None."""
        return None

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
    def cache_token(self) -> Hashable:
        """Settings of the algorithm that change the factors (part of the cache key).

        Methods whose result depends only on the weight, ranks and options return ``()``.
        """
        return ()

    def random_factors(
        self, layer: LayerInfo, ranks: Ranks, options: Options, generator: torch.Generator
    ) -> Factors:
        """Factors of the right shapes for timing the built module (values meaningless).

        The default decomposes a seeded random weight; methods with an expensive
        decomposition (CP-ALS) override this with random factors.
        """
        weight = torch.randn(layer.weight_shape, generator=generator, dtype=torch.float64)
        return self.decompose(weight, layer, ranks, options)

    def _require_override(self, other: str) -> None:
        """The defaults of ``decompose`` and ``decompose_from_basis`` call each other: each
        needs ``other`` overridden, or it would recurse forever."""
        if not _overrides(type(self), other):
            raise NotImplementedError(
                f"method {getattr(self, 'name', '?')!r} ({type(self).__qualname__}) must override "
                "decompose or decompose_from_basis"
            )

    def decompose(
        self, weight: torch.Tensor, layer: LayerInfo, ranks: Ranks, options: Options
    ) -> Factors:
        """Factors of ``weight`` (float64) at ``ranks``; not cached (see ``spaces.decompose``).

        The default truncates the rank-independent basis of :meth:`cache_basis` with
        :meth:`decompose_from_basis`; a method overrides either this (no reusable basis,
        e.g. CP) or those two.
        """
        self._require_override("decompose_from_basis")
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
        self._require_override("decompose")
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
        if not cls.label:
            cls.label = name
        if not cls.abbreviation:
            cls.abbreviation = name
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
