"""FID, KID and precision / recall / density / coverage against references one can check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ganserve.eval import metrics


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_fid_of_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(300, 64))
    assert metrics.fid(f, f.copy()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    a, b = metrics.GaussianStats(mu1, np.diag(v1), 0), metrics.GaussianStats(mu2, np.diag(v2), 0)
    got = metrics.frechet_distance(a, b)
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_the_closed_form_for_2x2_covariances():
    # For a 2x2 matrix M with non-negative eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    rng = np.random.default_rng(2)
    for _ in range(20):
        s1, s2 = _random_spd(rng, 2), _random_spd(rng, 2)
        mu1, mu2 = rng.normal(size=2), rng.normal(size=2)
        m = s1 @ s2
        tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
        got = metrics.frechet_distance(metrics.GaussianStats(mu1, s1, 0), metrics.GaussianStats(mu2, s2, 0))
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_trace_sqrt_product_agrees_with_scipy_sqrtm_on_rank_deficient_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    # fewer samples than dimensions, as with 1k samples of 2048-d features: singular covariances
    s1, s2 = np.cov(rng.normal(size=(40, 64)), rowvar=False), np.cov(rng.normal(size=(40, 64)) * 2, rowvar=False)
    ref = np.trace(np.real(scipy_linalg.sqrtm(s1 @ s2)))
    assert metrics.trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-6)


def test_fid_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(4)
    s1, s2 = _random_spd(rng, 4), _random_spd(rng, 4)
    mu1, mu2 = np.zeros(4), np.ones(4)
    a = rng.multivariate_normal(mu1, s1, size=50_000)
    b = rng.multivariate_normal(mu2, s2, size=50_000)
    exact = metrics.frechet_distance(metrics.GaussianStats(mu1, s1, 0), metrics.GaussianStats(mu2, s2, 0))
    assert metrics.fid(a, b) == pytest.approx(exact, rel=0.03)


def test_polynomial_mmd_is_the_unbiased_estimator_written_out():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.5
    d, m = 3, 7

    def k(a, b):
        return (a @ b / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert metrics.polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(6)
    # Many independent small draws from the same distribution: the unbiased estimate averages to ~0 (the biased one,
    # with the kernel's diagonal, would sit clearly above 0 at this size).
    draws = [metrics.polynomial_mmd2(rng.normal(size=(20, 8)), rng.normal(size=(20, 8))) for _ in range(400)]
    mean, sem = np.mean(draws), np.std(draws) / np.sqrt(len(draws))
    assert abs(mean) < 4 * sem
    same = metrics.kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)), subsets=20, subset_size=100)
    shifted = metrics.kid(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 0.5, subsets=20, subset_size=100)
    assert shifted.mean > 10 * abs(same.mean) and shifted.mean > 0
    assert (same.subsets, same.subset_size) == (20, 100)
    again = metrics.kid(np.ones((5, 2)), np.zeros((5, 2)), subsets=3, subset_size=1000)
    assert again.subset_size == 5  # capped by the set sizes


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """Naeem et al.'s prdc package, written out with full distance matrices."""

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_rad = np.sort(dist(real, real), axis=1)[:, k]
    f_rad = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)
    precision = (d < r_rad[:, None]).any(0).mean()
    recall = (d < f_rad[None, :]).any(1).mean()
    density = (d < r_rad[:, None]).sum(0).mean() / k
    coverage = (d.min(1) < r_rad).mean()
    return precision, recall, density, coverage


def test_prdc_matches_the_reference_formulas_and_chunking_changes_nothing():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(120, 5)), rng.normal(size=(90, 5)) * 1.3 + 0.2
    got = metrics.prdc(real, fake, k=5, chunk=32)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(_prdc_reference(real, fake, 5))
    assert metrics.prdc(real, fake, k=5, chunk=1000) == got


def test_prdc_on_a_lattice_where_the_answer_is_known():
    # real: 0, 1, ..., 99 on a line; k = 2 -> radius 1 inside, 2 at both ends. fake: the midpoints 0.5 .. 98.5.
    real = np.arange(100, dtype=np.float64)[:, None]
    fake = real[:-1] + 0.5
    got = metrics.prdc(real, fake, k=2)
    # each midpoint lies in its two neighbours' balls; 1.5 and 97.5 also in an end point's wider ball
    assert (got.precision, got.recall, got.coverage) == (1.0, 1.0, 1.0)
    assert got.density == pytest.approx((99 * 2 + 2) / 99 / 2)


def test_prdc_of_a_missing_mode_and_of_a_far_away_set():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 100  # two far-apart clusters
    real = np.concatenate([a, b])
    half = metrics.prdc(real, a.copy(), k=5)  # a generator that only draws cluster a, perfectly
    assert half.precision == 1.0 and half.recall == 0.5 and half.coverage == 0.5
    far = metrics.prdc(real, rng.normal(size=(40, 3)) - 100, k=5)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_metrics_refuse_too_few_samples():
    with pytest.raises(ValueError, match="k = 5"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((10, 2)), k=5)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid(np.zeros((1, 2)), np.zeros((10, 2)))


def test_kid_from_precomputed_kernels_equals_kid_from_each_subset(monkeypatch):
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(60, 16)), rng.normal(size=(50, 16)) + 0.3
    fast = metrics.kid(real, fake, subsets=10, subset_size=30, seed=3)
    monkeypatch.setattr(metrics, "PRECOMPUTE_KERNELS_UP_TO", 0)
    slow = metrics.kid(real, fake, subsets=10, subset_size=30, seed=3)
    assert fast.mean == pytest.approx(slow.mean, rel=1e-9) and fast.std == pytest.approx(slow.std, rel=1e-6)


def test_fid_from_samples_equals_fid_from_covariances_when_samples_are_fewer_than_dimensions():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(30, 50)), rng.normal(size=(40, 50)) * 1.5 + 0.2  # N < D: the sample form
    via_stats = metrics.frechet_distance(metrics.gaussian_stats(real), metrics.gaussian_stats(fake))
    assert metrics.fid(real, fake) == pytest.approx(via_stats, rel=1e-7)  # eigh of singular S: sqrt of round-off
    assert metrics.fid(real, real.copy()) == pytest.approx(0.0, abs=1e-8)
