"""Random views of a batch of images for contrastive training: the augmentations SimCLR (Chen et al.
2020) found to matter, scaled to the image's side and chosen by its channels, on whole batches
(one affine grid, no Python per image).

A pair of views of one image should agree on what the image shows, not on where it sits or how
bright it is: so zoom, small rotation, shift, horizontal flip, contrast and brightness, a cut-out
square and a little pixel noise; colour images also get a per-channel colour shift and are made
grey now and then (otherwise colour histograms alone can tell the pairs apart).
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
    angle = _uniform(n, -0.2, 0.2, g)  # +-11 degrees
    shift = _uniform(n, -0.15, 0.15, g, 2)  # +-15% of the side
    flip = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    y = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    y = y * _uniform(n, 0.6, 1.4, g, 1, 1, 1) + _uniform(n, -0.2, 0.2, g, 1, 1, 1)  # contrast, brightness
    if c == 3:
        y = y + _uniform(n, -0.1, 0.1, g, 3, 1, 1)  # colour shift
        grey = (torch.rand(n, generator=g) < 0.2).view(n, 1, 1, 1)
        y = torch.where(grey, y.mean(1, keepdim=True).expand_as(y), y)
    # a cut-out square of a third of the side, on half the views
    half = max(1, h // 6)
    cy, cx = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
    rows = (torch.arange(h).view(1, h, 1) - cy.view(n, 1, 1)).abs() <= half
    cols = (torch.arange(w).view(1, 1, w) - cx.view(n, 1, 1)).abs() <= half
    cut = (rows & cols) & (torch.rand(n, generator=g) < 0.5).view(n, 1, 1)
    y = y.masked_fill(cut.unsqueeze(1), 0.0)
    return y + 0.05 * torch.randn(y.shape, generator=g)
