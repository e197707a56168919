"""The `model` section of a GAN: architecture, loss, its two optimisers, EMA, augmentation,
the overfitting watch and class conditioning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from genmodels.models.base import ModelSection
from genmodels.optim import check_betas


class GANConfig(ModelSection):
    kind: Literal["gan"] = "gan"
    arch: Literal["mlp", "dcgan", "resnet"] = Field("dcgan", description="generator and discriminator: MLP, "
                                                                         "DCGAN-style convs or SNGAN-style ResNets")
    n_layers: int = Field(2, ge=1, le=8, description="hidden layers (mlp), conv blocks (dcgan) or up/down-sampling "
                                                     "residual blocks (resnet) per network")
    hidden: int = Field(64, ge=1, le=4096, description="units (mlp), base channels (dcgan), or D's channels (resnet; "
                                                       "G's are twice as many)")
    latent_dim: int = Field(64, ge=1, le=1024, description="size of the generator's noise z")
    loss: Literal["ns", "hinge", "wgan-gp"] = Field("ns", description="non-saturating, hinge or WGAN-GP")
    spectral_norm: bool = Field(False, description="spectral norm on the discriminator's layers")
    n_critic: int = Field(1, ge=1, le=100, description="discriminator updates per generator update")
    gp_weight: float = Field(10.0, ge=0.0, description="WGAN-GP gradient penalty weight")
    ema: float | None = Field(None, ge=0.0, lt=1.0, description="decay of the generator EMA used to sample "
                                                                "and evaluate (none: off)")
    lr_g: float | None = Field(None, gt=0.0, description="generator learning rate (default: optim.lr)")
    lr_d: float | None = Field(None, gt=0.0, description="discriminator learning rate (default: optim.lr)")
    betas_g: tuple[float, float] | None = Field(None, description="generator Adam betas (default: optim.betas)")
    betas_d: tuple[float, float] | None = Field(None, description="discriminator Adam betas (default: optim.betas)")
    judge_after: int = Field(1000, ge=0, description="generator updates before a run can be called failed "
                                                     "(collapsed, or its discriminator wins outright)")
    diffaugment: tuple[Literal["color", "translation", "cutout"], ...] = Field(
        (), description="DiffAugment policies applied to every image D sees, real and generated, in training only "
                        "(small datasets: [translation, cutout], plus color for colour images)")
    overfit_gap: float | None = Field(None, gt=0.0, le=2.0, description="stop the run when r_t - r_v (D's mean "
                                                                       "sign on training minus held-out images) "
                                                                       "exceeds this; none: watch only")
    ada_target: float | None = Field(None, gt=0.0, lt=1.0, description="augment each image only with a probability "
                                     "p that moves r_t (D's mean sign on training images) towards this target (ADA: "
                                     "0.6); none: every image")
    ada_kimg: float = Field(500.0, gt=0.0, description="thousands of images over which p can move from 0 to 1 "
                                                       "(ADA: 500; less for short runs)")
    n_classes: int = Field(0, ge=0, le=100_000, description="class-conditional on labels 0..n_classes-1 "
                           "(conditional BatchNorm in G, projection D); 0: unconditional, labels unused")

    _betas = field_validator("betas_g", "betas_d")(check_betas)

    @model_validator(mode="after")
    def _ada_needs_policies(self) -> "GANConfig":
        if self.ada_target is not None and not self.diffaugment:
            raise ValueError("ada_target adapts how often model.diffaugment applies: name its policies too")
        return self
