"""Variational autoencoder (Kingma & Welling 2014) with MLP or convolutional encoder/decoder.

    model = VAE(image_shape=(1, 28, 28), latent_dim=20)
    losses = model.training_step(batch, Updater(model.configure_optimizers(OptimConfig())))
    images = model.sample(16)
"""

from __future__ import annotations

import math
from typing import Collection, Iterable, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from genmodels.metrics.likelihood import (
    bits_per_dim,
    gaussian_kl,
    iwae_bound,
    log_normal,
    log_standard_normal,
    reconstruction_nll,
)
from genmodels.images import grid_columns, to_unit
from genmodels.models.base import EvalContext, GenerativeModel, ModelSection, Updater
from genmodels.models.blocks import check_conv_size, conv_decoder, conv_encoder, mlp
from genmodels.optim import OptimConfig, make_optimizer
from genmodels.schema import StrictModel


class VAEConfig(ModelSection):
    kind: Literal["vae"] = "vae"
    arch: Literal["mlp", "conv"] = Field("mlp", description="encoder/decoder: MLP or convolutional")
    n_layers: int = Field(1, ge=1, le=8, description="hidden layers (mlp) or conv blocks (conv) per network")
    hidden: int = Field(400, ge=1, le=4096, description="units (mlp) or base channels (conv)")
    latent_dim: int = Field(20, ge=1, le=1024, description="size of z")
    likelihood: Literal["bernoulli", "gaussian", "logistic256"] = Field(
        "bernoulli", description="p(x|z) over pixel values; logistic256: a discretized logistic over the 256 "
                                 "levels of 8-bit images (colour VAEs; bits/dim reported)")
    beta: float = Field(1.0, ge=0.0, description="weight of the KL term (beta-VAE); 1 is the ELBO")
    binarize: bool = Field(False, description="dynamic binarisation: a proper Bernoulli likelihood on MNIST")
    n_classes: int = Field(0, ge=0, le=100_000, description="conditional VAE on labels 0..n_classes-1 (the label "
                           "one-hot into encoder and decoder); 0: unconditional, labels unused")


def discrete(likelihood: str, binarize: bool) -> bool:
    """Is p(x|z) a distribution over discrete pixel values (so that bits/dim mean something)?"""
    return likelihood == "logistic256" or (likelihood == "bernoulli" and binarize)


class VAEEvalOptions(StrictModel):
    iwae_k: int = Field(0, ge=0, le=100_000, description="importance samples for the IWAE estimate of "
                                                         "-log p(x) (0: off)")


