"""``cp``: CP (canonical polyadic) decomposition of a conv kernel (Lebedev et al., 2015).

``W[t, s, h, w] ~ sum_r K_t[t, r] * K_s[s, r] * K_h[h, r] * K_w[w, r]`` computed by
``tensorly.decomposition.parafac`` (ALS, numpy backend, float64) on the 4-way kernel
``(T, S, Dh, Dw)``. Built as ``1x1`` conv ``S -> R``; **one** ``Dh x Dw`` depthwise conv
(``R`` groups, the original stride/padding/dilation) whose kernel for component ``r`` is the
outer product ``K_h[:, r] K_w[:, r]^T``; ``1x1`` conv ``R -> T`` with the bias. This is exactly
the older chain with two depthwise 1-D convs (``Dh x 1`` then ``1 x Dw``), but one depthwise
conv runs about as fast as one of the 1-D pair on CPU, so the fused module costs roughly half
(see ``benchmarks/bench_modules.py``). Params ``R*(S + Dh*Dw + T)``.

Determinism and cost: every ALS attempt is seeded (:data:`CP_SEED`, a numpy ``RandomState``
inside tensorly, never numpy's global RNG; tensorly's ``svd`` init pads ranks above a mode's
size with random columns). Iterations per attempt are capped by :func:`als_iterations` so that
one attempt does at most about :data:`CP_ALS_WORK_BUDGET` flop-units of ALS work (a 96->96 3x3
layer at the largest rank below dense MACs, r=412, runs 9 iterations instead of 60).
:meth:`CP.cache_token` puts every setting that changes the result in the decomposition cache
key.

ALS can diverge or degenerate. A run is rejected when its factors are not finite, its relative
error exceeds 1 (worse than the zero tensor) or the norms of its rank-one terms exceed
:data:`DEGENERACY_RATIO` times ``||W||`` (cancelling terms that float32 cannot represent). Tried
in turn: ``init="svd"``, then ``init="random"`` with random states 0 and 1; when all fail,
:class:`~rankopt.errors.DecompositionError` names the layer and the rank.

Full rank: ``full = min(T, S)*Dh*Dw``. At ``R >= full`` ALS is not used; the exact
construction indexes the components by ``(i, h', w')`` over the smaller of the two channel
modes (say ``T <= S``: ``K_t = e_i``, ``K_h = e_h'``, ``K_w = e_w'``,
``K_s = W[i, :, h', w']``), so that ``sum_r`` reproduces ``W`` exactly; components beyond
``full`` are zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import parafac
from torch import nn

from rankopt.errors import DecompositionError
from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._svd import bias_params, conv

__all__ = ["CP", "DEGENERACY_RATIO", "als_iterations", "cp_exact", "unfused_module"]

DEGENERACY_RATIO = 1e4
"""Largest allowed ``sum_r ||term_r|| / ||W||`` before an ALS result counts as degenerate."""

CP_N_ITER_MAX = 60
"""Most ALS iterations per attempt."""
CP_MIN_ITER = 5
"""Fewest ALS iterations per attempt, whatever the work budget."""
CP_TOL = 1e-6
"""ALS stops when the relative change of the error is below this."""
CP_SEED = 0
"""Seed of the ``RandomState`` of the first attempt (``+ i`` for attempt ``i``)."""
CP_ALS_WORK_BUDGET = 5e9
"""Flop-units one ALS attempt may spend (see :func:`als_iterations`)."""


def als_iterations(shape: tuple[int, ...], rank: int) -> int:
    """ALS iterations one attempt runs on a tensor of ``shape`` at ``rank``.

    One ALS sweep costs about ``sum over modes (2*numel*R + R**3)`` flop-units (the MTTKRP
    and the ``R x R`` solve of each mode). The count is
    ``clip(CP_ALS_WORK_BUDGET // per_sweep, CP_MIN_ITER, CP_N_ITER_MAX)``.

    Args:
        shape: Shape of the decomposed tensor, ``(T, S, Dh, Dw)``.
        rank: CP rank ``R``.

    Returns:
        The iteration cap (an int in ``[CP_MIN_ITER, CP_N_ITER_MAX]``).
    """
    numel = math.prod(shape)
    per_sweep = len(shape) * (2 * numel * rank + rank**3)
    return int(min(CP_N_ITER_MAX, max(CP_MIN_ITER, CP_ALS_WORK_BUDGET // per_sweep)))


def cp_exact(weight: torch.Tensor, rank: int) -> Factors:
    """Exact CP factors of ``weight`` with ``rank >= min(T, S)*Dh*Dw`` components.

    Args:
        weight: ``(T, S, Dh, Dw)`` float64 kernel.
        rank: Number of components; those beyond ``min(T, S)*Dh*Dw`` are zero.

    Returns:
        ``(K_t (T, R), K_s (S, R), K_h (Dh, R), K_w (Dw, R))``.
    """
    t, s, dh, dw = weight.shape
    small, big = (t, s) if t <= s else (s, t)
    full = small * dh * dw
    # Component r = (i, h', w') over the smaller channel mode.
    idx = torch.arange(full)
    i, hh, ww = idx // (dh * dw), (idx // dw) % dh, idx % dw
    k_small = torch.zeros(small, rank, dtype=torch.float64)
    k_h = torch.zeros(dh, rank, dtype=torch.float64)
    k_w = torch.zeros(dw, rank, dtype=torch.float64)
    k_small[i, idx] = 1.0
    k_h[hh, idx] = 1.0
    k_w[ww, idx] = 1.0
    k_big = torch.zeros(big, rank, dtype=torch.float64)
    if t <= s:
        k_big[:, :full] = weight[i, :, hh, ww].T  # (S, full)
        return k_small, k_big, k_h, k_w
    k_big[:, :full] = weight[:, i, hh, ww]  # (T, full)
    return k_big, k_small, k_h, k_w


def _reconstruct(factors: Factors) -> torch.Tensor:
    k_t, k_s, k_h, k_w = factors
    return torch.einsum("tr,sr,hr,wr->tshw", k_t, k_s, k_h, k_w)


def _run_parafac(weight: np.ndarray, rank: int, init: str, random_state: int) -> Factors:
    with tl.backend_context("numpy"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            cp = parafac(
                weight,
                rank,
                n_iter_max=als_iterations(weight.shape, rank),
                init=init,
                tol=CP_TOL,
                random_state=random_state,
                normalize_factors=False,
            )
    weights, mats = cp
    mats = [np.asarray(m, dtype=np.float64) for m in mats]
    mats[0] = mats[0] * np.asarray(weights, dtype=np.float64)[None, :]
    return _balance(tuple(torch.from_numpy(np.ascontiguousarray(m)) for m in mats))


def _balance(factors: Factors) -> Factors:
    """Give the columns of every factor of a term the same norm (their geometric mean).

    ALS leaves each term's scale spread arbitrarily over its factors; a chain of layers
    with badly unequal scales fine-tunes poorly (exploding gradients). The product, and so
    the reconstruction, is unchanged.
    """
    norms = torch.stack([f.norm(dim=0) for f in factors])  # (n_factors, R)
    if bool((norms == 0).any()):
        return factors
    target = norms.log().mean(dim=0).exp()
    return tuple(f * (target / n)[None, :] for f, n in zip(factors, norms, strict=True))


def _diagnose(weight: torch.Tensor, factors: Factors) -> str | None:
    """Why a CP result is unusable, or None when it is fine."""
    if not all(bool(torch.isfinite(f).all()) for f in factors):
        return "non-finite factors"
    norm = float(weight.norm())
    if norm == 0.0:
        return None
    error = float((weight - _reconstruct(factors)).norm()) / norm
    if not np.isfinite(error) or error > 1.0 + 1e-9:
        return f"relative error {error:.3g} > 1"
    term_norms = torch.ones(factors[0].shape[1], dtype=torch.float64)
    for f in factors:
        term_norms = term_norms * f.norm(dim=0)
    ratio = float(term_norms.sum()) / norm
    if ratio > DEGENERACY_RATIO:
        return f"degenerate terms (sum of term norms {ratio:.3g} x ||W||)"
    return None


def _fused_depthwise(k_h: torch.Tensor, k_w: torch.Tensor) -> torch.Tensor:
    """``(R, 1, Dh, Dw)`` depthwise kernel: component ``r`` is ``K_h[:, r] K_w[:, r]^T``."""
    return torch.einsum("hr,wr->rhw", k_h, k_w).unsqueeze(1)


@register_method("cp")
class CP(DecompositionMethod):
    """CP-ALS decomposition built as ``1x1``, one ``Dh x Dw`` depthwise, ``1x1`` convs.

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

    #: Attempts ``(init, random_state)`` in order; each state seeds a numpy ``RandomState``.
    attempts: tuple[tuple[str, int], ...] = (
        ("svd", CP_SEED),
        ("random", CP_SEED + 1),
        ("random", CP_SEED + 2),
    )

    def cache_token(self) -> Hashable:
        """ALS settings that change the factors (part of the decomposition cache key)."""
        return (
            "als",
            self.attempts,
            CP_N_ITER_MAX,
            CP_MIN_ITER,
            CP_TOL,
            CP_ALS_WORK_BUDGET,
            DEGENERACY_RATIO,
        )

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(T, S)*Dh*Dw}``."""
        kh, kw = layer.kernel_size
        return {"r": min(layer.in_channels, layer.out_channels) * kh * kw}

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
            for n in (layer.out_channels, layer.in_channels, kh, kw)
        )

    def decompose(
        self, weight: torch.Tensor, layer: LayerInfo, ranks: Ranks, options: Options
    ) -> Factors:
        """``(K_t (T, R), K_s (S, R), K_h (Dh, R), K_w (Dw, R))`` (float64).

        Raises:
            DecompositionError: every ALS attempt diverged or degenerated.
        """
        weight = weight.detach().to("cpu", torch.float64)
        r = ranks["r"]
        if r >= self.rank_space(layer)["r"]:
            return cp_exact(weight, r)
        array = weight.numpy()
        problems = []
        for init, state in self.attempts:
            try:
                factors = _run_parafac(array, r, init, state)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                problems.append(f"init={init!r} random_state={state}: {exc}")
                continue
            problem = _diagnose(weight, factors)
            if problem is None:
                return factors
            problems.append(f"init={init!r} random_state={state}: {problem}")
        raise DecompositionError(
            f"layer {layer.name!r}: CP-ALS at rank r={r} failed after "
            f"{len(self.attempts)} attempts ({'; '.join(problems)})"
        )

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """``Sequential(1x1 S->R, depthwise DhxDw (fused K_h K_w^T), 1x1 R->T + bias)``."""
        k_t, k_s, k_h, k_w = factors
        r = int(k_t.shape[1])
        return nn.Sequential(
            conv(layer.in_channels, r, k_s.T[:, :, None, None]),
            conv(
                r,
                r,
                _fused_depthwise(k_h, k_w),
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=r,
            ),
            conv(r, layer.out_channels, k_t[:, :, None, None], bias=bias),
        )

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``sum_r K_t[:, r] ∘ K_s[:, r] ∘ K_h[:, r] ∘ K_w[:, r]``."""
        return _reconstruct(factors)


def unfused_module(layer: LayerInfo, factors: Factors, bias: torch.Tensor | None) -> nn.Module:
    """The older CP chain ``1x1, depthwise Dhx1, depthwise 1xDw, 1x1`` (reference and benchmark).

    Args:
        layer: The dense layer's description.
        factors: CP factors ``(K_t, K_s, K_h, K_w)``.
        bias: The dense bias or None.

    Returns:
        A float32 ``nn.Sequential`` computing the same function as :meth:`CP.to_module`.
    """
    k_t, k_s, k_h, k_w = factors
    r = int(k_t.shape[1])
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    kh, kw = int(k_h.shape[0]), int(k_w.shape[0])
    return nn.Sequential(
        conv(layer.in_channels, r, k_s.T[:, :, None, None]),
        conv(
            r,
            r,
            k_h.T.reshape(r, 1, kh, 1),
            stride=(sh, 1),
            padding=(ph, 0),
            dilation=(dh, 1),
            groups=r,
        ),
        conv(
            r,
            r,
            k_w.T.reshape(r, 1, 1, kw),
            stride=(1, sw),
            padding=(0, pw),
            dilation=(1, dw),
            groups=r,
        ),
        conv(r, layer.out_channels, k_t[:, :, None, None], bias=bias),
    )
