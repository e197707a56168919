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
    """
    dims = tuple(range(1, x.ndim))
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(output, x, reduction="none").sum(dim=dims)
    if likelihood == "gaussian":
        assert log_sigma is not None
        nll = 0.5 * LOG_2PI + log_sigma + 0.5 * ((x - output) / log_sigma.exp()).pow(2)
        return nll.sum(dim=dims)
    raise ValueError(f"unknown likelihood '{likelihood}'")


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i w_i from log_weights of shape (k, B): a lower bound on log p(x) that
    tightens as k grows (Burda et al. 2016). k=1 is the ELBO."""
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)
