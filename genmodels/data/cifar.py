"""CIFAR-10 and CIFAR-100 from their *binary* version: fixed-length records of label bytes and
pixels. The pickled Python batches are never opened, whatever a folder holds: unpickling runs
code. Downloaded with torchvision's helper and the published MD5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genmodels.data.roots import fetch_archive, locate
from genmodels.data.tensors import Split
from genmodels.errors import DataError

CIFAR10_URL = ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")
CIFAR100_URL = ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")


def read_records(path: Path, label_bytes: int, shape: tuple[int, int, int]) -> Split:
    """Fixed-length records: `label_bytes` label bytes (the last is the label used), then the
    pixels channel-major: CIFAR's binary layout."""
    pixels = int(np.prod(shape))
    data = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + pixels
    if data.size == 0 or data.size % record:
        raise DataError(f"{path}: {data.size:,} bytes is not a whole number of {record}-byte records "
                        f"({label_bytes} label bytes + {shape} pixels)")
    rows = data.reshape(-1, record)
    return Split(torch.from_numpy(rows[:, label_bytes:].reshape(-1, *shape).copy()),
                 torch.from_numpy(rows[:, label_bytes - 1].astype(np.int64)))


def load_cifar10(root: str | Path | None, download: bool) -> dict[str, Split]:
    train = [f"data_batch_{i}.bin" for i in range(1, 6)]
    folder = locate("cifar10", root, ["cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "cifar10"],
                    [*train, "test_batch.bin"], fetch_archive(*CIFAR10_URL) if download else None)
    parts = [read_records(folder / f, 1, (3, 32, 32)) for f in train]
    return {"train": Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])),
            "test": read_records(folder / "test_batch.bin", 1, (3, 32, 32))}


def load_cifar100(root: str | Path | None, download: bool) -> dict[str, Split]:
    """The 100 fine labels (each record holds the coarse label first)."""
    folder = locate("cifar100", root, ["cifar-100-binary", "cifar100/cifar-100-binary", "cifar100"],
                    ["train.bin", "test.bin"], fetch_archive(*CIFAR100_URL) if download else None)
    return {split: read_records(folder / f"{split}.bin", 2, (3, 32, 32)) for split in ("train", "test")}