class VAE(GenerativeModel):
    Config = VAEConfig
    EvalOptions = VAEEvalOptions
    # bits_per_dim, iwae_bits_per_dim: the same bounds per pixel value in bits, where the likelihood
    # is one of discrete values (logistic256, or Bernoulli on binarised pixels)
    metrics = {"neg_elbo": "minimize", "recon": "minimize", "kl": "minimize", "loss": "minimize",
               "iwae_nll": "minimize", "bits_per_dim": "minimize", "iwae_bits_per_dim": "minimize"}
    monitor = "neg_elbo"

    @classmethod
    def reported_metrics(cls, requested: Collection[str] = (), full: bool = False,
                         options: BaseModel | None = None, section: ModelSection | None = None) -> set[str]:
        """The ELBO's terms always; iwae_nll only with the evaluation option iwae_k > 1
        (`genmodels eval --iwae-k K`): training's held-out evaluations never compute it; each in
        bits/dim too where the `section`'s likelihood is discrete."""
        iwae = isinstance(options, VAEEvalOptions) and options.iwae_k > 1
        out = {"neg_elbo", "recon", "kl", "loss"} | ({"iwae_nll"} if iwae else set())
        if isinstance(section, VAEConfig) and discrete(section.likelihood, section.binarize):
            out |= {"bits_per_dim"} | ({"iwae_bits_per_dim"} if iwae else set())
        return out

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
        n_classes: int = 0,
    ):
        super().__init__()
        c, h, w = image_shape
        if arch == "conv":
            check_conv_size(image_shape)
        if binarize and likelihood != "bernoulli":
            raise ValueError("binarize needs likelihood 'bernoulli'")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.beta = beta
        self.binarize = binarize
        self.arch, self.n_classes = arch, n_classes  # a conditional VAE (Sohn et al. 2015): q(z | x, y) and p(x | z, y)
        out = 2 * c if likelihood == "logistic256" else c  # the discretized logistic: a mean and a scale per value
        if arch == "mlp":
            d = c * h * w
            self.encoder = nn.Sequential(nn.Flatten(), mlp([d + n_classes] + [hidden] * n_layers + [2 * latent_dim]))
            self.decoder = nn.Sequential(mlp([latent_dim + n_classes] + [hidden] * n_layers + [out * h * w]),
                                         nn.Unflatten(1, (out, h, w)))
        elif arch == "conv":  # the class as n_classes one-hot planes beside the image's channels
            self.encoder = conv_encoder(c + n_classes, h, n_layers, hidden, 2 * latent_dim)
            self.decoder = conv_decoder(out, h, n_layers, hidden, latent_dim + n_classes)
        else:
            raise ValueError(f"unknown VAE arch '{arch}'")
        # One learned output scale for the Gaussian likelihood; the discretized logistic's scales
        # come from the decoder, one per pixel value (PixelCNN++'s way: a scale shared by all pixels
        # learns too slowly to leave the first, wide setting); unused for Bernoulli.
        self.log_sigma = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" else None

    # --- the model ---------------------------------------------------------------------------

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if labels is not None:  # one-hot planes for a conv encoder; the MLP flattens them beside the pixels
            onehot = F.one_hot(labels, self.n_classes).to(x.dtype)
            planes = onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], 1) if self.arch == "conv" else torch.cat([x.flatten(1), onehot], 1)
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (Bernoulli), means (Gaussian) or means and log-scales (logistic256) of p(x | z[, y])."""
        if labels is not None:
            z = torch.cat([z, F.one_hot(labels, self.n_classes).to(z.dtype)], 1)
        return self.decoder(z).float()

    def targets(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_unit(batch)
        return torch.bernoulli(x, generator=generator) if self.binarize else x

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction NLL and KL (nats); -ELBO = recon + KL (of log p(x | y) for a
        conditional VAE)."""
        mu, logvar = self.encode(x, labels)
        eps = (torch.randn_like(mu) if generator is None
               else torch.randn(mu.shape, generator=generator, device=mu.device))
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation: gradients flow through mu, logvar
        recon = reconstruction_nll(self.decode(z, labels), x, self.likelihood, self.log_sigma)
        return recon, gaussian_kl(mu, logvar)

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        return {"vae": make_optimizer(self.parameters(), optim)}

    def training_step(self, batch: torch.Tensor, update: Updater, labels: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        labels = self.check_labels(labels)
        x = self.targets(batch)
        with update.autocast():
            recon, kl = self.losses(x, labels=labels)
        # beta-VAE objective (Higgins et al. 2017); beta=1 is the ELBO.
        loss = (recon + self.beta * kl).mean()
        update.step("vae", loss)
        return {"loss": loss.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    # --- evaluation --------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, batches: Iterable[torch.Tensor], ctx: EvalContext) -> dict[str, float]:
        """Per-image means in nats: recon, kl, neg_elbo (beta=1), loss (the training objective),
        and with the option iwae_k > 1 the importance-weighted estimate of -log p(x)."""
        generator, iwae_k = ctx.generator, ctx.options.iwae_k if ctx.options else 0
        totals = {"recon": 0.0, "kl": 0.0}
        iwae_total, n = 0.0, 0
        split_labels = self.check_labels(ctx.labels)
        for batch in batches:
            x = self.targets(batch, generator)
            labels = None if split_labels is None else split_labels[n : n + len(batch)].to(x.device)
            recon, kl = self.losses(x, generator, labels)
            totals["recon"] += recon.double().sum().item()
            totals["kl"] += kl.double().sum().item()
            if iwae_k > 1:
                iwae_total -= self.iwae_log_likelihood(x, iwae_k, generator, labels=labels).double().sum().item()
            n += x.shape[0]
        out = {k: v / n for k, v in totals.items()}
        out["neg_elbo"] = out["recon"] + out["kl"]
        out["loss"] = out["recon"] + self.beta * out["kl"]
        if iwae_k > 1:
            out["iwae_nll"] = iwae_total / n
        if discrete(self.likelihood, self.binarize):
            dims = math.prod(self.image_shape)
            out["bits_per_dim"] = bits_per_dim(out["neg_elbo"], dims)
            if iwae_k > 1:
                out["iwae_bits_per_dim"] = bits_per_dim(out["iwae_nll"], dims)
        return out

    @torch.no_grad()
    def iwae_log_likelihood(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, rows: int = 4096,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """IWAE bound on log p(x) per image with k importance samples from q(z|x).

        The k samples are decoded in passes of about `rows` images: on CPU, passes of 64,000
        images (64 samples of a 1,000-image batch) ran 2x slower, in page faults, than 4,000.
        """
        mu, logvar = self.encode(x, labels)
        std = (0.5 * logvar).exp()
        chunk = max(1, rows // x.shape[0])
        log_w = []
        for start in range(0, k, chunk):
            kk = min(chunk, k - start)
            eps = torch.randn((kk, *mu.shape), generator=generator, device=mu.device)
            z = mu + eps * std  # (kk, B, latent)
            out = self.decode(z.flatten(0, 1), None if labels is None else labels.repeat(kk))
            xx = x.expand(kk, *x.shape).flatten(0, 1)
            log_px = -reconstruction_nll(out, xx, self.likelihood, self.log_sigma).view(kk, -1)
            log_w.append(log_px + log_standard_normal(z) - log_normal(z, mu, logvar))
        return iwae_bound(torch.cat(log_w))

    # --- images ------------------------------------------------------------------------------

    def _mean_image(self, out: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "logistic256":  # means in [-1, 1], then the scales
            return ((out.chunk(2, dim=1)[0] + 1) / 2).clamp(0.0, 1.0)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out.clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = self.sample_labels(n, labels)
        z = torch.randn((n, self.latent_dim), generator=generator, device=self.device)
        return self._mean_image(self.decode(z, labels))

    @torch.no_grad()
    def reconstruct(self, batch: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        mu, _ = self.encode(self.targets(batch), labels)
        return self._mean_image(self.decode(mu, labels))

    @torch.no_grad()
    def image_grids(self, batch: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
        # Originals and reconstructions interleaved row by row: each original sits above its copy.
        grids = super().image_grids(batch, generator, labels)
        x, r = to_unit(batch), self.reconstruct(batch, self.check_labels(labels))
        per_row = grid_columns(x.shape[0])
        rows = []
        for i in range(0, x.shape[0], per_row):
            rows += [x[i : i + per_row], r[i : i + per_row]]
        return grids | {"reconstructions": torch.cat(rows)}
