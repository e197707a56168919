"""Building blocks shared by every model family: MLP stacks, conv encoders/decoders, DCGAN's init.

Conv stacks follow one plan: of `n_layers` blocks, the first two halve (encoder) or the last two
double (decoder) the image side, the rest keep it, so 28x28 and 32x32 images both work
(7x7 or 8x8 at the bottleneck).
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

Activation = Callable[[], nn.Module]


def _maybe_sn(layer: nn.Module, sn: bool) -> nn.Module:
    # Spectral norm bounds each layer's Lipschitz constant (Miyato et al. 2018).
    return _spectral_norm(layer) if sn else layer


def mlp(sizes: list[int], act: Activation = nn.ReLU, norm: bool = False, sn: bool = False) -> nn.Sequential:
    """Linear layers with `act` (and BatchNorm if `norm`) between them, nothing after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(_maybe_sn(nn.Linear(a, b), sn))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers)


def conv_plan(n_layers: int, hidden: int) -> list[tuple[int, bool]]:
    """(channels, resamples?) per encoder block: the first two halve the image, the rest keep it."""
    return [(hidden * (2 if i else 1), i < 2) for i in range(n_layers)]


def bottleneck_side(size: int, n_layers: int) -> int:
    return size // 2 ** sum(down for _, down in conv_plan(n_layers, 1))


def conv_encoder(channels: int, size: int, n_layers: int, hidden: int, out_features: int,
                 act: Activation = nn.ReLU, sn: bool = False) -> nn.Sequential:
    """(B, C, size, size) -> (B, out_features)."""
    layers: list[nn.Module] = []
    c = channels
    for width, down in conv_plan(n_layers, hidden):
        conv = nn.Conv2d(c, width, 4, 2, 1) if down else nn.Conv2d(c, width, 3, 1, 1)
        layers += [_maybe_sn(conv, sn), act()]
        c = width
    s = bottleneck_side(size, n_layers)
    layers += [nn.Flatten(), _maybe_sn(nn.Linear(c * s * s, out_features), sn)]
    return nn.Sequential(*layers)


def conv_decoder(channels: int, size: int, n_layers: int, hidden: int, in_features: int,
                 act: Activation = nn.ReLU, norm: bool = False) -> nn.Sequential:
    """(B, in_features) -> (B, C, size, size), the mirror image of conv_encoder; no final activation."""
    plan = conv_plan(n_layers, hidden)
    s = bottleneck_side(size, n_layers)
    c = plan[-1][0]
    layers: list[nn.Module] = [nn.Linear(in_features, c * s * s)]
    layers += [nn.Unflatten(1, (c, s, s))]
    if norm:
        layers.append(nn.BatchNorm2d(c))
    layers.append(act())
    for i in reversed(range(n_layers)):
        out = plan[i - 1][0] if i else channels
        up = plan[i][1]
        layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1) if up else nn.Conv2d(c, out, 3, 1, 1))
        if i:
            if norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(act())
        c = out
    return nn.Sequential(*layers)


def check_conv_size(shape: tuple[int, int, int]) -> None:
    _, h, w = shape
    if h != w or h % 4:
        raise ValueError(f"conv models need square images with a side divisible by 4, got {h}x{w}")


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights, as in the DCGAN paper; BatchNorm scales around 1."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
