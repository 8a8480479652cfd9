"""``gkpd``: Generalized Kronecker Product Decomposition (Hameed et al., 2022).

``W (T, S, Dh, Dw) ~ sum_r A_r ⊗ B_r`` with ``A_r (T1, S1, 1, 1)`` and ``B_r (T2, S2, Dh, Dw)``
(``T = T1*T2``, ``S = S1*S2``; output channel ``t = t1*T2 + t2``, input channel
``s = s1*S2 + s2``, torch's row-major reshape convention). The best rank-R sum in Frobenius norm
is the truncated SVD of the Van Loan–Pitsianis rearrangement of ``W`` into a
``(T1*S1, T2*S2*Dh*Dw)`` matrix.

Built module (standard torch layers in an ``nn.Sequential``):

1. ``Unflatten(1, (S1, S2))`` + ``Flatten(0, 1)``: the ``S1`` input slices go to the batch.
2. ``Conv2d(S2 -> R*T2, Dh x Dw)`` with the original stride/padding/dilation holds ``B``
   **once** (weight shared over the ``S1`` slices); output channel ``t2*R + r``.
3. ``Unflatten(0, (-1, S1))`` + ``Flatten(1, 2)``: back to channels ordered ``(s1, t2, r)``.
4. ``ChannelShuffle(S1)``: channels ordered ``(t2, r, s1)``.
5. ``Conv2d(T2*R*S1 -> T2*T1, 1x1, groups=T2)`` holds ``A`` (once per ``t2`` group) and the
   bias (permuted); output channel ``t2*T1 + t1``.
6. ``ChannelShuffle(T2)``: output channel ``t1*T2 + t2``.

Steps whose factor is 1 are left out. Parameters: ``R*T2*S2*Dh*Dw + T*R*S1`` (+ ``T`` bias);
MACs: ``S1*Ho*Wo*R*T2*S2*Dh*Dw + Ho*Wo*T*R*S1``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rankopt.spaces._base import DecompositionMethod, Factors, Options, Ranks, register_method
from rankopt.spaces._layer import LayerInfo
from rankopt.spaces._svd import SVDBasis, bias_params, conv, matrix_svd, split_truncated

__all__ = ["GKPD", "balanced_divisor", "divisors"]


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def balanced_divisor(n: int) -> int:
    """The divisor of ``n`` closest to ``sqrt(n)`` (the smaller one on a tie)."""
    root = math.sqrt(n)
    return min(divisors(n), key=lambda d: (abs(d - root), d))


def _matrix(weight: torch.Tensor, t1: int, s1: int) -> torch.Tensor:
    """Van Loan–Pitsianis rearrangement of ``W`` to ``(T1*S1, T2*S2*Dh*Dw)``."""
    t, s, dh, dw = weight.shape
    t2, s2 = t // t1, s // s1
    blocks = weight.reshape(t1, t2, s1, s2, dh, dw).permute(0, 2, 1, 3, 4, 5)
    return blocks.reshape(t1 * s1, t2 * s2 * dh * dw)


@register_method("gkpd")
class GKPD(DecompositionMethod):
    """Sum of ``R`` Kronecker products ``A_r (T1, S1, 1, 1) ⊗ B_r (T2, S2, Dh, Dw)``.

    Options ``t1`` / ``s1`` (divisors of ``T`` / ``S``, default the divisor closest to the
    square root) fix the factor shapes. Full rank is ``min(T1*S1, T2*S2*Dh*Dw)``, where the
    module reproduces the dense conv. See the module docstring for the built layers.
    """

    rank_names = ("r",)
    spatial = True
    #: Measured (``benchmarks/bench_modules.py``, 1 thread): at ~0.56 of the dense MACs the
    #: module costs 1.4-4.3x the dense conv (16->16 at 28x28 and 64->64 at 14x14, batch 1 and
    #: 64); a grouped-conv arrangement of B (B repeated S1 times) was no faster. Its latency
    #: does not follow its MACs, so a latency-budgeted search should skip it.
    latency_friendly = False
    label = "GKPD"
    abbreviation = "GKPD"
    color = "#d62728"

    def option_space(self, layer: LayerInfo) -> dict[str, list[Any]]:
        """``t1`` over the divisors of ``T``, ``s1`` over the divisors of ``S``."""
        return {"t1": divisors(layer.out_channels), "s1": divisors(layer.in_channels)}

    def default_options(self, layer: LayerInfo) -> dict[str, Any]:
        """Balanced factor shapes: ``t1``, ``s1`` closest to ``sqrt(T)``, ``sqrt(S)``."""
        return {
            "t1": balanced_divisor(layer.out_channels),
            "s1": balanced_divisor(layer.in_channels),
        }

    def _shapes(self, layer: LayerInfo, options: Options | None) -> tuple[int, int, int, int]:
        opts = self.resolve_options(layer, options)
        t1, s1 = int(opts["t1"]), int(opts["s1"])
        return t1, layer.out_channels // t1, s1, layer.in_channels // s1

    def rank_space(self, layer: LayerInfo, options: Options | None = None) -> dict[str, int]:
        """``{"r": min(T1*S1, T2*S2*Dh*Dw)}``."""
        t1, t2, s1, s2 = self._shapes(layer, options)
        kh, kw = layer.kernel_size
        return {"r": min(t1 * s1, t2 * s2 * kh * kw)}

    def vbmf_matrices(
        self, weight: torch.Tensor, layer: LayerInfo, options: Options
    ) -> dict[str, list[torch.Tensor]]:
        """``r`` of the Van Loan-Pitsianis rearrangement at the factor shape ``options``."""
        return {"r": [_matrix(weight, int(options["t1"]), int(options["s1"]))]}

    def n_params(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``R*T2*S2*Dh*Dw + T*R*S1`` plus the bias (as built)."""
        _t1, t2, s1, s2 = self._shapes(layer, options)
        kh, kw = layer.kernel_size
        r = ranks["r"]
        return r * t2 * s2 * kh * kw + layer.out_channels * r * s1 + bias_params(layer)

    def macs(self, layer: LayerInfo, ranks: Ranks, options: Options | None = None) -> int:
        """``S1*Ho*Wo*R*T2*S2*Dh*Dw + Ho*Wo*T*R*S1`` per image (as built)."""
        _t1, t2, s1, s2 = self._shapes(layer, options)
        kh, kw = layer.kernel_size
        r = ranks["r"]
        p = layer.out_positions
        return s1 * p * r * t2 * s2 * kh * kw + p * layer.out_channels * r * s1

    def cache_basis(self, weight: torch.Tensor, layer: LayerInfo, options: Options) -> SVDBasis:
        """SVD basis of the rearranged ``(T1*S1, T2*S2*Dh*Dw)`` matrix."""
        t1, _, s1, _ = self._shapes(layer, options)
        return matrix_svd(_matrix(weight, t1, s1))

    def decompose_from_basis(
        self,
        basis: Any,
        weight: torch.Tensor,
        layer: LayerInfo,
        ranks: Ranks,
        options: Options,
    ) -> Factors:
        """``(A (R, T1, S1), B (R, T2, S2, Dh, Dw))``."""
        t1, t2, s1, s2 = self._shapes(layer, options)
        _, _, dh, dw = weight.shape
        r = ranks["r"]
        # left (T1*S1, R), right (R, T2*S2*Dh*Dw)
        left, right = split_truncated(basis, _matrix(weight, t1, s1), r)
        a = left.T.reshape(r, t1, s1).contiguous()
        b = right.reshape(r, t2, s2, dh, dw).contiguous()
        return a, b

    def to_module(
        self,
        layer: LayerInfo,
        factors: Factors,
        bias: torch.Tensor | None,
        options: Options,
    ) -> nn.Module:
        """The ``nn.Sequential`` described in the module docstring."""
        a, b = factors
        r, t1, s1 = (int(n) for n in a.shape)
        _, t2, s2, dh, dw = (int(n) for n in b.shape)
        layers: list[nn.Module] = []
        if s1 > 1:
            layers += [nn.Unflatten(1, (s1, s2)), nn.Flatten(0, 1)]
        # B conv: output channel t2*R + r holds B_r[t2].
        layers.append(
            conv(
                s2,
                t2 * r,
                b.permute(1, 0, 2, 3, 4).reshape(t2 * r, s2, dh, dw),
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
            )
        )
        if s1 > 1:
            layers += [nn.Unflatten(0, (-1, s1)), nn.Flatten(1, 2), nn.ChannelShuffle(s1)]
        # Channels now ordered (t2, r, s1). A conv, group t2: weight[t2*T1 + t1, r*S1 + s1].
        a_weight = a.permute(1, 0, 2).reshape(t1, r * s1)
        a_weight = a_weight.repeat(t2, 1)  # (T2*T1, R*S1), group-major in t2
        a_bias = None
        if bias is not None:
            a_bias = bias.detach().reshape(t1, t2).T.reshape(-1)  # [t2*T1 + t1] = b[t1*T2 + t2]
        layers.append(
            conv(t2 * r * s1, t2 * t1, a_weight[:, :, None, None], groups=t2, bias=a_bias)
        )
        if t2 > 1 and t1 > 1:
            layers.append(nn.ChannelShuffle(t2))
        return nn.Sequential(*layers)

    def reconstruct(self, layer: LayerInfo, factors: Factors, options: Options) -> torch.Tensor:
        """``sum_r A_r ⊗ B_r`` as a ``(T, S, Dh, Dw)`` kernel."""
        a, b = factors
        _, t1, s1 = a.shape
        _, t2, s2, dh, dw = b.shape
        full = torch.einsum("rab,rcdhw->acbdhw", a, b)  # (T1, T2, S1, S2, Dh, Dw)
        return full.reshape(t1 * t2, s1 * s2, dh, dw)
