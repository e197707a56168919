import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from genmodels.metrics.frechet import (fid_from_features, fid_infinity, fid_infinity_sizes, frechet_distance,
                                       gaussian_stats, half_sample_se, kid, precision_recall, spread_ratio)


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
    value = fid_infinity(real_stats, fake)
    assert at_n - true > 1.5  # the bias (about 2 here) that FID_inf removes
    assert abs(value - true) < abs(at_n - true) / 5


def test_spread_ratio_sees_collapse():
    torch.manual_seed(0)
    real = torch.randn(2000, 16, dtype=torch.float64)
    stats = gaussian_stats(real)
    assert spread_ratio(stats, torch.randn(2000, 16, dtype=torch.float64)) == pytest.approx(1.0, abs=0.1)
    assert spread_ratio(stats, torch.randn(2000, 16, dtype=torch.float64) * 0.01 + 3) < 0.001


# --- reference implementations ------------------------------------------------------------------


def test_fid_infinity_is_the_reference_fit_over_the_same_subsets():
    """Chong & Forsyth's reference reads the intercept of an ordinary least-squares line through
    (1/N, FID_N); the same subsets fitted with numpy's polyfit give the same intercept."""
    g = torch.Generator().manual_seed(3)
    real_stats = gaussian_stats(torch.randn(800, 12, generator=g, dtype=torch.float64))
    fake = torch.randn(1000, 12, generator=g, dtype=torch.float64) * 1.1 + 0.2
    ours = fid_infinity(real_stats, fake, generator=torch.Generator().manual_seed(9))
    replay, xs, fids = torch.Generator().manual_seed(9), [], []
    for size in fid_infinity_sizes(len(fake)):
        for _ in range(3 if size < len(fake) else 1):
            subset = fake[torch.randperm(len(fake), generator=replay)[:size]]
            xs.append(1 / size)
            fids.append(frechet_distance(*real_stats, *gaussian_stats(subset)))
    slope, intercept = np.polyfit(xs, fids, 1)
    assert ours == pytest.approx(intercept, rel=1e-9) and slope > 0


