"""STL-10 from its raw binary files (the labelled train and test splits; 96 x 96 colour).
Downloaded with torchvision's helper and its MD5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genmodels.data.roots import fetch_archive, locate
from genmodels.data.tensors import Split
from genmodels.errors import DataError


def read_stl10(images: Path, labels: Path) -> Split:
    """STL-10's raw binary: uint8 images (N, 3, 96, 96) stored column-major, labels 1..10."""
    x, y = np.fromfile(images, dtype=np.uint8), np.fromfile(labels, dtype=np.uint8)
    if x.size != y.size * 3 * 96 * 96:
        raise DataError(f"{images}: {x.size:,} bytes for {y.size:,} labels in {labels.name} (expected "
                        f"{y.size * 3 * 96 * 96:,}: 3 x 96 x 96 per image)")
    if y.size == 0 or y.min() < 1 or y.max() > 10:
        raise DataError(f"{labels}: expected labels 1 to 10")
    pixels = x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # column-major rows -> image rows
    return Split(torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(y.astype(np.int64) - 1))


def load_stl10(root: str | Path | None, download: bool) -> dict[str, Split]:
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    url, md5 = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb"
    folder = locate("stl10", root, ["stl10_binary", "stl10/stl10_binary", "stl10"], files,
                    fetch_archive(url, md5) if download else None)
    return {split: read_stl10(folder / f"{split}_X.bin", folder / f"{split}_y.bin") for split in ("train", "test")}
