"""Distances between sets of image features: FID, KID and precision/recall. All in float64.

The inputs are feature matrices (N, D) from one extractor (metrics/features.py); which extractor
produced a number must be reported with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def _f64(x: Array) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64)


def gaussian_stats(features: Array) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased, N-1) covariance of features (N, D), as numpy's np.cov computes them."""
    f = _f64(features)
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _np64(x: Array) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    vals, vecs = np.linalg.eigh(matrix)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) (Heusel et al. 2017).

    With S1 = A A^T, S1 S2 is similar to A^T S2 A, which is symmetric PSD, so
    tr((S1 S2)^(1/2)) is the sum of the square roots of A^T S2 A's eigenvalues. A Cholesky factor
    and one symmetric eigenvalue solve replace the general matrix square root (scipy's sqrtm,
    a Schur iteration): several times faster, and no complex parts to discard. A singular S1
    (fewer samples than dimensions) has no Cholesky factor; its symmetric square root serves.
    numpy, not torch: torch.linalg.eigh in float64 on CPU was 10x slower than LAPACK via numpy.
    """
    mu1, mu2, s1, s2 = _np64(mu1), _np64(mu2), _np64(sigma1), _np64(sigma2)
    try:
        a = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:
        a = _sqrt_psd(s1)
    middle = a.T @ s2 @ a
    middle = (middle + middle.T) / 2  # symmetric up to rounding; eigvalsh wants exactly so
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_features(real: Array, fake: Array) -> float:
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def half_sample_se(statistic: Callable[[torch.Tensor, torch.Tensor], float | Sequence[float]], real: Array,
                   fake: Array, draws: int = 10, generator: torch.Generator | None = None) -> list[float]:
    """Standard error of each value `statistic(real, fake)` returns, over independent draws of
    both sets: the statistic on `draws` random halves of each set, taken without replacement.

    Why halves: for a statistic whose variance falls as 1/n in each set (FID, FID-infinity, KID,
    precision and recall all do), a half-sample's value varies about its mean, given the full sets,
    by Var(n/2) - Var(n) = Var(n): the delete-d jackknife with d = n/2 (Shao & Wu 1989). A
    bootstrap would put duplicate points in the sets, which shrink precision/recall's k-NN radii,
    and resampling the generated set alone misses the real set's noise (a 500-image held-out split
    has plenty). Checked by simulation in tests/test_frechet.py: over 200 independent draws of
    Gaussian features, +-1.96 s.e. covers the estimate's mean 90-98% of the time for each metric.
    """
    x, y = _f64(real), _f64(fake)
    n, m = x.shape[0] // 2, y.shape[0] // 2
    generator = generator or torch.Generator().manual_seed(0)
    values = []
    for _ in range(draws):
        xs = x[torch.randperm(x.shape[0], generator=generator)[:n]]
        ys = y[torch.randperm(y.shape[0], generator=generator)[:m]]
        out = statistic(xs, ys)
        values.append([out] if isinstance(out, float) else list(out))
    return [float(v) for v in np.std(np.asarray(values, dtype=np.float64), axis=0, ddof=1)]


def fid_infinity(real_stats: tuple[torch.Tensor, torch.Tensor], fake: Array, sizes: int = 6, draws: int = 3,
                 generator: torch.Generator | None = None) -> float:
    """FID extrapolated to infinitely many generated images (Chong & Forsyth 2020, "Effectively
    Unbiased FID").

    FID is biased upwards by about k/N for N generated images, with k depending on the
    generator, so FIDs at one N rank generators unreliably. FID is computed on random subsets
    of `sizes` sizes from N/2 to N (`draws` subsets each), fitted by a line in 1/N, and read off
    at 1/N = 0. (Smaller subsets bend the line: with N/5 and 128-d features it undershot by 2-3
    standard errors.) Its standard error: `half_sample_se`.
    """
    y = _f64(fake)
    n = len(y)
    generator = generator or torch.Generator().manual_seed(0)
    xs, fids = [], []
    for size in fid_infinity_sizes(n, sizes):
        for _ in range(draws if size < n else 1):
            subset = y[torch.randperm(n, generator=generator)[:size]]
            xs.append(1.0 / size)
            fids.append(frechet_distance(*real_stats, *gaussian_stats(subset)))
    x, f = np.asarray(xs), np.asarray(fids)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    return float(coef[0])


def fid_infinity_sizes(n: int, sizes: int = 6) -> list[int]:
    """The subset sizes FID-infinity fits its line over: `sizes` steps from n/2 to n."""
    return torch.linspace(max(n // 2, 2), n, sizes).round().long().tolist()


def spread_ratio(real_stats: tuple[torch.Tensor, torch.Tensor], fake: Array) -> float:
    """Total variance of the generated features over the real ones': about 1 for a generator
    that covers the data, near 0 when its samples are near-identical (mode collapse)."""
    return float(torch.trace(gaussian_stats(fake)[1]) / torch.trace(real_stats[1]))


def kid(real: Array, fake: Array, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets. Returns the mean and
    the subsets' spread (std), which is not the mean's standard error: subsets of one pair of sets
    overlap, so their spread misses most of the sampling noise (`half_sample_se` measures it)."""
    x, y = _f64(real), _f64(fake)
    d = x.shape[1]
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    generator = generator or torch.Generator().manual_seed(0)
    values = []
    for _ in range(subsets):
        xs = x[torch.randperm(x.shape[0], generator=generator)[:m]]
        ys = y[torch.randperm(y.shape[0], generator=generator)[:m]]
        kxx = (xs @ xs.T / d + 1) ** 3
        kyy = (ys @ ys.T / d + 1) ** 3
        kxy = (xs @ ys.T / d + 1) ** 3
        # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
        mmd = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (m * (m - 1))
        values.append(float(mmd - 2 * kxy.mean()))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start : start + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the row itself is at distance 0
    return torch.cat(radii)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """For each point: does it fall inside any centre's ball?"""
    out = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start : start + chunk], centres)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: Array, fake: Array, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union
    of balls reaching every sample's k-th nearest neighbour. Precision: share of fake samples on the
    real manifold (quality); recall: share of real samples on the fake manifold (coverage)."""
    x, y = _f64(real), _f64(fake)
    if min(x.shape[0], y.shape[0]) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples in each set")
    precision = _covered(y, x, _kth_neighbour_radii(x, k)).double().mean()
    recall = _covered(x, y, _kth_neighbour_radii(y, k)).double().mean()
    return float(precision), float(recall)

