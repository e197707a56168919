"""Random views of a batch of images for contrastive training: the augmentations SimCLR (Chen et al.
2020) found to matter, scaled to the image's side and chosen by its channels, on whole batches
(one affine grid, no Python per image).

A pair of views of one image should agree on what the image shows, not on where it sits or how
bright it is: so zoom, shift, horizontal flip, contrast and brightness; colour images also get a
per-channel colour shift and are made grey now and then (otherwise colour histograms alone can
tell the pairs apart). Nothing a generator gets wrong is in the list: whatever the views vary,
the extractor learns not to see, and FID in its features could not see it in samples either (an
earlier version with rotation, cut-out squares and pixel noise gave FIDs that did not rise with
black rectangles or a swirl).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.empty(n, *shape).uniform_(low, high, generator=g)


def random_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One random view of each image of `x` (floats in [0, 1], (B, C, H, W), on the CPU)."""
    n, c, h, w = x.shape
    scale = _uniform(n, 0.75, 1.0, g)  # the view spans 75-100% of the side
    shift = _uniform(n, -0.15, 0.15, g, 2)  # +-15% of the side
    flip = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([scale * flip, zero, shift[:, 0]], 1),
                         torch.stack([zero, scale, shift[:, 1]], 1)], 1)
    y = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    y = y * _uniform(n, 0.6, 1.4, g, 1, 1, 1) + _uniform(n, -0.2, 0.2, g, 1, 1, 1)  # contrast, brightness
    if c == 3:
        y = y + _uniform(n, -0.1, 0.1, g, 3, 1, 1)  # colour shift
        grey = (torch.rand(n, generator=g) < 0.2).view(n, 1, 1, 1)
        y = torch.where(grey, y.mean(1, keepdim=True).expand_as(y), y)
    return y
