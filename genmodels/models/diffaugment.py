"""Differentiable augmentation for GANs on little data (DiffAugment, Zhao et al. 2020), as the
authors' DiffAugment_pytorch.py does it: every image the discriminator sees, real and generated
alike, is translated, cut out and (colour images) colour-jittered with fresh random parameters,
in both the discriminator's and the generator's step, and never at evaluation or sampling.
Augmenting only the real images would teach the generator to produce augmented images; both
sides through the same differentiable transforms leave the target distribution where it is while
the discriminator can no longer memorise the few real images.

With an adaptive probability (ADA, Karras et al. 2020) each image is augmented only with
probability p, and p follows the discriminator's overfitting: r_t, the mean sign of its outputs on
the training images it is shown, is compared with a target (ADA's 0.6) every few steps, and p moves
up when r_t is above it, down when below, fast enough to go from 0 to 1 in `kimg` thousand images.

Images are in the generator's range [-1, 1], (B, C, H, W); each transform draws per image.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Transform = Callable[[torch.Tensor], torch.Tensor]


def _per_image(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_per_image(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side, filling with zeros (the middle of [-1, 1])."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                       torch.arange(w, device=x.device), indexing="ij")
    rows = torch.clamp(rows + dy + 1, 0, h + 1)
    cols = torch.clamp(cols + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of half the side per image, at a random place (partly outside is allowed)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                       torch.arange(cw, device=x.device), indexing="ij")
    rows = torch.clamp(rows + oy - ch // 2, 0, h - 1)
    cols = torch.clamp(cols + ox - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


POLICIES: dict[str, list[Transform]] = {"color": [brightness, saturation, contrast], "translation": [translation],
                                        "cutout": [cutout]}


def diff_augment(x: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """`x` through the transforms of each named policy, in order (the paper's are "color",
    "translation", "cutout"; "color" is meant for colour images: on grey ones saturation does
    nothing and brightness and contrast still act)."""
    for name in policy:
        for transform in POLICIES[name]:
            x = transform(x)
    return x


class DiscriminatorAugment(nn.Module):
    """What a GAN's discriminator sees in training: its input through the DiffAugment `policies`,
    every image (target None) or each with the adaptive probability `p` (ADA's target for r_t).

    The adaptive state (p and the r_t tally of the current interval) is kept in buffers, on the
    device, and updated without reading it back: no host synchronisation per step, and a checkpoint
    resumes it exactly. Without a target there are no buffers, so checkpoints of plain DiffAugment
    GANs are unchanged."""

    def __init__(self, policies: Sequence[str] = (), target: float | None = None, kimg: float = 500.0,
                 interval: int = 4):
        super().__init__()
        self.policies, self.target, self.interval = tuple(policies), target, interval
        self.images_per_unit = kimg * 1000  # images over which p can move by 1
        if target is not None:
            self.register_buffer("p", torch.zeros(()))
            # sum of sign(D(x)) over the interval's training images, their count, and the steps in it
            self.register_buffer("tally", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.policies:
            return x
        augmented = diff_augment(x, self.policies)
        if self.target is None:
            return augmented
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
        return torch.where(chosen, augmented, x)

    @torch.no_grad()
    def observe(self, d_real: torch.Tensor) -> None:
        """Count D's outputs on one step's training images; at the end of every `interval` steps,
        move p by sign(r_t - target) times the interval's images over `kimg` thousand."""
        if self.target is None:
            return
        self.tally[0] += torch.sign(d_real.float()).sum()
        self.tally[1] += d_real.numel()  # Python scalars: no tensor to copy to the device
        self.tally[2] += 1
        due = self.tally[2] >= self.interval
        r_t = self.tally[0] / self.tally[1]
        step = torch.sign(r_t - self.target) * self.tally[1] / self.images_per_unit
        self.p.copy_(torch.where(due, (self.p + step).clamp(0.0, 1.0), self.p))
        self.tally.mul_((~due).float())
