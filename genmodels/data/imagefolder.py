"""A folder of the user's own images (PNG/JPEG), decoded once and cached as a uint8 tensor."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from genmodels.checkpoint import load_tensors, save_tensors
from genmodels.data.tensors import Split
from genmodels.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_imagefolder(path: str | Path, size: int, channels: int) -> Split:
    """Every PNG/JPEG under `path`, decoded once, resized to size x size with `channels`, cached
    beside the images as a uint8 tensor. Labels are the sorted subfolder names (0 if none)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data.path: no PNG or JPEG images in {folder}")
    listing = "".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    stamp = hashlib.sha1(listing.encode()).hexdigest()[:12]
    cache = folder / f".genmodels-{size}x{size}x{channels}-{stamp}.pt"
    if cache.is_file():
        state = load_tensors(cache, {"images": torch.Tensor, "labels": torch.Tensor})
        return Split(state["images"], state["labels"])
    groups = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    images = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, p in enumerate(files):
        images[i] = _decode(p, size, channels)
    labels = torch.tensor([groups.index(p.parent.relative_to(folder).as_posix()) for p in files])
    try:
        save_tensors(cache, {"images": images, "labels": labels})
    except OSError:
        pass  # a read-only folder: decode again next time
    return Split(images, labels)


def _decode(path: Path, size: int, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            array = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    return array.view(size, size, channels).permute(2, 0, 1)

