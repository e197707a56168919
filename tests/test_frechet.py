import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from genmodels.metrics.frechet import (fid_from_features, fid_infinity, fid_standard_error, frechet_distance,
                                       gaussian_stats, kid, precision_recall, spread_ratio)


@pytest.mark.parametrize("dim, n", [(64, 1000), (2048, 4000)])
def test_frechet_matches_pytorch_fid(dim, n):
    rng = np.random.default_rng(dim)
    a = rng.standard_normal((n, dim))
    b = 1.2 * rng.standard_normal((n, dim)) + 0.1 + 0.3 * a[:, :1]
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert abs(ours - ref) / ref < 1e-6


def test_gaussian_stats_match_numpy():
    x = np.random.default_rng(0).standard_normal((300, 16))
    mu, sigma = gaussian_stats(x)
    assert np.allclose(mu.numpy(), x.mean(0)) and np.allclose(sigma.numpy(), np.cov(x, rowvar=False))


def test_fid_zero_for_identical_sets():
    x = torch.randn(500, 8, dtype=torch.float64)
    assert abs(fid_from_features(x, x)) < 1e-8


def test_kid_same_vs_different_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 32, generator=g), torch.randn(1500, 32, generator=g)
    c = torch.randn(1500, 32, generator=g) * 1.5 + 0.5
    same, same_std = kid(a, b, subsets=20, subset_size=500)
    diff, _ = kid(a, c, subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 20 * abs(same) and diff > 0.1


def test_precision_recall():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(800, 8, generator=g)
    p, r = precision_recall(real, torch.randn(800, 8, generator=g))
    assert p > 0.8 and r > 0.8
    # A collapsed generator: every sample near one real mode -> precise, but no recall.
    collapsed = real[:1] + 0.01 * torch.randn(800, 8, generator=g)
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.05
    # Samples far away from the data: neither.
    p, r = precision_recall(real, torch.randn(800, 8, generator=g) + 10)
    assert p == 0.0 and r == 0.0


def test_frechet_singular_covariance_matches_pytorch_fid():
    """Fewer samples than dimensions: no Cholesky factor, the symmetric square root is used."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((50, 64)), rng.standard_normal((50, 64)) + 0.1
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert abs(frechet_distance(mu1, s1, mu2, s2) - ref) / ref < 1e-6


def test_fid_infinity_recovers_a_known_value():
    """Real N(0, I), generated N(mu, I): the true FID is |mu|^2; FID at N generated samples is
    biased upwards, the extrapolation to infinitely many is not."""
    torch.manual_seed(0)
    d, n = 128, 2000
    mu = torch.full((d,), 0.25, dtype=torch.float64)
    true = float(mu @ mu)  # 8.0
    real_stats = (torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    fake = torch.randn(n, d, dtype=torch.float64) + mu
    at_n = frechet_distance(*real_stats, *gaussian_stats(fake))
    value, se = fid_infinity(real_stats, fake)
    assert at_n - true > 1.5  # the bias (about 2 here) that FID_inf removes
    assert abs(value - true) < 3 * se + 0.05 and abs(value - true) < abs(at_n - true) / 5
    assert 0 < se < 0.3 and 0 < fid_standard_error(real_stats, fake) < 0.5


def test_spread_ratio_sees_collapse():
    torch.manual_seed(0)
    real = torch.randn(2000, 16, dtype=torch.float64)
    stats = gaussian_stats(real)
    assert spread_ratio(stats, torch.randn(2000, 16, dtype=torch.float64)) == pytest.approx(1.0, abs=0.1)
    assert spread_ratio(stats, torch.randn(2000, 16, dtype=torch.float64) * 0.01 + 3) < 0.001
