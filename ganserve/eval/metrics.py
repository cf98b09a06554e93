"""Sample-quality metrics on feature vectors (rows): FID, KID, and precision / recall / density / coverage.

Everything is float64. The estimators follow the papers' reference code so the numbers compare with published ones at
the same sample count: FID (Heusel et al. 2017) as in pytorch-fid / NVlabs, KID (Bińkowski et al. 2018) as the
unbiased polynomial-kernel MMD averaged over random subsets as in NVlabs' ``kernel_inception_distance.py``, and the
k-NN manifold metrics as in Naeem et al. 2020's ``prdc`` (precision/recall are Kynkäänniemi et al. 2019's definition
with the k-th neighbour radius; strict ``<`` like prdc).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class GaussianStats:
    mu: np.ndarray  # [D]
    sigma: np.ndarray  # [D, D], unbiased covariance (ddof = 1, as np.cov)
    n: int


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows [N, D], got shape {f.shape}")
    return GaussianStats(f.mean(0), np.cov(f, rowvar=False), f.shape[0])


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^1/2) for covariance matrices.

    sigma1 sigma2 is not symmetric, which is why scipy's general ``sqrtm`` can return complex parts and needs an
    ``eps`` fix-up on near-singular covariances (N < D, as at 1-2k samples of 2048-d features). It is similar to the
    symmetric PSD matrix s sigma2 s with s = sigma1^1/2, so the trace is the sum of that matrix's eigenvalues' roots:
    two symmetric eigendecompositions, always real.
    """
    s = _sqrt_psd(sigma1)
    m = s @ sigma2 @ s
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2): the Fréchet distance of two Gaussians."""
    diff = a.mu - b.mu
    value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt_product(a.sigma, b.sigma)
    return float(max(value, 0.0))


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets. With fewer samples than dimensions (1-2k samples of 2048-d features) it uses the
    sample form: with centred rows A1, A2, S_i = A_i^T A_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are those of
    M M^T with M = A1 A2^T / sqrt((n1 - 1)(n2 - 1)), so tr (S1 S2)^1/2 is M's nuclear norm: an n1 x n2 SVD instead of
    two 2048 x 2048 eigendecompositions (minutes on two CPU threads), the same value."""
    a, b = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(a.shape[0], b.shape[0]) >= a.shape[1]:
        return frechet_distance(gaussian_stats(a), gaussian_stats(b))
    for x in (a, b):
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need at least 2 feature rows [N, D], got shape {x.shape}")
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    diff = a.mean(0) - b.mean(0)
    tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    value = diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2 * tr_sqrt
    return float(max(value, 0.0))


@dataclass
class KID:
    mean: float
    std: float  # over subsets: the spread of the estimate, not a confidence interval of the population value
    subsets: int
    subset_size: int


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = kxx.shape[0]
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / d + 1)^3 (the KID paper's): within-set sums skip the diagonal."""
    return _mmd2_from_kernels(_poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y))


PRECOMPUTE_KERNELS_UP_TO = 4096  # rows per set: three N x N float64 kernel matrices stay under 400 MB


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KID:
    """KID as in the paper's and NVlabs' code: the mean of the unbiased MMD^2 over ``subsets`` random subsets of
    ``min(subset_size, N_real, N_fake)`` rows each, drawn without replacement (seeded: same features, same value).

    Up to a few thousand rows the kernel matrices are computed once and each subset indexes into them: the same
    values as per-subset products, without 100 x 3 matrix products of 1000 x 2048 (minutes on two CPU threads).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    draws = [(rng.choice(fake.shape[0], m, replace=False), rng.choice(real.shape[0], m, replace=False))
             for _ in range(subsets)]  # fmt: skip
    if max(real.shape[0], fake.shape[0]) <= PRECOMPUTE_KERNELS_UP_TO:
        kff, krr, kfr = _poly_kernel(fake, fake), _poly_kernel(real, real), _poly_kernel(fake, real)
        values = [_mmd2_from_kernels(kff[np.ix_(f, f)], krr[np.ix_(r, r)], kfr[np.ix_(f, r)]) for f, r in draws]
    else:
        values = [polynomial_mmd2(fake[f], real[r]) for f, r in draws]
    return KID(float(np.mean(values)), float(np.std(values)), subsets, m)


@dataclass
class PRDC:
    precision: float  # share of fake samples inside the real manifold (fidelity)
    recall: float  # share of real samples inside the fake manifold (diversity)
    density: float  # how many real neighbourhoods contain each fake sample, / k (can exceed 1)
    coverage: float  # share of real samples whose neighbourhood contains a fake sample
    k: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # float64 via the Gram expansion; clamping round-off keeps sqrt finite
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2 * a @ b.T
    return d2.clamp_min_(0).sqrt_()


def kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself, at distance 0, is not counted)."""
    if x.shape[0] <= k:
        raise ValueError(f"k = {k} needs more than {k} samples, got {x.shape[0]}")
    radii = []
    for start in range(0, x.shape[0], chunk):
        d = _distances(x[start : start + chunk], x)
        rows = torch.arange(d.shape[0])
        d[rows, rows + start] = -1.0  # self: sorts first, so the (k+1)-th smallest is the k-th other neighbour
        radii.append(torch.kthvalue(d, k + 1, dim=1).values)
    return torch.cat(radii)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 1024) -> PRDC:
    """Precision, recall, density and coverage with k-NN balls (Naeem et al. 2020; Kynkäänniemi et al. 2019)."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    r_radius, f_radius = kth_neighbour_radius(r, k, chunk), kth_neighbour_radius(f, k, chunk)
    inside_real = torch.zeros(f.shape[0], dtype=torch.float64)  # per fake: real balls containing it
    real_covered = torch.zeros(r.shape[0], dtype=torch.bool)  # per real: a fake sample in its ball
    real_recalled = torch.zeros(r.shape[0], dtype=torch.bool)  # per real: inside some fake ball
    for start in range(0, r.shape[0], chunk):
        d = _distances(r[start : start + chunk], f)  # [real chunk, fake]
        in_real_ball = d < r_radius[start : start + chunk, None]
        inside_real += in_real_ball.sum(0)
        real_covered[start : start + chunk] = d.min(1).values < r_radius[start : start + chunk]
        real_recalled[start : start + chunk] = (d < f_radius[None]).any(1)
    return PRDC(
        precision=float((inside_real > 0).double().mean()),
        recall=float(real_recalled.double().mean()),
        density=float(inside_real.mean() / k),
        coverage=float(real_covered.double().mean()),
        k=k,
    )
