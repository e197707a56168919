"""What every feature extractor behind FID/KID/precision-recall is, where cached extractors and
statistics live, and features of a set of images."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from genmodels.checkpoint import load_tensors, load_weights, save_tensors
from genmodels.data import find_dataset
from genmodels.data.roots import cache_root
from genmodels.errors import UserError
from genmodels.files import write_json
from genmodels.images import to_unit


class FeatureExtractor(nn.Module):
    """Maps images in [0, 1], (B, C, H, W), to features (B, D). `name` goes next to every number."""

    name: str
    dim: int
    #: features -> class logits, for an extractor with classes (the labelled classifier); else None
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None


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


def fingerprint(images: torch.Tensor) -> str:
    """A short hash of a tensor's content: what a cache of something computed from it is keyed by."""
    return hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def load_cached_net(name: str, dirs: list[Path], make: Callable[..., nn.Module]) -> tuple[nn.Module, dict] | None:
    """The network cached as <dir>/<name>.pt in the first of `dirs` that has it, built by
    make(**its shape) and loaded tensors-only, with its info; None where none has it."""
    for folder in dirs:
        path = folder / f"{name}.pt"
        if path.is_file():
            state = load_tensors(path, {"model": dict, "shape": dict, "info": dict})
            with torch.random.fork_rng(devices=[]):  # the throw-away random init must not use the run's RNG
                net = make(**state["shape"])
            load_weights(net, state["model"], str(path))
            return net, state["info"]
    return None


def save_cached_net(net: nn.Module, shape: dict, info: dict, dirs: list[Path]) -> Path:
    """Write `net` (rebuilt later by make(**shape)) as <name>.pt with <name>.json beside it, in the
    first writable of `dirs`."""
    folder = next((d for d in dirs if writable(d)), None)
    if folder is None:
        raise UserError(f"no writable folder for the feature extractor {info['name']} (tried "
                        f"{', '.join(map(str, dirs))}); set GENMODELS_CACHE")
    path = folder / f"{info['name']}.pt"
    save_tensors(path, {"model": net.state_dict(), "shape": shape, "info": info})
    write_json(path.with_suffix(".json"), info)
    return path