def test_kid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(4)
    real = torch.randn(300, 24, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 24, generator=g, dtype=torch.float64) * 1.2 + 0.1
    # One subset of all images: both compute the unbiased MMD^2 of the full sets, whatever the order.
    reference = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=300)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    ref_mean, _ = reference.compute()
    ours, _ = kid(real, fake, subsets=1, subset_size=300)
    assert ours == pytest.approx(float(ref_mean), rel=1e-9)


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019), written out with loops: a sample is on a set's manifold when it
    lies within some member's distance to that member's k-th nearest other member."""
    def radii(x):
        return [sorted(np.linalg.norm(x - p, axis=1))[k] for p in x]  # index 0 is the point itself

    def share_covered(points, centres):
        r = radii(centres)
        return np.mean([any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r)) for p in points])

    return share_covered(fake, real), share_covered(real, fake)


def test_precision_recall_by_hand():
    # On a line, k=1: the real radii are 1, 1, 2, 3, 4 (each point's nearest other point).
    real = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    fake = torch.tensor([[0.5], [4.5], [8.0], [15.0]])  # 15 is 5 from 10, beyond its radius 4
    # fake radii, k=1: 4, 3.5, 3.5, 7; every real point lies within one of them.
    assert precision_recall(real, fake, k=1) == (0.75, 1.0)
    # k=2: real radii 3, 2, 3, 4, 7 take 15 in; fake radii 4, 3.5, 4.5, 10.5.
    assert precision_recall(real, fake, k=2) == (1.0, 1.0)
    assert precision_recall(real, torch.tensor([[2.2], [2.4], [2.6], [2.8]]), k=1) == (1.0, 0.2)


def test_precision_recall_match_the_published_algorithm():
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((120, 4)), rng.standard_normal((90, 4)) * 1.3 + 0.4
    for k in (1, 3, 5):
        ours = precision_recall(torch.tensor(real), torch.tensor(fake), k=k)
        assert ours == pytest.approx(knn_precision_recall(real, fake, k), abs=1e-12), k


# --- standard errors, checked by simulation ---------------------------------------------------------


def gaussian_sets(generator, n=200, m=400, d=8):
    """Real N(0, I) and generated N(mu, S) features: independent draws of both sets."""
    scale = torch.linspace(0.7, 1.3, d, dtype=torch.float64)
    real = torch.randn(n, d, generator=generator, dtype=torch.float64)
    fake = torch.randn(m, d, generator=generator, dtype=torch.float64) * scale + 0.15
    return real, fake


STATISTICS = {
    "fid": lambda r, f: frechet_distance(*gaussian_stats(r), *gaussian_stats(f)),
    "fid_inf": lambda r, f: fid_infinity(gaussian_stats(r), f),
    "kid": lambda r, f: kid(r, f, subsets=10, subset_size=1000)[0],
    "precision_recall": lambda r, f: precision_recall(r, f, k=3),
}


@pytest.mark.parametrize("name", list(STATISTICS))
def test_standard_errors_cover_the_mean_of_independent_draws(name):
    """What an error bar claims: over independent draws of the real and the generated set,
    value +- 1.96 s.e. covers the estimate's mean about 95% of the time. 200 draws, each with
    the default 10 half-samples; the mean from 1,000 more draws (for KID, also its closed form)."""
    statistic = STATISTICS[name]
    g = torch.Generator().manual_seed(11)
    values, errors = [], []
    for _ in range(200):
        real, fake = gaussian_sets(g)
        out = statistic(real, fake)
        values.append(np.atleast_1d(out))
        errors.append(half_sample_se(statistic, real, fake, generator=g))
    mean = np.mean([np.atleast_1d(statistic(*gaussian_sets(g))) for _ in range(1000)], axis=0)
    values, errors = np.asarray(values), np.asarray(errors)
    coverage = np.mean(np.abs(values - mean) <= 1.96 * errors, axis=0)
    assert np.all((0.90 <= coverage) & (coverage <= 0.98)), (coverage, values.std(axis=0), errors.mean(axis=0))
    if name == "kid":
        # Unbiased, and for these sets MMD^2 has a closed form: with k(x, y) = (x.y/d + 1)^3,
        # E k = 1 + 3 E[(x.y)^2]/d^2 + ... ; here the means and scales give the value below.
        assert abs(mean[0] - kid_closed_form()) < 3 * values.std() / np.sqrt(1000)


def kid_closed_form(d: int = 8) -> float:
    """MMD^2 between N(0, I) and N(mu, diag(s^2)) under (x.y/d + 1)^3, from Gaussian moments."""
    s2 = torch.linspace(0.7, 1.3, d, dtype=torch.float64).pow(2).numpy()
    mu = np.full(d, 0.15)

    def e_kernel(m1, v1, m2, v2):
        # x ~ N(m1, diag v1), y ~ N(m2, diag v2) independent; u = x.y/d. E(1+u)^3 = 1 + 3Eu + 3Eu^2 + Eu^3.
        a = m1 * m2  # E[x_i y_i]
        b = (v1 + m1**2) * (v2 + m2**2)  # E[x_i^2 y_i^2]
        c = (m1**3 + 3 * m1 * v1) * (m2**3 + 3 * m2 * v2)  # E[x_i^3 y_i^3]
        e1 = a.sum()
        e2 = b.sum() + (a.sum() ** 2 - (a**2).sum())
        e3 = c.sum() + 3 * ((b[:, None] * a[None, :]).sum() - (a * b).sum()) \
            + (a.sum() ** 3 - 3 * (a**2).sum() * a.sum() + 2 * (a**3).sum())
        return 1 + 3 * e1 / d + 3 * e2 / d**2 + e3 / d**3

    zero, one = np.zeros(d), np.ones(d)
    return e_kernel(zero, one, zero, one) + e_kernel(mu, s2, mu, s2) - 2 * e_kernel(zero, one, mu, s2)
