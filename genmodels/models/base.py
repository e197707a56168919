"""The contract between a model and the Trainer. The Trainer knows nothing else about models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

if TYPE_CHECKING:
    from genmodels.config import OptimConfig
    from genmodels.metrics.quality import SampleQuality
    from genmodels.train import Updater


@dataclass
class EvalContext:
    """What `evaluate` gets besides the images of the split."""

    generator: torch.Generator  # all evaluation noise: same weights, same numbers
    split: str = "heldout"
    full: bool = False  # the final report: every metric the model has, not only the per-epoch ones
    iwae_k: int = 0  # VAE: importance samples for the IWAE bound (0: off)
    quality: "SampleQuality | None" = None  # FID & co. against the split, for models that sample
    fid_samples: int = 2000


class GenerativeModel(nn.Module, ABC):
    """A generative image model that the shared loop can train.

    Images arrive as uint8 batches (B, C, H, W); models convert them with `data.to_unit` on the
    device. `sample` returns images in [0, 1].
    """

    #: held-out metric used for early stopping, the best checkpoint and tuning
    monitor: str = "loss"
    #: "min" or "max"
    monitor_mode: str = "min"

    @abstractmethod
    def configure_optimizers(self, optim: "OptimConfig") -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; checkpoints store them under these names."""

    @abstractmethod
    def training_step(self, batch: torch.Tensor, update: "Updater") -> dict[str, torch.Tensor]:
        """One update (a GAN does its D and G steps here), applied through `update.step`.

        Returns detached scalar losses; the loop logs them as train/<name>.
        """

    @abstractmethod
    @torch.no_grad()
    def evaluate(self, batches: Iterable[torch.Tensor], ctx: EvalContext) -> dict[str, float]:
        """Metrics over all `batches` of a held-out or test split. Must contain `self.monitor`."""

    @abstractmethod
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1], shape (n, C, H, W)."""

    @torch.no_grad()
    def image_grids(self, batch: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Images for TensorBoard, by name. Same generator state -> same noise every epoch."""
        return {"fixed_noise": self.sample(batch.shape[0], generator)}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def make_optimizer(params: Iterable[nn.Parameter], optim: "OptimConfig", lr: float | None = None,
                   betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """An optimizer from the config's `optim` section; `lr`/`betas` override it (e.g. per GAN net)."""
    lr = optim.lr if lr is None else lr
    betas = optim.betas if betas is None else betas
    params = [p for p in params if p.requires_grad]  # frozen (fine-tuning) parameters stay out
    # The fused kernel updates all parameters in one pass: for small models on a CPU the
    # per-parameter Python loop of the default implementation costs as much as the matmuls.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=optim.weight_decay, fused=fused)
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=optim.weight_decay, fused=fused)
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=betas[0], weight_decay=optim.weight_decay)
    raise ValueError(f"optim.name: unknown optimizer '{optim.name}'")
