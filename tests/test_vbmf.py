"""Tests of the EVBMF rank estimator (rankopt.spaces._vbmf, design.md §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from rankopt.errors import InvalidPlanError, UnknownNameError, UnsupportedLayerError
from rankopt.spaces._gkpd import balanced_divisor
from rankopt.spaces._vbmf import (
    EVBMFResult,
    estimate_rank,
    evbmf,
    vbmf_methods,
    vbmf_ranks,
)

TAU_COEF = 2.5129


def low_rank_plus_noise(
    L: int, M: int, rank: int, seed: int, *, factor: float = 3.0, sigma: float = 1.0
) -> np.ndarray:
    """``U diag(s) V^T + sigma * N(0, 1)`` with ``s`` in ``factor * [1, 2] * noise edge``."""
    rng = np.random.default_rng(seed)
    edge = sigma * (math.sqrt(L) + math.sqrt(M))
    U, _ = np.linalg.qr(rng.standard_normal((L, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((M, rank)))
    s = factor * edge * np.linspace(1.0, 2.0, rank)
    return (U * s) @ V.T + sigma * rng.standard_normal((L, M))


def h_bar(L: int, M: int) -> int:
    """The paper's upper bound on the EVB rank: ceil(L / (1 + alpha)) - 1, L <= M."""
    L, M = min(L, M), max(L, M)
    return math.ceil(L / (1 + L / M)) - 1


# ---------------------------------------------------------------------- estimate_rank
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("L", "M", "rank"),
    [
        (50, 80, 1),
        (50, 80, 5),
        (50, 80, 20),
        (200, 60, 3),
        (200, 60, 12),
        (200, 60, 20),
        (128, 128, 1),
        (128, 128, 10),
        (128, 128, 20),
        (20, 300, 8),
    ],
)
def test_recovers_rank_of_low_rank_plus_noise(L: int, M: int, rank: int, seed: int) -> None:
    V = low_rank_plus_noise(L, M, rank, seed)
    result = evbmf(V)
    assert result.rank == rank
    # The noise variance (true value 1.0) is estimated to within 8 % while the signal
    # occupies at most a fifth of the L <= M dimensions; it is biased upward (by up to
    # ~30 % at 50 x 80 with rank 20) when the signal takes more of them.
    rel = 0.08 if rank <= 0.2 * min(L, M) else 0.35
    assert result.sigma2 == pytest.approx(1.0, rel=rel)
    assert result.sigma2 >= 0.95
    assert result.shape == (min(L, M), max(L, M))
    # The EVB estimates shrink the kept singular values but keep their order.
    assert np.all(result.shrunk < result.singular_values[:rank])
    assert np.all(np.diff(result.shrunk) <= 0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("L", "M"), [(50, 80), (200, 60), (128, 128), (1, 50), (300, 20)])
def test_pure_gaussian_noise_has_rank_zero(L: int, M: int, seed: int) -> None:
    sigma = 0.37
    V = sigma * np.random.default_rng(seed).standard_normal((L, M))
    result = evbmf(V)
    assert result.rank == 0
    if L > 1:  # a 1 x M matrix has H_bar = 0: sigma2 is pinned at ||V||^2 / M
        assert result.sigma2 == pytest.approx(sigma**2, rel=0.05)


def test_noiseless_full_rank() -> None:
    """A full-rank matrix without noise: numerically full rank when declared noise-free.

    With an estimated noise level EVBMF cannot tell an i.i.d. matrix from noise (it *is*
    a draw of Gaussian noise), and its rank is bounded by H_bar = ceil(L/(1+alpha)) - 1
    < L for any matrix, so the empirical estimate is not min(L, M).
    """
    V = np.random.default_rng(0).standard_normal((50, 80))
    assert estimate_rank(V, sigma2=0.0) == 50
    assert estimate_rank(V.T, sigma2=0.0) == 50
    assert estimate_rank(V) == 0
    # A full-rank matrix with a spread spectrum: the estimate stays at or below H_bar.
    D = np.diag(np.logspace(0, 3, 40))
    assert estimate_rank(D, sigma2=0.0) == 40
    assert estimate_rank(D) == 13 <= h_bar(40, 40) == 19
    # Identity: all singular values equal, nothing stands out of the "noise".
    assert estimate_rank(np.eye(30)) == 0


