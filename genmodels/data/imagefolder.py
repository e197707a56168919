"""A folder of the user's own images, as users have them: nested folders, mixed sizes and aspect
ratios, grey and colour mixed, the odd corrupt or truncated file. Decoded once into a uint8 tensor
and cached outside the user's folder ($GENMODELS_CACHE/imagefolders, else
~/.cache/genmodels/imagefolders), keyed by the folder's content: a changed, added or removed
file makes a new cache. Labels are the sorted subfolder names (0 when the images sit in one
folder); a model that is not conditional never reads them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genmodels.checkpoint import load_tensors, save_tensors
from genmodels.data.roots import cache_root
from genmodels.data.tensors import Split
from genmodels.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
#: Larger images are refused before a pixel is decoded: a 20,000 x 20,000 PNG of a few kilobytes
#: would otherwise ask for gigabytes (a decompression bomb). PIL's own default limit.
MAX_PIXELS = 89_478_485
#: Part of the cache key: a change to how images are decoded makes new caches.
DECODER_VERSION = 2
#: Folders of at least this many images show their decoding's progress (a few seconds or more).
LONG_DECODE = 5_000


def cache_dir() -> Path:
    return cache_root() / "imagefolders"


def load_imagefolder(path: str | Path, size: int, channels: int, fit: str = "crop", bad_files: str = "skip",
                     quiet: bool = False, refusal_hint: str = "data.bad_files: skip leaves such files out") -> Split:
    """Every image under `path` (PNG, JPEG, BMP, WebP, in nested folders) as a (N, channels, size,
    size) uint8 tensor. fit='crop' scales the shorter side to `size` and keeps the centre square;
    'stretch' scales both sides to `size`. A file that cannot be decoded is skipped and counted
    (bad_files='skip') or refused (bad_files='error', the error ending with `refusal_hint`)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data.path: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    key = hashlib.sha256(f"{folder.resolve()}|{size}|{channels}|{fit}|{DECODER_VERSION}|".encode())
    for p in files:
        stat = p.stat()
        key.update(f"{p.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    cache = cache_dir() / f"{folder.name}-{size}x{size}x{channels}-{fit}-{key.hexdigest()[:20]}.pt"
    if cache.is_file():
        state = load_tensors(cache, {"images": torch.Tensor, "labels": torch.Tensor})
        return Split(state["images"], state["labels"])
    groups = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    # One buffer for the decoded set, filled in place: 100,000 images are never held twice.
    images = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    labels, skipped = [], []
    terminal = not quiet and os.isatty(2)
    if not quiet and not terminal and len(files) >= LONG_DECODE:
        print(f"genmodels: decoding {len(files):,} images of {folder} (once: cached in {cache_dir()})",
              file=sys.stderr, flush=True)
    show = terminal and len(files) >= LONG_DECODE
    for p in tqdm(files, desc=f"decoding {folder.name}", leave=False, disable=not show):
        try:
            images[len(labels)] = _decode(p, size, channels, fit)
        except DataError as exc:
            if bad_files == "error":
                raise DataError(f"{exc} ({refusal_hint})") from None
            skipped.append(str(exc))
            continue
        labels.append(groups.index(p.parent.relative_to(folder).as_posix()))
    if not labels:
        raise DataError(f"data.path: none of the {len(files)} images in {folder} could be decoded ({skipped[0]})")
    if skipped and not quiet:
        print(f"genmodels: data.path: skipped {len(skipped)} of {len(files)} files that cannot be used (first: "
              f"{skipped[0]}); data.bad_files: error refuses them instead", file=sys.stderr)
    split = Split(images[: len(labels)], torch.tensor(labels))
    try:
        save_tensors(cache, {"images": split.images, "labels": split.labels})
    except OSError:
        pass  # no writable cache: decode again next time
    return split


def _decode(path: Path, size: int, channels: int, fit: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size  # from the header: nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise DataError(f"{path}: refused, {width}x{height} = {width * height:,} pixels is more than "
                                    f"{MAX_PIXELS:,} (a decompression bomb?)")
                im = im.convert("L" if channels == 1 else "RGB")
                if fit == "crop":
                    scale = size / min(width, height)
                    w, h = max(size, round(width * scale)), max(size, round(height * scale))
                    left, top = (w - size) // 2, (h - size) // 2
                    im = im.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + size, top + size))
                else:
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                array = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused, a decompression bomb ({exc})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:  # PIL's errors for bad files
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    return array.view(size, size, channels).permute(2, 0, 1)
