"""SVHN (cropped digits) from its .mat files, read with scipy's loadmat: MATLAB data, arrays only,
nothing executed. Downloaded with torchvision's helper and its MD5s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genmodels.data.roots import locate
from genmodels.data.tensors import Split
from genmodels.errors import DataError


def read_svhn(path: Path) -> Split:
    """SVHN's {split}_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 standing for the digit 0."""
    from scipy.io import loadmat  # MATLAB v5 data: arrays are read, nothing is executed

    try:
        mat = loadmat(path)
    except Exception as exc:  # a truncated or foreign file
        raise DataError(f"{path}: cannot read the .mat file ({type(exc).__name__}: {exc})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: expected 'X' of uint8 (32, 32, 3, N), got {getattr(x, 'shape', None)}")
    if not isinstance(y, np.ndarray) or y.size != x.shape[3]:
        raise DataError(f"{path}: expected 'y' with {x.shape[3]} labels, got {getattr(y, 'shape', None)}")
    return Split(torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))),
                 torch.from_numpy(y.reshape(-1).astype(np.int64) % 10))


def load_svhn(root: str | Path | None, download: bool) -> dict[str, Split]:
    def fetch(target: Path) -> None:
        from torchvision.datasets import SVHN
        from torchvision.datasets.utils import download_url

        for split in ("train", "test"):
            url, name, md5 = SVHN.split_list[split]
            download_url(url, str(target / "svhn"), name, md5)

    folder = locate("svhn", root, ["svhn", "SVHN"], ["train_32x32.mat", "test_32x32.mat"],
                    fetch if download else None)
    return {split: read_svhn(folder / f"{split}_32x32.mat") for split in ("train", "test")}
