"""What every feature extractor behind FID/KID/precision-recall is, where cached extractors and
statistics live, and features of a set of images."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from genmodels.data import find_dataset
from genmodels.data.roots import cache_root
from genmodels.images import to_unit


class FeatureExtractor(nn.Module):
    """Maps images in [0, 1], (B, C, H, W), to features (B, D). `name` goes next to every number."""

    name: str
    dim: int


def cache_dirs(data_root: str | None = None, dataset: str | None = None) -> list[Path]:
    """$GENMODELS_CACHE/features when set (and nothing else); otherwise <data root>/features,
    then ~/.cache/genmodels/features."""
    if os.environ.get("GENMODELS_CACHE"):
        return [cache_root() / "features"]
    dirs = []
    if dataset:
        paths, _ = find_dataset(dataset, data_root)
        if paths:
            # <root>/<dataset>/train-images... -> <root>/features
            dirs.append(paths["train"][0].parent.parent / "features")
    dirs.append(cache_root() / "features")
    return list(dict.fromkeys(dirs))


def writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


@torch.no_grad()
def extract(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features (N, D) float64 on CPU for uint8 images or floats in [0, 1]."""
    extractor.eval()
    device = next(extractor.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_unit(x) if x.dtype == torch.uint8 else x.float()
        out.append(extractor(x).double().cpu())
    return torch.cat(out)