def test_noiseless_low_rank_gives_exact_rank_and_zero_noise() -> None:
    rng = np.random.default_rng(3)
    V = rng.standard_normal((50, 5)) @ rng.standard_normal((5, 80))
    result = evbmf(V)
    assert (result.rank, result.sigma2) == (5, 0.0)
    assert estimate_rank(np.ones((3, 5))) == 1


def test_zero_and_degenerate_matrices() -> None:
    assert estimate_rank(np.zeros((40, 60))) == 0
    assert estimate_rank(torch.zeros(7, 3)) == 0
    assert estimate_rank(np.zeros((0, 5))) == 0
    assert evbmf(np.zeros((4, 4))).sigma2 == 0.0
    # 1 x N: H_bar = 0, so no component can be separated from unknown noise ...
    assert estimate_rank(np.arange(1.0, 11.0)[None, :]) == 0
    assert estimate_rank(np.arange(1.0, 11.0)[:, None]) == 0
    assert estimate_rank(np.array([[5.0]])) == 0
    # ... but with a known noise level it is 1 when the value is above the threshold.
    assert estimate_rank(np.arange(1.0, 11.0)[None, :], sigma2=0.01) == 1
    assert estimate_rank(np.arange(1.0, 11.0)[None, :], sigma2=0.0) == 1


def test_known_sigma2_threshold() -> None:
    V = low_rank_plus_noise(50, 80, 6, seed=4)
    assert estimate_rank(V, sigma2=1.0) == 6
    # A hugely over-stated noise level hides all components.
    assert estimate_rank(V, sigma2=1e4) == 0
    res = evbmf(V, sigma2=1.0)
    alpha = 50 / 80
    tau_bar = TAU_COEF * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    assert res.threshold == pytest.approx(math.sqrt(80 * x_bar))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transposition_invariance(seed: int) -> None:
    for L, M, r in [(50, 80, 4), (128, 128, 9), (200, 60, 15)]:
        V = low_rank_plus_noise(L, M, r, seed, factor=1.2)
        a, b = evbmf(V), evbmf(V.T)
        assert a.rank == b.rank
        assert a.sigma2 == pytest.approx(b.sigma2, rel=1e-6)


@pytest.mark.parametrize("c", [1e-8, 1e-3, 7.0, 1e6, -2.5])
def test_scale_invariance(c: float) -> None:
    for L, M, r, factor in [(50, 80, 4, 3.0), (128, 128, 9, 1.1), (200, 60, 15, 1.5)]:
        V = low_rank_plus_noise(L, M, r, 11, factor=factor)
        a, b = evbmf(V), evbmf(c * V)
        assert a.rank == b.rank
        assert b.sigma2 == pytest.approx(c * c * a.sigma2, rel=1e-6)


def test_torch_and_numpy_inputs_agree() -> None:
    V = low_rank_plus_noise(50, 80, 7, seed=5)
    assert estimate_rank(torch.from_numpy(V)) == estimate_rank(V) == 7
    assert estimate_rank(torch.from_numpy(V).float()) == 7


def test_rank_never_exceeds_h_bar() -> None:
    # Signal of rank 40 in a 50 x 80 matrix: more components than H_bar = 30 can resolve.
    V = low_rank_plus_noise(50, 80, 40, seed=6, factor=5.0)
    assert estimate_rank(V) <= h_bar(50, 80) == 30
    assert estimate_rank(V, sigma2=1.0) == 40


