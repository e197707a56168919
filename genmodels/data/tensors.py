"""The tensors every source format produces: a split's uint8 images with their labels, and the
train / held-out / test splits of a run."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Split:
    """Images (N, C, H, W) uint8 and labels (N,) int64, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> "Split":
        index = index.to(self.images.device)
        return Split(take(self.images, index), self.labels[index])


def take(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """images[index] along the first dim, as whole-image row copies: on CPU 2-5x faster than
    advanced indexing of a 4-d tensor, which walks it element by element."""
    return images.flatten(1).index_select(0, index).view(len(index), *images.shape[1:])


@dataclass
class DataSplits:
    train: Split
    heldout: Split
    test: Split
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

