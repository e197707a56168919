"""From a `data` section to a run's splits: the source's own train and test splits, the seeded
held-out split carved from train, class and size selection, and k folds for cross-validation.

The held-out split is carved with data.split_seed before any selection, so it is the same images
for every run seed, and the FID classifier is trained without them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genmodels.data.celeba import load_celeba
from genmodels.data.cifar import load_cifar10, load_cifar100
from genmodels.data.config import DataConfig
from genmodels.data.idx import load_raw
from genmodels.data.imagefolder import load_imagefolder
from genmodels.data.stl10 import load_stl10
from genmodels.data.svhn import load_svhn
from genmodels.data.tensors import DataSplits, Split
from genmodels.errors import DataError


#: data.name -> the loader of the colour dataset's official train and test splits (IDX: load_raw)
COLOUR_DATASETS = {"cifar10": load_cifar10, "cifar100": load_cifar100, "svhn": load_svhn, "stl10": load_stl10}


def heldout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, heldout) of a seeded random split of range(n); heldout gets round(fraction*n)."""
    n_heldout = max(1, round(n * fraction))
    if n_heldout >= n:
        raise DataError(f"data.heldout_fraction={fraction} leaves no training images out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_heldout:].sort().values, perm[:n_heldout].sort().values


def load_splits(
    name: str,
    root: str | Path | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> DataSplits:
    """Train / held-out / test splits on `device`. Held-out is carved from train; test is untouched."""
    cfg = DataConfig(name=name, root=str(root) if root else None, heldout_fraction=heldout_fraction,
                     split_seed=seed, download=download)
    return load_data(cfg, device)


def raw_splits(cfg: DataConfig, image_shape: tuple[int, int, int] | None = None) -> dict[str, Split]:
    """The dataset's own train and test splits on the CPU, before held-out carving and selection."""
    if cfg.name == "imagefolder":
        if not cfg.path:
            raise DataError("data.path: an imagefolder dataset needs the folder of images")
        c, size = (image_shape[0], image_shape[1]) if image_shape else (1, 28)
        images = load_imagefolder(cfg.path, cfg.image_size or size, cfg.channels or c, cfg.fit, cfg.bad_files)
        rest, test = heldout_split(len(images), cfg.test_fraction, cfg.split_seed + 1)
        return {"train": images.subset(rest), "test": images.subset(test)}
    if cfg.name == "celeba":  # JPEGs decoded at a chosen size: image_size applies as to a folder
        return load_celeba(cfg.root, cfg.download, cfg.image_size or (image_shape[1] if image_shape else 64))
    if cfg.name in COLOUR_DATASETS:
        return COLOUR_DATASETS[cfg.name](cfg.root, cfg.download)
    return load_raw(cfg.name, cfg.root, cfg.download)


def select(split: Split, classes: list[int] | None, limit: int | None, seed: int) -> Split:
    """Keep the images whose label is in `classes`, then at most `limit` of them (a seeded choice)."""
    if classes is not None:
        keep = torch.isin(split.labels, torch.tensor(classes, device=split.labels.device))
        split = split.subset(keep.nonzero().squeeze(1))
        if len(split) == 0:
            raise DataError(f"data.classes: no image has a label in {classes}")
    if limit is not None and len(split) > limit:
        chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:limit]
        split = split.subset(chosen.sort().values)
    return split


def load_data(cfg: DataConfig, device: torch.device | str = "cpu",
              image_shape: tuple[int, int, int] | None = None) -> DataSplits:
    """Train / held-out / test splits for a `data` config section, on `device`.

    The held-out split is carved from the full training split with data.split_seed before any
    `classes`/`limit` selection, so it is the same images the FID classifier never saw.
    """
    raw = raw_splits(cfg, image_shape)
    train_idx, heldout_idx = heldout_split(len(raw["train"]), cfg.heldout_fraction, cfg.split_seed)
    parts = {"train": raw["train"].subset(train_idx), "heldout": raw["train"].subset(heldout_idx), "test": raw["test"]}
    parts = {k: select(v, cfg.classes, cfg.limit, cfg.split_seed + i).to(device)
             for i, (k, v) in enumerate(parts.items())}
    return DataSplits(name=cfg.name, **parts)


def kfold_splits(cfg: DataConfig, k: int, device: torch.device | str = "cpu",
                 image_shape: tuple[int, int, int] | None = None) -> list[DataSplits]:
    """k train/held-out splits of the training split for cross-validation: fold i holds out the
    i-th of k seeded, disjoint, near-equal parts. The test split is the same in all of them."""
    raw = raw_splits(cfg, image_shape)
    train = select(raw["train"], cfg.classes, None, cfg.split_seed)
    n = len(train)
    if not 2 <= k <= n:
        raise DataError(f"cv_folds={k}: expected between 2 and {n} folds")
    folds = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).chunk(k)
    test = select(raw["test"], cfg.classes, cfg.limit, cfg.split_seed).to(device)
    out = []
    for i, fold in enumerate(folds):
        rest = torch.cat([f for j, f in enumerate(folds) if j != i])
        out.append(DataSplits(
            train=select(train.subset(rest.sort().values), None, cfg.limit, cfg.split_seed).to(device),
            heldout=select(train.subset(fold.sort().values), None, cfg.limit, cfg.split_seed).to(device),
            test=test, name=cfg.name))
    return out


