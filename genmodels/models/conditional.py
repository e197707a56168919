"""Class conditioning: conditional BatchNorm for generators and the projection discriminator
(cGAN-PD, Miyato & Koyama 2018), as mimicry's and BigGAN's conditional GANs build them.

A conditional generator normalises without an affine of its own and takes each image's scale
and shift from an embedding of its class (`ConditionalBatchNorm`). A projection discriminator
adds to its unconditional output the inner product of a class embedding with its last features:
D(x, y) = head(phi(x)) + <embed(y), phi(x)>. Unconditional models never build these.

    g = ConditionedSequential(conditional_norms(conv_decoder(...), n_classes=10))
    d = ProjectionDiscriminator(*split_head(conv_encoder(...)), n_classes=10, sn=True)
    images, scores = g(z, labels), d(images, labels)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class ConditionalBatchNorm(nn.Module):
    """BatchNorm (1d or 2d, by the input's rank) whose scale and shift are looked up per class,
    starting at 1 and 0 as a plain BatchNorm's affine does."""

    def __init__(self, features: int, n_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)  # BatchNorm2d normalises (B, C) inputs too
        self.scale, self.shift = nn.Embedding(n_classes, features), nn.Embedding(n_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat = x.ndim == 2
        h = self.norm(x[:, :, None, None] if flat else x)
        h = h.flatten(1) if flat else h
        shape = (len(x), -1) + (1,) * (x.ndim - 2)
        return h * self.scale(labels).view(shape) + self.shift(labels).view(shape)


def flat_layers(net: nn.Sequential) -> list[nn.Module]:
    """A Sequential's layers in order, nested Sequentials opened."""
    return [leaf for layer in net for leaf in (flat_layers(layer) if isinstance(layer, nn.Sequential) else [layer])]


def conditional_norms(net: nn.Sequential, n_classes: int) -> nn.Sequential:
    """`net` with each BatchNorm replaced by a ConditionalBatchNorm of as many features, nested
    Sequentials flattened: the layers a ConditionedSequential runs."""
    return nn.Sequential(*[ConditionalBatchNorm(layer.num_features, n_classes)
                           if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) else layer
                           for layer in flat_layers(net)])


class ConditionedSequential(nn.Sequential):
    """A Sequential whose conditional layers also get the labels."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm) else layer(x)
        return x


def split_head(net: nn.Sequential) -> tuple[nn.Sequential, nn.Linear]:
    """An unconditional discriminator's layers up to its last features, and its final linear unit
    (nested Sequentials flattened)."""
    layers = flat_layers(net)
    head = layers[-1]
    if not isinstance(head, nn.Linear):  # a spectrally normalised Linear is one too
        raise TypeError(f"a projection discriminator needs a final linear layer, got {type(head).__name__}")
    return nn.Sequential(*layers[:-1]), head


def class_embedding(n_classes: int, features: int, sn: bool) -> nn.Module:
    """The projection's class vectors (Xavier-initialised), spectrally normalised when `sn`."""
    embed = nn.Embedding(n_classes, features)
    nn.init.xavier_uniform_(embed.weight)
    return spectral_norm(embed) if sn else embed


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = head(phi(x)) + <embed(y), phi(x)>: `features` computes phi(x) (B, F), `head` maps
    it to one logit; the class embedding is spectrally normalised with the rest when `sn`."""

    def __init__(self, features: nn.Module, head: nn.Linear, n_classes: int, sn: bool = False):
        super().__init__()
        self.features, self.head = features, head
        self.embed = class_embedding(n_classes, head.in_features, sn)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        phi = self.features(x)
        return self.head(phi) + (self.embed(labels) * phi).sum(dim=1, keepdim=True)


def proportional_labels(split_labels: torch.Tensor, n: int) -> torch.Tensor:
    """n labels in the split's class proportions, without randomness: evenly spaced picks from
    its sorted labels (the samples a conditional model is scored on match the real images'
    class histogram)."""
    ordered = split_labels.sort().values
    return ordered[torch.arange(n, device=ordered.device) * len(ordered) // n]


def cycled_labels(n: int, n_classes: int, device: torch.device | str) -> torch.Tensor:
    """0, 1, ..., n_classes - 1, 0, 1, ...: a grid of n_classes columns shows a class per column."""
    return torch.arange(n, device=device) % n_classes
