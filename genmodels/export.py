"""`genmodels export fashion-mnist:train my_images`: a dataset's split as PNG files in one flat
folder, without its labels: a folder like one's own images, with answers known elsewhere, to try
the image-folder path on (README quick start 6)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from genmodels.data import NAMED_DATASETS, DataConfig, raw_splits
from genmodels.errors import UserError



def export_split(spec: str, folder: str | Path, data_root: str | None = None, quiet: bool = False) -> int:
    """Write split `spec` (`name:train` or `name:test`, the dataset's own splits) as 00000.png, ...
    into `folder`, which must be new or empty (nothing of the user's is overwritten or mixed in).
    Returns the number of images."""
    name, _, split = spec.partition(":")
    if name not in NAMED_DATASETS or split not in ("train", "test"):
        raise UserError(f"{spec}: expected a dataset's split, <name>:train or <name>:test, with name one of "
                        f"{', '.join(NAMED_DATASETS)}")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder}: exists and is not an empty folder; export into a new one")
    images = raw_splits(DataConfig(name=name, root=data_root))[split].images
    folder.mkdir(parents=True, exist_ok=True)
    width = len(str(len(images) - 1))
    terminal = not quiet and os.isatty(2)
    if not quiet and not terminal:
        print(f"writing {len(images):,} images of {spec} to {folder}", file=sys.stderr, flush=True)
    for i, image in enumerate(tqdm(images, desc=f"export {spec}", disable=not terminal, leave=False)):
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else np.ascontiguousarray(array)).save(
            folder / f"{i:0{width}d}.png")
    return len(images)
