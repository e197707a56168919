"""What the discriminator's outputs say at a held-out evaluation: how well it tells the split's
real images from samples (d_loss, d_auc), and whether it memorises its training images.

The overfitting watch after Karras et al. (2020, ADA): r_t, the mean sign of D's output on
training images, nears 1 as D overfits them; r_v is the same on the split's real images, and
d_gap is D's mean output on training images minus on the split's. Both sides are scored at the
same moment by the same D, on as many images each (the first of the training split: the same
ones at every evaluation), so the gap is D's generalisation gap alone. The curves sit beside
heldout/fid in TensorBoard; model.overfit_gap stops a run when r_t - r_v exceeds it.
"""

from __future__ import annotations

import torch


def auc(d_real: torch.Tensor, d_fake: torch.Tensor) -> float:
    """The chance that D scores a real image above a sample (Mann-Whitney U over the pairs)."""
    n = len(d_real)
    scores = torch.cat([d_real.flatten(), d_fake.flatten()]).double()
    ranks = scores.argsort().argsort().double() + 1  # ties are measure-zero for float logits
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(d_fake)))


def overfitting(d_train: torch.Tensor | None, d_split: torch.Tensor) -> dict[str, float]:
    """r_v and d_real (D's mean output) on the split's real images; with D's outputs on training
    images also r_t and d_gap."""
    split = d_split.double().flatten()
    out = {"r_v": float(split.sign().mean()), "d_real": float(split.mean())}
    if d_train is not None:
        train = d_train.double().flatten()
        out |= {"r_t": float(train.sign().mean()), "d_gap": float(train.mean() - split.mean())}
    return out
