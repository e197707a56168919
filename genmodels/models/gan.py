"""Generative adversarial networks: MLP, DCGAN-style (Radford et al. 2016) and SNGAN-style ResNet
(`resnet.py`) generators and discriminators, trained by the shared loop. The alternating updates
live in `training_step`.

    model = GAN(image_shape=(1, 28, 28), arch="dcgan", loss="hinge")
    losses = model.training_step(batch, Updater(model.configure_optimizers(OptimConfig())))
    images = model.sample(16)
"""

from __future__ import annotations

import copy
from typing import Collection, Iterable

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from genmodels.images import to_unit
from genmodels.models.base import EvalContext, GenerativeModel, ModelSection, Updater
from genmodels.models.conditional import proportional_labels
from genmodels.models.diffaugment import DiscriminatorAugment
from genmodels.models.gan_config import GANConfig
from genmodels.models.gan_nets import call, gan_networks
from genmodels.models.gan_watch import auc, overfitting
from genmodels.optim import OptimConfig, make_optimizer


class GAN(GenerativeModel):
    Config = GANConfig
    # d_loss: the discriminator's loss on held-out images; higher means it tells them from the
    # generator's less well. fid_inf: FID extrapolated to infinitely many samples.
    # spread: the samples' feature spread over the real images' (collapse shows as ~0); d_auc: the
    # chance that the discriminator scores a held-out real image above a sample. *_se: standard errors.
    # r_t, r_v, d_real, d_gap: the overfitting watch (gan_watch.py); r_t and d_gap where the training
    # split is at hand (a run's evaluations, genmodels eval).
    metrics = {"fid": "minimize", "fid_se": None, "spread": None, "d_loss": "maximize", "d_auc": None,
               "fid_inf": "minimize", "fid_inf_se": None, "kid": "minimize", "kid_se": None,
               "precision": "maximize", "recall": "maximize", "precision_se": None, "recall_se": None,
               "r_v": None, "d_real": None, "r_t": None, "d_gap": None,
               "intra_fid": "minimize", "class_accuracy": "maximize", "class_accuracy_min": None}
    monitor = "fid"
    run_state = ("augment.",)  # the adaptive augmentation probability is the run's, not the weights'
    # bf16 autocast trained the DCGAN recipe to +4.4 FID (95% interval +0.1 to +8.7) at equal images
    auto_reduced_precision = False
    # The sample-quality metrics computed only on request (eval.metrics, or a final report), and
    # what each request adds.
    OPTIONAL_METRICS = {"fid_inf": ("fid_inf", "fid_inf_se"), "kid": ("kid", "kid_se"),
                        "precision": ("precision", "recall", "precision_se", "recall_se"),
                        "recall": ("precision", "recall", "precision_se", "recall_se")}

    @classmethod
    def reported_metrics(cls, requested: Collection[str] = (), full: bool = False,
                         options: BaseModel | None = None, section: ModelSection | None = None) -> set[str]:
        asked = set(cls.OPTIONAL_METRICS) if full else set(requested) & set(cls.OPTIONAL_METRICS)
        always = {"fid", "fid_se", "spread", "d_loss", "d_auc", "r_v", "d_real"}
        if isinstance(section, GANConfig) and section.n_classes:  # class accuracy needs a labelled classifier
            always |= {"intra_fid", "class_accuracy", "class_accuracy_min"}
        return always | {m for k in asked for m in cls.OPTIONAL_METRICS[k]}

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        arch: str = "dcgan",
        n_layers: int = 2,
        hidden: int = 64,
        latent_dim: int = 64,
        loss: str = "ns",
        spectral_norm: bool = False,
        n_critic: int = 1,
        gp_weight: float = 10.0,
        ema: float | None = None,
        lr_g: float | None = None,
        lr_d: float | None = None,
        betas_g: tuple[float, float] | None = None,
        betas_d: tuple[float, float] | None = None,
        judge_after: int = 1000,
        diffaugment: tuple[str, ...] = (),
        overfit_gap: float | None = None,
        ada_target: float | None = None,
        ada_kimg: float = 500.0,
        n_classes: int = 0,
    ):
        super().__init__()
        if loss not in ("ns", "hinge", "wgan-gp"):
            raise ValueError(f"unknown GAN loss '{loss}'")
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.loss, self.n_critic, self.gp_weight, self.ema_decay = loss, n_critic, gp_weight, ema
        self.lr_g, self.lr_d, self.betas_g, self.betas_d = lr_g, lr_d, betas_g, betas_d
        self.judge_after = judge_after
        self.overfit_gap = overfit_gap
        self.augment = DiscriminatorAugment(diffaugment, ada_target, ada_kimg)  # what D sees in training
        self.generator, self.discriminator = gan_networks(arch, image_shape, n_layers, hidden, latent_dim,
                                                          spectral_norm, n_classes)
        # A slowly moving average of the generator samples better than its last iterate
        # (Yazici et al. 2019); it is what sample() and evaluation use when enabled.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if ema else None
        self.register_buffer("d_updates", torch.zeros((), dtype=torch.long))
        self._d_steps: int | None = None

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        return {
            "d": make_optimizer(self.discriminator.parameters(), optim, self.lr_d, self.betas_d),
            "g": make_optimizer(self.generator.parameters(), optim, self.lr_g, self.betas_g),
        }

    # --- losses ------------------------------------------------------------------------------

    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        if self.loss == "ns":  # -log D(x) - log(1 - D(G(z))), with D = sigmoid(logit)
            return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if self.loss == "hinge":  # Lim & Ye 2017; Miyato et al. 2018
            return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        return d_fake.mean() - d_real.mean()  # WGAN critic (Arjovsky et al. 2017)

    def g_loss(self, d_gen: torch.Tensor) -> torch.Tensor:
        if self.loss == "ns":  # non-saturating: -log D(G(z)), strong gradients early on (Goodfellow 2014)
            return F.softplus(-d_gen).mean()
        return -d_gen.mean()

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """(||grad D(x_hat)|| - 1)^2 on random interpolates: keeps the critic 1-Lipschitz
        (Gulrajani et al. 2017). Computed in float32, outside autocast, and eagerly under train.compile:
        its double backward cannot pass through a compiled graph."""
        alpha = torch.rand(real.shape[0], *[1] * (real.ndim - 1), device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(call(self.discriminator.forward, x_hat, labels).sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    # --- one training step: a critic update, and every n_critic-th time a generator update ----

    def training_step(self, batch: torch.Tensor, update: Updater, labels: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """A conditional GAN's samples take the batch's own labels: the same class mix as the real
        images, and WGAN-GP's interpolates join images of one class."""
        labels = self.check_labels(labels)
        if self._d_steps is None:  # once after construction or loading: the step count as a Python int
            self._d_steps = int(self.d_updates)
        real = to_unit(batch) * 2 - 1  # the generator's tanh range
        g_turn = (self._d_steps + 1) % self.n_critic == 0  # a generator update follows this critic update
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        with update.autocast():
            # One generator pass serves both updates, as in pytorch/examples' DCGAN: the critic
            # trains on it detached, the generator through it.
            with torch.set_grad_enabled(g_turn):
                fake = call(self.generator, z, labels)
            # Real and fake in one critic pass: one spectral-norm power iteration, one larger matmul.
            both = None if labels is None else torch.cat([labels, labels])
            d_real, d_fake = call(self.discriminator, self.augment(torch.cat([real, fake.detach()])),
                                  both).float().split(len(real))
            d_loss = self.d_loss(d_real, d_fake)
        self.augment.observe(d_real)
        if self.loss == "wgan-gp":
            d_loss = d_loss + self.gp_weight * self.gradient_penalty(real, fake.detach().float(), labels)
        update.step("d", d_loss)
        self.d_updates += 1  # stays on the device; the Python count decides the schedule
        self._d_steps += 1
        out = {"d_loss": d_loss.detach(), "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
        if self.augment.target is not None:
            out["ada_p"] = self.augment.p.detach().clone()
        if g_turn:
            # No D gradients are needed for G's step. Only the parameters that train are switched
            # back on afterwards: layers frozen for fine-tuning stay frozen.
            d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
            for p in d_params:
                p.requires_grad_(False)
            with update.autocast():
                g_loss = self.g_loss(call(self.discriminator, self.augment(fake), labels).float())
            update.step("g", g_loss)
            for p in d_params:
                p.requires_grad_(True)
            self._update_ema(self._d_steps // self.n_critic)
            out["g_loss"] = g_loss.detach()
        return out

    @torch.no_grad()
    def _update_ema(self, g_steps: int) -> None:
        """Move the average towards the generator. The decay starts low and rises to `ema`
        ((1 + t) / (10 + t) after t updates, as TensorFlow's ExponentialMovingAverage does): a
        fixed 0.999 would still average in the first, useless generators after thousands of steps."""
        if self.generator_ema is None:
            return
        decay = min(self.ema_decay, (1 + g_steps) / (10 + g_steps))
        torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.generator.parameters()), 1.0 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        self._d_steps = None  # re-read from the loaded d_updates at the next step
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- sampling and evaluation -------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int = 1000, *,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """A conditional GAN's samples are of `labels` (default: the classes in turn)."""
        labels = self.sample_labels(n, labels)
        net = self.generator_ema if self.generator_ema is not None else self.generator
        was_training = net.training
        net.eval()
        chunks = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            z = torch.randn((m, self.latent_dim), generator=generator, device=self.device)
            y = None if labels is None else labels[start : start + m]
            chunks.append(((call(net, z, y).float() + 1) / 2).clamp(0, 1))
        net.train(was_training)
        return torch.cat(chunks)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[torch.Tensor], ctx: EvalContext) -> dict[str, float]:
        """Sample quality of ctx.fid_samples generated images against the whole split (FID and
        the scorer's other metrics, through its feature extractor); and how well the
        discriminator tells the split's real images from the same fakes: its loss and d_auc,
        the chance that it scores a real image above a generated one."""
        if ctx.scorer is None:
            raise ValueError("GAN evaluation needs a sample scorer (FID) in the evaluation context")
        real = torch.cat(list(batches))
        y_real = self.check_labels(ctx.labels)  # a conditional GAN samples the split's class mix
        y_fake = None if y_real is None else proportional_labels(y_real, ctx.fid_samples)
        fake = self.sample(ctx.fid_samples, ctx.generator, labels=y_fake)
        metrics = ctx.scorer.score(ctx.split, real, fake, full=ctx.full, real_labels=y_real, fake_labels=y_fake)
        # Beside epoch_train/d_loss, the held-out loss shows the discriminator overfitting its
        # training images.
        n = min(len(real), len(fake))
        d_real, d_fake = self._critic(real[:n], False, y_real), self._critic(fake[:n], True, y_fake)
        metrics["d_loss"], metrics["d_auc"] = float(self.d_loss(d_real, d_fake)), auc(d_real, d_fake)
        d_train = None
        if ctx.train_images is not None:
            d_train = self._critic(ctx.train_images[:n], False, self.check_labels(ctx.train_labels))
        return metrics | overfitting(d_train, d_real)

    def _critic(self, images: torch.Tensor, unit: bool, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's outputs on uint8 images, or on images in [0, 1] (unit=True), in chunks."""
        chunks = images.split(1000)
        ys = labels[: len(images)].to(images.device).split(1000) if labels is not None else [None] * len(chunks)
        return torch.cat([call(self.discriminator, (b if unit else to_unit(b)) * 2 - 1, y).float()
                          for b, y in zip(chunks, ys)])

    def stop_reason(self, metrics: dict[str, float]) -> str | None:
        gap = metrics.get("r_t", 0.0) - metrics.get("r_v", 0.0)
        if self.overfit_gap is not None and gap > self.overfit_gap:
            return f"the discriminator overfits: r_t - r_v = {gap:.3f} > model.overfit_gap {self.overfit_gap}"
        return None

    def failed(self, metrics: dict[str, float], evaluations: int) -> str | None:
        """A GAN beyond saving: near-identical samples (mode collapse), no coverage of the real
        images at all, or a discriminator that tells every real image from every fake one (the
        generator then learns nothing). Judged only after `judge_after` generator updates: a
        young generator's samples are all alike, and any discriminator beats it."""
        g_steps = (self._d_steps if self._d_steps is not None else int(self.d_updates)) // self.n_critic
        if g_steps < self.judge_after or evaluations < 2:
            return None
        if metrics.get("spread", 1.0) < 0.05:
            return f"collapsed: the samples are near-identical (spread {metrics['spread']:.3f} of the real images')"
        if metrics.get("recall", 1.0) < 0.005 and evaluations >= 3:
            return f"collapsed: the samples cover none of the real images (recall {metrics['recall']:.4f})"
        if metrics.get("d_auc", 0.0) > 0.999:
            return (f"the discriminator wins outright: it ranks every held-out real image above every sample "
                    f"(d_auc {metrics['d_auc']:.4f})")
        return None
