"""Residual GAN networks (SNGAN, Miyato et al. 2018; the ResNet of WGAN-GP, Gulrajani et al. 2017),
laid out as mimicry's SNGAN: the generator grows a bottom x bottom map by `n_layers` upsampling
residual blocks (BatchNorm, ReLU, nearest-neighbour upsampling, two 3x3 convs, a 1x1 shortcut);
the discriminator shrinks the image by residual blocks (the first "optimised": conv before ReLU),
n_layers - 1 of them average-pooling, two more at the smallest side, then ReLU, a global sum and
one linear unit. Any side divisible by 2**n_layers into a bottom of at least 2 works: 32 px with
n_layers 3 (4 -> 32), 48 with 3 (6 -> 48), 64 with 4, 96 with 4, 128 with 5; 28 px with 2 (7 -> 28).

Widths: the generator's blocks have 2 * hidden channels and the discriminator's hidden (SNGAN's
CIFAR-10 networks: hidden = 128, so 256 and 128). Spectral norm, when on, wraps every layer of
the discriminator; init is mimicry's: Xavier-uniform, gain sqrt(2) inside blocks, 1 elsewhere.
With n_classes > 0 (cGAN-PD, as mimicry's conditional SNGAN): the generator's BatchNorms take
their scale and shift from the class, and the discriminator adds a class projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genmodels.models.conditional import ConditionalBatchNorm, class_embedding


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def check_resnet_size(shape: tuple[int, int, int], n_layers: int) -> int:
    """The side of the generator's first map, or a ValueError naming what fits."""
    _, h, w = shape
    bottom = h // 2**n_layers
    if h != w or h % 2**n_layers or bottom < 2:
        raise ValueError(f"resnet GANs need square images whose side divides by 2**n_layers into at least 2; "
                         f"got {h}x{w} with n_layers={n_layers}")
    return bottom


def _norm(features: int, n_classes: int) -> nn.Module:
    return ConditionalBatchNorm(features, n_classes) if n_classes else nn.BatchNorm2d(features)


def _normed(norm: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return norm(x, labels) if isinstance(norm, ConditionalBatchNorm) else norm(x)


class GeneratorBlock(nn.Module):
    def __init__(self, a: int, b: int, n_classes: int = 0):
        super().__init__()
        self.norm1, self.conv1 = _norm(a, n_classes), _init(nn.Conv2d(a, b, 3, 1, 1), math.sqrt(2))
        self.norm2, self.conv2 = _norm(b, n_classes), _init(nn.Conv2d(b, b, 3, 1, 1), math.sqrt(2))
        self.shortcut = _init(nn.Conv2d(a, b, 1), 1.0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(_normed(self.norm1, x, labels)), scale_factor=2)
        h = self.conv2(F.relu(_normed(self.norm2, self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class ResNetGenerator(nn.Module):
    """(B, latent_dim) [and (B,) labels when n_classes] -> (B, C, size, size) in [-1, 1] (tanh, as SNGAN's)."""

    def __init__(self, channels: int, size: int, n_layers: int, hidden: int, latent_dim: int, n_classes: int = 0):
        super().__init__()
        self.bottom = check_resnet_size((channels, size, size), n_layers)
        width = 2 * hidden
        self.width = width
        self.linear = _init(nn.Linear(latent_dim, width * self.bottom**2), 1.0)
        self.blocks = nn.ModuleList([GeneratorBlock(width, width, n_classes) for _ in range(n_layers)])
        self.norm = _norm(width, n_classes)
        self.out = _init(nn.Conv2d(width, channels, 3, 1, 1), 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(z).view(len(z), self.width, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.out(F.relu(_normed(self.norm, h, labels))))


class DiscriminatorBlock(nn.Module):
    def __init__(self, a: int, b: int, down: bool, sn: bool, first: bool = False):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = _sn(_init(nn.Conv2d(a, b, 3, 1, 1), math.sqrt(2)), sn)
        self.conv2 = _sn(_init(nn.Conv2d(b, b, 3, 1, 1), math.sqrt(2)), sn)
        self.shortcut = _sn(_init(nn.Conv2d(a, b, 1), 1.0), sn) if (a != b or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))  # the first block sees pixels: no ReLU before
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:  # pool, then project (mimicry's optimised block)
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetDiscriminator(nn.Module):
    """(B, C, size, size) [and (B,) labels when n_classes: the projection] -> (B, 1) logits."""

    def __init__(self, channels: int, size: int, n_layers: int, hidden: int, sn: bool, n_classes: int = 0):
        super().__init__()
        check_resnet_size((channels, size, size), n_layers)
        blocks = [DiscriminatorBlock(channels, hidden, down=True, sn=sn, first=True)]
        blocks += [DiscriminatorBlock(hidden, hidden, down=True, sn=sn) for _ in range(n_layers - 2)]
        blocks += [DiscriminatorBlock(hidden, hidden, down=False, sn=sn) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = _sn(_init(nn.Linear(hidden, 1), 1.0), sn)
        self.embed = class_embedding(n_classes, hidden, sn) if n_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = F.relu(self.blocks(x)).sum(dim=(2, 3))
        out = self.linear(phi)
        return out if self.embed is None else out + (self.embed(labels) * phi).sum(dim=1, keepdim=True)
