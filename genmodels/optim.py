"""The `optim` config section and the optimizers built from it."""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from genmodels.schema import StrictModel


def check_betas(value: tuple[float, float] | None) -> tuple[float, float] | None:
    """Adam's betas are decay rates: each in [0, 1), or the moment estimates never forget."""
    if value is not None and not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"expected two numbers in [0, 1), got {list(value)}")
    return value


class OptimConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = Field("adam", description="optimizer")
    lr: float = Field(1e-3, gt=0.0, description="learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's (beta1, beta2); SGD's momentum is beta1")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw)")

    _betas = field_validator("betas")(check_betas)


def make_optimizer(params: Iterable[nn.Parameter], optim: OptimConfig, lr: float | None = None,
                   betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """An optimizer from the `optim` section; `lr`/`betas` override it (e.g. per GAN network).

    Parameters that do not require gradients (frozen for fine-tuning) never reach it.
    """
    lr = optim.lr if lr is None else lr
    betas = optim.betas if betas is None else betas
    params = [p for p in params if p.requires_grad]
    # The fused kernel updates all parameters in one pass: for small models on a CPU the
    # per-parameter Python loop of the default implementation costs as much as the matmuls.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=optim.weight_decay, fused=fused)
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=optim.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, momentum=betas[0], weight_decay=optim.weight_decay)
