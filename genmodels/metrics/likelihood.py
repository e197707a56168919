"""Per-image log-likelihood terms, the ELBO and the importance-weighted (IWAE) bound, in nats."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, closed form (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dim."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


def reconstruction_nll(
    output: torch.Tensor, x: torch.Tensor, likelihood: str, log_sigma: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x | z) per image, summed over pixels.

    Bernoulli: `output` are logits (BCE with logits is the stable form of sigmoid + BCE).
    Gaussian: `output` are means with one learned scale shared by all pixels (sigma-VAE,
    Rybkin et al. 2021), so the balance between reconstruction and KL is learned, not tuned.
    logistic256: `output` holds (B, 2C, ...) means in [-1, 1] and log-scales of a discretized
    logistic over 256 levels per pixel value: a proper likelihood of 8-bit images.
    """
    dims = tuple(range(1, x.ndim))
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(output, x, reduction="none").sum(dim=dims)
    if likelihood == "logistic256":
        mean, raw = output.chunk(2, dim=1)
        # The scale starts near 1/20 of the [-1, 1] range (a decoder's output near 0 means
        # exp(-3)), not 1: from 1 the optimizer takes hundreds of steps just to narrow it.
        # Scales below exp(-7), a tenth of a bin, add nothing but overflow.
        return discretized_logistic_nll(mean, x, (raw - 3.0).clamp(min=-7.0))
    if likelihood == "gaussian":
        assert log_sigma is not None
        nll = 0.5 * LOG_2PI + log_sigma + 0.5 * ((x - output) / log_sigma.exp()).pow(2)
        return nll.sum(dim=dims)
    raise ValueError(f"unknown likelihood '{likelihood}'")


def discretized_logistic_nll(mean: torch.Tensor, x: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log P(x | z) per image for 8-bit pixels (x = k/255, k in 0..255), each the mass a logistic
    with `mean` (in [-1, 1] units) and scale exp(`log_scale`) puts on the pixel's bin of width 2/255,
    the end bins reaching to -inf and +inf so that the 256 masses sum to 1 (Salimans et al. 2017,
    PixelCNN++, without the mixture). Where a bin's mass underflows, the density at its centre
    times the bin width stands in for it, as there."""
    centred = x * 2 - 1 - mean
    inv_scale = torch.exp(-log_scale)
    plus, minus = (centred + 1 / 255) * inv_scale, (centred - 1 / 255) * inv_scale
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the lowest bin, k = 0
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the highest, k = 255
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = centred * inv_scale
    log_pdf_mid = mid - log_scale - 2 * F.softplus(mid) - math.log(127.5)
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    log_p = torch.where(x < 0.5 / 255, log_cdf_plus, torch.where(x > 254.5 / 255, log_one_minus_cdf_minus, log_mid))
    return -log_p.sum(dim=tuple(range(1, x.ndim)))


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """nats per image -> bits per pixel value, the unit colour likelihoods are compared in."""
    return nats_per_image / (dims * math.log(2))


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i w_i from log_weights of shape (k, B): a lower bound on log p(x) that
    tightens as k grows (Burda et al. 2016). k=1 is the ELBO."""
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)
