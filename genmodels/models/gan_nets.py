"""The generator and discriminator networks of each GAN architecture, unconditional or
class-conditional (conditional BatchNorm in G, a projection discriminator: `conditional.py`).

    generator, discriminator = gan_networks("dcgan", (1, 28, 28), 2, 64, 100, sn=True, n_classes=10)
    fake = call(generator, z, labels)  # labels None for an unconditional network
"""

from __future__ import annotations

import torch
from torch import nn

from genmodels.models.blocks import check_conv_size, conv_decoder, conv_encoder, dcgan_init, leaky_relu, mlp
from genmodels.models.conditional import (ConditionedSequential, ProjectionDiscriminator, conditional_norms,
                                          split_head)
from genmodels.models.resnet import ResNetDiscriminator, ResNetGenerator


def gan_networks(arch: str, image_shape: tuple[int, int, int], n_layers: int, hidden: int, latent_dim: int,
                 sn: bool, n_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator), initialised: DCGAN's N(0, 0.02) for mlp and dcgan, mimicry's
    scheme for resnet (its own layers). n_classes > 0: both take labels."""
    c, h, w = image_shape
    if arch == "mlp":
        d = c * h * w
        generator: nn.Module = nn.Sequential(mlp([latent_dim] + [hidden] * n_layers + [d], norm=True),
                                             nn.Unflatten(1, (c, h, w)))
        discriminator: nn.Module = nn.Sequential(
            nn.Flatten(), mlp([d] + [hidden] * n_layers + [1], act=leaky_relu, sn=sn))
    elif arch == "dcgan":
        check_conv_size(image_shape)
        generator = conv_decoder(c, h, n_layers, hidden, latent_dim, norm=True)
        discriminator = conv_encoder(c, h, n_layers, hidden, 1, act=leaky_relu, sn=sn)
    elif arch == "resnet":
        return (ResNetGenerator(c, h, n_layers, hidden, latent_dim, n_classes),
                ResNetDiscriminator(c, h, n_layers, hidden, sn, n_classes))
    else:
        raise ValueError(f"unknown GAN arch '{arch}'")
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    if n_classes:  # the same layers and init, re-plumbed: norms per class, a class projection
        generator = ConditionedSequential(*conditional_norms(generator, n_classes))
        discriminator = ProjectionDiscriminator(*split_head(discriminator), n_classes, sn)
    return generator, discriminator


def call(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """net(x), with the labels where the network is conditional."""
    return net(x) if labels is None else net(x, labels)
