"""``cp``: CP (canonical polyadic) decomposition of a conv kernel (Lebedev et al., 2015).

``W[t, s, h, w] ~ sum_r K_t[t, r] * K_s[s, r] * K_hw[(h, w), r]``: the kernel is read as the
3-way tensor ``(T, S, Dh*Dw)`` and factorised by alternating least squares (ALS). Built as
``1x1`` conv ``S -> R``; **one** ``Dh x Dw`` depthwise conv (``R`` groups, the original
stride/padding/dilation) whose kernel for component ``r`` is ``K_hw[:, r]`` reshaped to
``(Dh, Dw)``; ``1x1`` conv ``R -> T`` with the bias. Params ``R*(S + Dh*Dw + T)``.

Why 3-way (issue 36): the module above runs any ``Dh x Dw`` depthwise kernel, so tying it to
a rank-one outer product ``K_h K_w^T`` (Lebedev's 4-way CP) only loses accuracy at the same
cost. The 3-way tensor also makes ALS cheaper.

Why ALS is written here (:mod:`._cp_als`) rather than calling tensorly's ``parafac``: its
MTTKRP forms the Khatri-Rao product of the other modes explicitly (``S*Dh*Dw x R`` per mode,
and ``T*S*Dw x R`` for a spatial mode of the 4-way kernel): 9.1 GB and 185 s on one
512-channel 3x3 conv at rank 570 (float64), and its memory-light variant loops over the rank
in Python. Here each MTTKRP is ``Dh*Dw`` matrix products ``W[:, :, k] @ K_s``, float32,
memory ``O((T + S) * R * Dh*Dw)``; the ``R x R`` normal equations are solved by Cholesky with
a small ridge. Measured in ``benchmarks/BENCHMARKS_SCALE.md``.

Bounded cost: ALS work is counted in flop-units (:func:`sweep_work`); the attempts of one
decomposition share :data:`CP_ALS_WORK_BUDGET` (deterministic, unlike a wall-time cap), and
ranks at which :data:`CP_MIN_ITER` sweeps do not fit the budget are not offered
(:meth:`CP.useful_ranks`; on a 512 -> 512 3x3 conv that leaves ranks up to about 21 % of the
layer's MACs, where Tucker-2 is as accurate anyway).

Determinism: the ``svd`` start (leading eigenvectors of each unfolding's Gram matrix, padded
with seeded random columns above a mode's size) and the ``random`` starts use a seeded
``torch.Generator`` (:data:`CP_SEED` ``+ i``), never a global RNG. :meth:`CP.cache_token` puts
every setting that changes the result in the decomposition cache key.

ALS can diverge or degenerate. A run is rejected when its factors are not finite, its relative
error exceeds 1 (worse than the zero tensor) or the norms of its rank-one terms exceed
:data:`DEGENERACY_RATIO` times ``||W||`` (cancelling terms that float32 cannot represent). Tried
in turn: ``svd`` start, then two ``random`` starts while budget remains; when all fail,
:class:`~rankopt.errors.DecompositionError` names the layer and the rank.

Full rank: ``full = min(T, S)*Dh*Dw``. At ``R >= full`` ALS is not used; the exact
construction indexes the components by ``(i, k)`` over the smaller channel mode and the
``Dh*Dw`` kernel positions (say ``T <= S``: ``K_t = e_i``, ``K_hw = e_k``,
``K_s = W[i, :, k]``), so that ``sum_r`` reproduces ``W`` exactly; components beyond
``full`` are zero.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import torch
from torch import nn

from rankopt.errors import DecompositionError
from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._cp_als import (
    CP_ALS_WORK_BUDGET,
    CP_MIN_ITER,
    CP_N_ITER_MAX,
    CP_RIDGE,
    CP_SEED,
    CP_TOL,
    DEGENERACY_RATIO,
    als_iterations,
    sweep_work,
)
from rankopt.spaces._cp_als import als as _als
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._svd import bias_params, conv

__all__ = ["CP", "DEGENERACY_RATIO", "als_iterations", "cp_exact", "sweep_work"]


def cp_exact(weight: torch.Tensor, rank: int) -> Factors:
    """Exact CP factors of ``weight`` with ``rank >= min(T, S)*Dh*Dw`` components.

    Args:
        weight: ``(T, S, Dh, Dw)`` float64 kernel.
        rank: Number of components; those beyond ``min(T, S)*Dh*Dw`` are zero.

    Returns:
        ``(K_t (T, R), K_s (S, R), K_hw (Dh*Dw, R))``.
    """
    t, s, dh, dw = weight.shape
    k = dh * dw
    w3 = weight.reshape(t, s, k)
    small, big = (t, s) if t <= s else (s, t)
    full = small * k
    # Component r = (i, kk) over the smaller channel mode and the kernel positions.
    idx = torch.arange(full)
    i, kk = idx // k, idx % k
    k_small = torch.zeros(small, rank, dtype=torch.float64)
    k_hw = torch.zeros(k, rank, dtype=torch.float64)
    k_small[i, idx] = 1.0
    k_hw[kk, idx] = 1.0
    k_big = torch.zeros(big, rank, dtype=torch.float64)
    if t <= s:
        k_big[:, :full] = w3[i, :, kk].T  # (S, full)
        return k_small, k_big, k_hw
    k_big[:, :full] = w3[:, i, kk]  # (T, full)
    return k_big, k_small, k_hw


def _reconstruct(factors: Factors, shape: tuple[int, ...]) -> torch.Tensor:
    """``K_t @ khatri_rao(K_s, K_hw)^T``: memory ``O(S*Dh*Dw*R)``, never ``T*S*R``."""
    k_t, k_s, k_hw = factors
    rank = k_t.shape[1]
    khatri_rao = (k_s[:, None, :] * k_hw[None, :, :]).reshape(-1, rank)  # (S*K, R)
    return (k_t @ khatri_rao.T).reshape(shape)


def _diagnose(weight: torch.Tensor, factors: Factors) -> str | None:
    """Why a CP result is unusable, or None when it is fine."""
    if not all(bool(torch.isfinite(f).all()) for f in factors):
        return "non-finite factors"
    norm = float(weight.norm())
    if norm == 0.0:
        return None
    error = float((weight - _reconstruct(factors, tuple(weight.shape))).norm()) / norm
    if not math.isfinite(error) or error > 1.0 + 1e-9:
        return f"relative error {error:.3g} > 1"
    term_norms = torch.ones(factors[0].shape[1], dtype=torch.float64)
    for f in factors:
        term_norms = term_norms * f.norm(dim=0)
    ratio = float(term_norms.sum()) / norm
    if ratio > DEGENERACY_RATIO:
        return f"degenerate terms (sum of term norms {ratio:.3g} x ||W||)"
    return None


def _depthwise_kernel(k_hw: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """``(R, 1, Dh, Dw)`` depthwise kernel: component ``r`` is ``K_hw[:, r]`` as ``Dh x Dw``."""
    r = int(k_hw.shape[1])
    return k_hw.T.reshape(r, 1, *kernel_size)


@register_method("cp")
class CP(DecompositionMethod):
    """CP-ALS on the ``(T, S, Dh*Dw)`` kernel, built as ``1x1``, ``Dh x Dw`` depthwise, ``1x1``.

    Rank ``r``, full ``min(T, S)*Dh*Dw`` (exact construction there).
    """

    rank_names = ("r",)
    spatial = True
    #: Measured (``benchmarks/bench_modules.py``, 1 thread): the fused module at 0.50 of the
    #: dense MACs costs 1.0-1.8x dense at batch 1 and 1.4-5.9x at batch 64 (the NCHW depthwise
    #: conv is slow on CPU; in channels_last it ran 5.7x faster, not used: the modules stay
    #: plain NCHW layers). Latency does not follow MACs, so a latency budget may skip CP.
    #: ONNX Runtime differs: it runs the depthwise conv fast; CP-heavy resnet8 plans at
    #: 50/25/15 % of the MACs measured 0.49-0.79x dense there
    #: (``benchmarks/BENCHMARKS_LATENCY.md``).
    latency_friendly = False
    latency_friendly_runtimes = frozenset({"onnxruntime"})
    label = "CP"
    abbreviation = "CP"
    color = "#ff7f0e"

    #: Starts ``(init, seed)`` tried in turn while the work budget lasts.
    attempts: tuple[tuple[str, int], ...] = (
        ("svd", CP_SEED),
        ("random", CP_SEED + 1),
        ("random", CP_SEED + 2),
    )

    def cache_token(self) -> Hashable:
        """ALS settings that change the factors (part of the decomposition cache key)."""
        return (
            "als3",
            self.attempts,
            CP_N_ITER_MAX,
            CP_MIN_ITER,
            CP_TOL,
            CP_ALS_WORK_BUDGET,
            CP_RIDGE,
            DEGENERACY_RATIO,
        )

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(T, S)*Dh*Dw}``."""
        kh, kw = layer.kernel_size
        return {"r": min(layer.in_channels, layer.out_channels) * kh * kw}

    def feasible(self, layer: LayerInfo, ranks: Ranks) -> bool:
        """Whether ALS at ``ranks`` gets :data:`CP_MIN_ITER` sweeps within the work budget
        (the exact construction at full rank always is)."""
        r = ranks["r"]
        if r >= self.rank_space(layer)["r"]:
            return True
        return als_iterations(tuple(layer.weight_shape), r) >= CP_MIN_ITER

    def bound_note(self, layer: LayerInfo) -> str | None:
        """Which ranks CP-ALS's work budget leaves out on ``layer``, or None."""
        kept = self.useful_ranks(layer)
        every = [
            r
            for r in self.rank_path(layer)
            if self.macs(layer, r) < layer.macs and self.n_params(layer, r) < layer.n_params
        ]
        if len(kept) == len(every):
            return None
        if not kept:
            return (
                f"cp on {layer.name}: not offered: CP-ALS at its cheapest useful rank needs "
                f"more than {CP_ALS_WORK_BUDGET:.3g} flop-units"
            )
        top = kept[-1]
        share = self.macs(layer, top) / max(layer.macs, 1)
        return (
            f"cp on {layer.name}: ranks above r={top['r']} ({share:.0%} of the layer's MACs) "
            f"not offered: CP-ALS there needs more than {CP_ALS_WORK_BUDGET:.3g} flop-units"
        )

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]]:
        """``r`` = the larger of the Tucker-2 estimates (both unfoldings). A heuristic: a CP
        rank is not the rank of any one unfolding (it is at least each of them)."""
        t, s, dh, dw = weight.shape
        return {
            "r": [
                weight.permute(1, 0, 2, 3).reshape(s, t * dh * dw),
                weight.reshape(t, s * dh * dw),
            ]
        }

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*(S + Dh*Dw + T)`` plus the bias (as built)."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return r * (layer.in_channels + kh * kw + layer.out_channels) + bias_params(layer)

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``Hi*Wi*S*R + Ho*Wo*R*Dh*Dw + Ho*Wo*R*T`` per image (as built)."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return layer.in_positions * layer.in_channels * r + layer.out_positions * r * (
            kh * kw + layer.out_channels
        )

    def random_factors(
        self, layer: LayerInfo, ranks: Ranks, options: Options, generator: torch.Generator
    ) -> Factors:
        """Random factors of the right shapes (no ALS), for latency measurements."""
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return tuple(
            torch.randn(n, r, generator=generator, dtype=torch.float64)
            for n in (layer.out_channels, layer.in_channels, kh * kw)
        )

    def decompose(
        self, weight: torch.Tensor, layer: LayerInfo, ranks: Ranks, options: Options
    ) -> Factors:
        """``(K_t (T, R), K_s (S, R), K_hw (Dh*Dw, R))`` (float64).

        Raises:
            DecompositionError: every ALS attempt diverged or degenerated, or the rank needs
                more work than :data:`CP_ALS_WORK_BUDGET` allows.
        """
        weight = weight.detach().to("cpu", torch.float64)
        r = ranks["r"]
        if r >= self.rank_space(layer)["r"]:
            return cp_exact(weight, r)
        shape = tuple(weight.shape)
        t, s, dh, dw = shape
        x = weight.reshape(t, s, dh * dw).permute(2, 0, 1).contiguous().float()
        per_sweep = sweep_work(shape, r)
        left = CP_ALS_WORK_BUDGET
        problems = []
        for init, seed in self.attempts:
            n_iter = int(min(CP_N_ITER_MAX, left // per_sweep))
            if n_iter < CP_MIN_ITER:
                problems.append(f"init={init!r} seed={seed}: not run, the work budget is spent")
                break
            left -= n_iter * per_sweep
            factors = _als(x, r, init, seed, n_iter)
            problem = _diagnose(weight, factors)
            if problem is None:
                return factors
            problems.append(f"init={init!r} seed={seed}: {problem}")
        raise DecompositionError(
            f"layer {layer.name!r}: CP-ALS at rank r={r} failed ({'; '.join(problems)}); "
            f"ALS may spend {CP_ALS_WORK_BUDGET:.3g} flop-units, a sweep costs {per_sweep:.3g}"
        )

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """``Sequential(1x1 S->R, depthwise DhxDw (K_hw), 1x1 R->T + bias)``."""
        k_t, k_s, k_hw = factors
        r = int(k_t.shape[1])
        return nn.Sequential(
            conv(layer.in_channels, r, k_s.T[:, :, None, None]),
            conv(
                r,
                r,
                _depthwise_kernel(k_hw, layer.kernel_size),
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=r,
            ),
            conv(r, layer.out_channels, k_t[:, :, None, None], bias=bias),
        )

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``sum_r K_t[:, r] ∘ K_s[:, r] ∘ K_hw[:, r]`` as ``(T, S, Dh, Dw)``."""
        return _reconstruct(factors, tuple(layer.weight_shape))
