"""Pixel conventions shared by models, metrics and writers: a leaf with no knowledge of either."""

from __future__ import annotations

import math

import torch


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]. Models call this inside their step, on the device."""
    return images.float().div_(255.0)


def grid_columns(n: int) -> int:
    """Columns of a grid of n images (TensorBoard, samples.png): as square as whole rows allow."""
    return max(1, int(math.sqrt(n)))
