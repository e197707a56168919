"""Variational autoencoder (Kingma & Welling 2014) with MLP or convolutional encoder/decoder.

    model = VAE(image_shape=(1, 28, 28), latent_dim=20)
    losses = model.training_step(batch, Updater.plain(model.configure_optimizers(OptimConfig())))
    images = model.sample(16)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from genmodels.data import to_unit
from genmodels.metrics.likelihood import (
    gaussian_kl,
    iwae_bound,
    log_normal,
    log_standard_normal,
    reconstruction_nll,
)
from genmodels.models.base import GenerativeModel, make_optimizer

if TYPE_CHECKING:
    from genmodels.config import OptimConfig, VAEConfig
    from genmodels.train import Updater


def mlp_stack(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_plan(n_layers: int, hidden: int) -> list[tuple[int, bool]]:
    """(channels, downsample?) per encoder block: the first two halve the image, the rest keep it."""
    return [(hidden * (2 if i else 1), i < 2) for i in range(n_layers)]


def conv_encoder(channels: int, size: int, n_layers: int, hidden: int, out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = channels
    for width, down in conv_plan(n_layers, hidden):
        layers += [nn.Conv2d(c, width, 4, 2, 1) if down else nn.Conv2d(c, width, 3, 1, 1), nn.ReLU()]
        c, size = width, size // 2 if down else size
    layers += [nn.Flatten(), nn.Linear(c * size * size, out_features)]
    return nn.Sequential(*layers)


def conv_decoder(channels: int, size: int, n_layers: int, hidden: int, in_features: int) -> nn.Sequential:
    plan = conv_plan(n_layers, hidden)
    s = size // 2 ** sum(down for _, down in plan)
    c = plan[-1][0]
    layers: list[nn.Module] = [nn.Linear(in_features, c * s * s), nn.ReLU(), nn.Unflatten(1, (c, s, s))]
    for i in reversed(range(n_layers)):
        out = plan[i - 1][0] if i else channels
        down = plan[i][1]
        layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1) if down else nn.Conv2d(c, out, 3, 1, 1))
        if i:
            layers.append(nn.ReLU())
        c = out
    return nn.Sequential(*layers)


class VAE(GenerativeModel):
    monitor = "neg_elbo"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        arch: str = "mlp",
        n_layers: int = 1,
        hidden: int = 400,
        latent_dim: int = 20,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        binarize: bool = False,
    ):
        super().__init__()
        c, h, w = image_shape
        if arch == "conv" and (h != w or h % 4):
            raise ValueError(f"conv VAE needs square images with a side divisible by 4, got {h}x{w}")
        if binarize and likelihood != "bernoulli":
            raise ValueError("binarize needs likelihood 'bernoulli'")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.beta = beta
        self.binarize = binarize
        if arch == "mlp":
            d = c * h * w
            self.encoder = nn.Sequential(nn.Flatten(), mlp_stack([d] + [hidden] * n_layers + [2 * latent_dim]))
            self.decoder = nn.Sequential(mlp_stack([latent_dim] + [hidden] * n_layers + [d]), nn.Unflatten(1, (c, h, w)))
        elif arch == "conv":
            self.encoder = conv_encoder(c, h, n_layers, hidden, 2 * latent_dim)
            self.decoder = conv_decoder(c, h, n_layers, hidden, latent_dim)
        else:
            raise ValueError(f"unknown VAE arch '{arch}'")
        # One learned output scale for the Gaussian likelihood; unused for Bernoulli.
        self.log_sigma = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None

    @classmethod
    def from_config(cls, cfg: "VAEConfig", image_shape: tuple[int, int, int]) -> "VAE":
        return cls(image_shape, cfg.arch, cfg.n_layers, cfg.hidden, cfg.latent_dim, cfg.likelihood, cfg.beta, cfg.binarize)

    # --- the model ---------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (Bernoulli) or means (Gaussian) of p(x | z)."""
        return self.decoder(z).float()

    def targets(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_unit(batch)
        return torch.bernoulli(x, generator=generator) if self.binarize else x

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction NLL and KL (nats); -ELBO = recon + KL."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if generator is None else torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation: gradients flow through mu, logvar
        recon = reconstruction_nll(self.decode(z), x, self.likelihood, self.log_sigma)
        return recon, gaussian_kl(mu, logvar)

    def configure_optimizers(self, optim: "OptimConfig") -> dict[str, torch.optim.Optimizer]:
        return {"vae": make_optimizer(self.parameters(), optim)}

    def training_step(self, batch: torch.Tensor, update: "Updater") -> dict[str, torch.Tensor]:
        x = self.targets(batch)
        with update.autocast():
            recon, kl = self.losses(x)
        # beta-VAE objective (Higgins et al. 2017); beta=1 is the ELBO.
        loss = (recon + self.beta * kl).mean()
        update.step("vae", loss)
        return {"loss": loss.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    # --- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(
        self, batches: Iterable[torch.Tensor], generator: torch.Generator, iwae_k: int = 0
    ) -> dict[str, float]:
        """Per-image means in nats: recon, kl, neg_elbo (beta=1), loss (the training objective),
        and with iwae_k > 1 the importance-weighted estimate of -log p(x)."""
        totals = {"recon": 0.0, "kl": 0.0}
        iwae_total, n = 0.0, 0
        for batch in batches:
            x = self.targets(batch, generator)
            recon, kl = self.losses(x, generator)
            totals["recon"] += recon.double().sum().item()
            totals["kl"] += kl.double().sum().item()
            if iwae_k > 1:
                iwae_total -= self.iwae_log_likelihood(x, iwae_k, generator).double().sum().item()
            n += x.shape[0]
        out = {k: v / n for k, v in totals.items()}
        out["neg_elbo"] = out["recon"] + out["kl"]
        out["loss"] = out["recon"] + self.beta * out["kl"]
        if iwae_k > 1:
            out["iwae_nll"] = iwae_total / n
        return out

    @torch.no_grad()
    def iwae_log_likelihood(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, chunk: int = 64
    ) -> torch.Tensor:
        """IWAE bound on log p(x) per image with k importance samples from q(z|x)."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        log_w = []
        for start in range(0, k, chunk):
            kk = min(chunk, k - start)
            eps = torch.randn((kk, *mu.shape), generator=generator, device=mu.device)
            z = mu + eps * std  # (kk, B, latent)
            out = self.decode(z.flatten(0, 1))
            xx = x.expand(kk, *x.shape).flatten(0, 1)
            log_px = -reconstruction_nll(out, xx, self.likelihood, self.log_sigma).view(kk, -1)
            log_w.append(log_px + log_standard_normal(z) - log_normal(z, mu, logvar))
        return iwae_bound(torch.cat(log_w))

    # --- images ------------------------------------------------------------------------------

    def _mean_image(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn((n, self.latent_dim), generator=generator, device=self.device)
        return self._mean_image(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, batch: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(self.targets(batch))
        return self._mean_image(self.decode(mu))

    @torch.no_grad()
    def image_grids(self, batch: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # Originals and reconstructions interleaved row by row: each original sits above its copy.
        x, r = to_unit(batch), self.reconstruct(batch)
        per_row = max(1, int(math.sqrt(x.shape[0])))
        rows = []
        for i in range(0, x.shape[0], per_row):
            rows += [x[i : i + per_row], r[i : i + per_row]]
        return {"fixed_noise": self.sample(batch.shape[0], generator), "reconstructions": torch.cat(rows)}