def test_bad_inputs_raise() -> None:
    from rankopt.errors import DecompositionError

    with pytest.raises(DecompositionError, match="2-D"):
        estimate_rank(np.zeros((2, 3, 4)))
    with pytest.raises(DecompositionError, match="NaN"):
        estimate_rank(np.array([[1.0, np.nan]]))
    with pytest.raises(DecompositionError, match=r"sigma2=-1\.0"):
        estimate_rank(np.eye(3), sigma2=-1.0)


# ---------------------------------------------------------------------- brute force
def _design_objective(sigma2: float, s: np.ndarray, L: int, M: int) -> float:
    """design.md §3's objective, written out literally (H = L, residual = 0)."""
    alpha = L / M
    tau_bar = TAU_COEF * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    x = s**2 / (M * sigma2)
    small, big = x[x <= x_bar], x[x > x_bar]
    tau = 0.5 * (big - (1 + alpha) + np.sqrt((big - (1 + alpha)) ** 2 - 4 * alpha))
    return float(
        np.sum(small - np.log(small))
        + np.sum(big - tau + np.log((tau + 1) / big) + alpha * np.log(tau / alpha + 1))
    )


def _design_objective_grid(grid: np.ndarray, s: np.ndarray, L: int, M: int) -> np.ndarray:
    """``_design_objective`` at every point of ``grid`` at once (broadcast over sigma2)."""
    alpha = L / M
    tau_bar = TAU_COEF * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    x = s[None, :] ** 2 / (M * grid[:, None])
    big = x > x_bar
    xb = np.where(big, x, 2 * x_bar)  # keeps tau real where the branch is unused
    tau = 0.5 * (xb - (1 + alpha) + np.sqrt((xb - (1 + alpha)) ** 2 - 4 * alpha))
    upper_branch = xb - tau + np.log((tau + 1) / xb) + alpha * np.log(tau / alpha + 1)
    return np.sum(np.where(big, upper_branch, x - np.log(x)), axis=1)


def _design_bounds(s: np.ndarray, L: int, M: int) -> tuple[float, float, float]:
    alpha = L / M
    tau_bar = TAU_COEF * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    e = min(math.ceil(L / (1 + alpha)) - 1, L) - 1
    upper = float(np.sum(s**2)) / (L * M)
    lower = max(s[e + 1] ** 2 / (M * x_bar), float(np.mean(s[e + 1 :] ** 2)) / M)
    return lower, upper, x_bar


@pytest.mark.parametrize(
    ("L", "M", "rank", "factor", "seed"),
    [(50, 80, 5, 3.0, 0), (60, 200, 12, 1.0, 1), (128, 128, 20, 1.3, 2), (30, 40, 3, 0.8, 3)],
)
def test_noise_variance_matches_dense_grid(
    L: int, M: int, rank: int, factor: float, seed: int
) -> None:
    """The estimated sigma2 is the minimiser of design.md's objective on a 20,001-point grid."""
    V = low_rank_plus_noise(L, M, rank, seed, factor=factor)
    s = np.linalg.svd(V, compute_uv=False)
    lower, upper, x_bar = _design_bounds(s, L, M)
    grid = np.linspace(lower, upper, 20_001)
    values = _design_objective_grid(grid, s, L, M)
    best = int(np.argmin(values))
    result = evbmf(V)
    step = grid[1] - grid[0]
    assert abs(result.sigma2 - grid[best]) <= 2 * step
    assert _design_objective(result.sigma2, s, L, M) <= values[best] + 1e-9 * abs(values[best])
    # Same rank as thresholding with the grid's sigma2.
    assert result.rank == int(np.sum(s > math.sqrt(grid[best] * M * x_bar)))


def _reference_evbmf_rank(V: np.ndarray) -> int:
    """A transcription of CasvandenBogaard/VBMF's EVBMF (bounded Brent on sigma2 directly)."""
    if V.shape[0] > V.shape[1]:
        V = V.T
    L, M = V.shape
    s = np.linalg.svd(V, compute_uv=False)
    lower, upper, x_bar = _design_bounds(s, L, M)
    opt = minimize_scalar(
        _design_objective, args=(s, L, M), bounds=(lower, upper), method="bounded"
    )
    return int(np.sum(s > math.sqrt(M * opt.x * x_bar)))


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_reference_transcription(seed: int) -> None:
    for L, M, r in [(50, 80, 3), (80, 50, 10), (128, 128, 16), (64, 576, 9)]:
        V = low_rank_plus_noise(L, M, r, seed, factor=1.5)
        assert estimate_rank(V) == _reference_evbmf_rank(V) == r


# ---------------------------------------------------------------------- vbmf_ranks
def _with_noise(weight: torch.Tensor, seed: int, sd: float = 1e-3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return weight + sd * torch.randn(weight.shape, generator=g, dtype=weight.dtype)


def _conv(T: int, S: int, k: int, weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(S, T, k, padding=k // 2)
    with torch.no_grad():
        conv.weight.copy_(weight.to(torch.float32))
    return conv


def test_tucker2_and_cp_read_the_right_unfoldings() -> None:
    T, S, k, R3, R4 = 24, 16, 3, 4, 6
    g = torch.Generator().manual_seed(0)
    core = torch.randn(R4, R3, k, k, generator=g, dtype=torch.float64)
    U_out = torch.randn(T, R4, generator=g, dtype=torch.float64)
    U_in = torch.randn(S, R3, generator=g, dtype=torch.float64)
    W = torch.einsum("abhw,ta,sb->tshw", core, U_out, U_in)
    conv = _conv(T, S, k, _with_noise(W, 1))
    assert vbmf_ranks(conv) == {"r_in": 4, "r_out": 6}
    assert vbmf_ranks(conv, "tucker2") == {"r_in": 4, "r_out": 6}
    assert vbmf_ranks(conv, "cp") == {"r": 6}
    # The channel SVD matrix T x (S*k*k) has the rank of the mode-0 unfolding.
    assert vbmf_ranks(conv, "svd") == {"r": 6}


def test_svd_spatial_svd_gkpd_read_the_right_matrices() -> None:
    T, S, k = 8, 12, 3
    g = torch.Generator().manual_seed(1)
    # Channel SVD: W = sum_r A[t, r] B[r, s, h, w], rank 5.
    A = torch.randn(T, 5, generator=g, dtype=torch.float64)
    B = torch.randn(5, S, k, k, generator=g, dtype=torch.float64)
    conv = _conv(T, S, k, _with_noise(torch.einsum("tr,rshw->tshw", A, B), 2))
    assert vbmf_ranks(conv, "svd") == {"r": 5}

    # Spatial SVD (Jaderberg scheme 2): W[t,s,h,w] = sum_r V[r,s,h] H[t,r,w], rank 3.
    Vf = torch.randn(3, S, k, generator=g, dtype=torch.float64)
    Hf = torch.randn(T, 3, k, generator=g, dtype=torch.float64)
    conv = _conv(T, S, k, _with_noise(torch.einsum("rsh,trw->tshw", Vf, Hf), 3))
    assert vbmf_ranks(conv, "spatial_svd") == {"r": 3}

    # GKPD: T1 = 2, S1 = 3 (divisors closest to sqrt(8), sqrt(12)); a sum of 2 Kronecker
    # products A_r (T1 x S1) ⊗ B_r (T2 x S2 x k x k).
    assert (balanced_divisor(8), balanced_divisor(12)) == (2, 3)
    Ak = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    Bk = torch.randn(2, 4, 4, k, k, generator=g, dtype=torch.float64)
    W = torch.einsum("rab,rcdhw->acbdhw", Ak, Bk).reshape(T, S, k, k)
    conv = _conv(T, S, k, _with_noise(W, 4))
    assert vbmf_ranks(conv, "gkpd") == {"r": 2}


def test_linear_svd() -> None:
    g = torch.Generator().manual_seed(2)
    W = torch.randn(40, 7, generator=g, dtype=torch.float64) @ torch.randn(
        7, 100, generator=g, dtype=torch.float64
    )
    lin = nn.Linear(100, 40)
    with torch.no_grad():
        lin.weight.copy_(_with_noise(W, 5).float())
    assert vbmf_ranks(lin, "linear_svd") == {"r": 7}
    assert vbmf_ranks(lin, "linear_svd", weaken=1.0) == {"r": 40}


def testbalanced_divisor() -> None:
    assert [balanced_divisor(n) for n in (1, 7, 12, 16, 32, 64, 96)] == [1, 1, 3, 4, 4, 8, 8]


def test_single_input_channel_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 16, 3)
    # The mode-1 unfolding is 1 x 144 (H_bar = 0: rank 0 -> 1); the mode-0 one is 16 x 9,
    # i.i.d. init (noise: 0 -> 1). Full ranks are S = 1 and T = 16, as in tucker2's space.
    assert vbmf_ranks(conv) == {"r_in": 1, "r_out": 1}
    assert vbmf_ranks(conv, weaken=1.0) == {"r_in": 1, "r_out": 16}
    assert vbmf_ranks(conv, "cp", weaken=1.0) == {"r": 9}  # min(S, T) * 3 * 3


def test_random_init_conv_is_noise() -> None:
    """Kaiming-uniform init has i.i.d. entries: EVBMF sees pure noise (rank 0 -> 1)."""
    for seed in range(3):
        torch.manual_seed(seed)
        conv = nn.Conv2d(64, 64, 3)
        W = conv.weight.detach()
        assert estimate_rank(W.reshape(64, -1)) == 0
        assert estimate_rank(W.permute(1, 0, 2, 3).reshape(64, -1)) == 0
        assert vbmf_ranks(conv) == {"r_in": 1, "r_out": 1}
        assert vbmf_ranks(conv, "svd") == {"r": 1}


@pytest.fixture(scope="module")
def trained_cnn() -> tuple[nn.Sequential, nn.Conv2d, float]:
    """A tiny CNN trained for 2 epochs on sklearn's 8x8 digits (seeded, ~5 s on 2 cores)."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    X = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 10),
    )
    init = nn.Conv2d(32, 32, 3, padding=1)
    init.load_state_dict(net[2].state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (net(X).argmax(1) == y).float().mean().item()
    return net, init, accuracy


def test_trained_conv_has_low_tucker2_ranks(
    trained_cnn: tuple[nn.Sequential, nn.Conv2d, float],
) -> None:
    """Kim et al. 2016: VBMF on a trained conv gives Tucker-2 ranks well below full.

    The same layer at its random init is pure noise (ranks clamp to 1); training adds a
    structured low-rank part that EVBMF picks out (about 8-10 components here).
    """
    net, init, accuracy = trained_cnn
    assert accuracy > 0.9
    conv = net[2]
    assert isinstance(conv, nn.Conv2d)
    assert vbmf_ranks(init) == {"r_in": 1, "r_out": 1}
    ranks = vbmf_ranks(conv)
    assert 4 <= ranks["r_in"] <= 16
    assert 4 <= ranks["r_out"] <= 16
    # Every method gives a rank well below its full rank (32 for all of these matrices,
    # except gkpd's 16 x 576 rearrangement: full 16).
    for method in ("svd", "spatial_svd", "cp"):
        assert 2 <= vbmf_ranks(conv, method)["r"] < 24
    assert 1 <= vbmf_ranks(conv, "gkpd")["r"] < 16
    assert vbmf_ranks(conv, "cp")["r"] == max(ranks.values())
    assert vbmf_ranks(conv, weaken=1.0) == {"r_in": 32, "r_out": 32}
    assert vbmf_ranks(conv, "cp", weaken=1.0) == {"r": 32 * 9}
    head = net[6]
    assert isinstance(head, nn.Linear)
    assert 1 <= vbmf_ranks(head, "linear_svd")["r"] < 10


# ---------------------------------------------------------------------- weaken + errors
def test_weaken_moves_toward_full() -> None:
    T, S, k = 32, 32, 3
    g = torch.Generator().manual_seed(7)
    W = torch.einsum(
        "abhw,ta,sb->tshw",
        torch.randn(9, 5, k, k, generator=g, dtype=torch.float64),
        torch.randn(T, 9, generator=g, dtype=torch.float64),
        torch.randn(S, 5, generator=g, dtype=torch.float64),
    )
    conv = _conv(T, S, k, _with_noise(W, 8))
    assert vbmf_ranks(conv, weaken=0.0) == {"r_in": 5, "r_out": 9}
    assert vbmf_ranks(conv, weaken=1.0) == {"r_in": 32, "r_out": 32}
    # R' = ceil(R + w (full - R)): 5 + 0.5*27 = 18.5 -> 19; 9 + 0.5*23 = 20.5 -> 21.
    assert vbmf_ranks(conv, weaken=0.5) == {"r_in": 19, "r_out": 21}
    # 5 + 0.25*27 = 11.75 -> 12; 9 + 0.25*23 = 14.75 -> 15.
    assert vbmf_ranks(conv, weaken=0.25) == {"r_in": 12, "r_out": 15}
    previous = {"r_in": 0, "r_out": 0}
    for w in np.linspace(0.0, 1.0, 21):
        ranks = vbmf_ranks(conv, weaken=float(w))
        assert all(ranks[key] >= previous[key] for key in ranks)
        previous = ranks
    assert vbmf_ranks(conv, "svd", weaken=0.0) == {"r": 9}
    assert vbmf_ranks(conv, "svd", weaken=1) == {"r": 32}


@pytest.mark.parametrize(("w", "text"), [(-0.1, "-0.1"), (1.5, "1.5"), (math.nan, "nan")])
def test_invalid_weaken_raises(w: float, text: str) -> None:
    conv = nn.Conv2d(8, 8, 3)
    with pytest.raises(InvalidPlanError, match=rf"weaken={text}.*\[0, 1\]"):
        vbmf_ranks(conv, weaken=w)
    assert issubclass(InvalidPlanError, ValueError)


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        vbmf_ranks(nn.Conv2d(8, 8, 3), "tucker")
    message = str(info.value)
    assert "'tucker'" in message
    assert "cp, gkpd, linear_svd, spatial_svd, svd, tucker2" in message
    assert vbmf_methods() == ("cp", "gkpd", "linear_svd", "spatial_svd", "svd", "tucker2")


def test_unsupported_layers_raise() -> None:
    with pytest.raises(UnsupportedLayerError, match="depthwise conv \\(groups=16\\)"):
        vbmf_ranks(nn.Conv2d(16, 16, 3, groups=16))
    with pytest.raises(UnsupportedLayerError, match="grouped conv \\(groups=4\\)"):
        vbmf_ranks(nn.Conv2d(16, 32, 3, groups=4), "svd")
    with pytest.raises(UnsupportedLayerError, match=r"(?i)Conv2d layers, not Linear"):
        vbmf_ranks(nn.Linear(10, 10), "tucker2")
    with pytest.raises(UnsupportedLayerError, match=r"(?i)Linear layers, not Conv2d"):
        vbmf_ranks(nn.Conv2d(8, 8, 3), "linear_svd")


def test_result_type() -> None:
    result = evbmf(low_rank_plus_noise(20, 30, 2, seed=9))
    assert isinstance(result, EVBMFResult)
    assert result.singular_values.shape == (20,)
    assert result.shrunk.shape == (2,)
