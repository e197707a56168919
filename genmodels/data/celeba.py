"""CelebA's aligned faces (img_align_celeba: 202,599 JPEGs of 178 x 218) with the official
partition file: its train and valid parts are the train split (182,637), its test part the test
split (19,962). Decoded with PIL by the image-folder decoder (the centre square, scaled to
data.image_size, 64 by default) and cached outside the dataset's folder. No labels: the 40
attributes are not one class per image. Downloaded with torchvision's Google Drive helper and
its MD5s (the images' zip and the partition file only)."""

from __future__ import annotations

from pathlib import Path

import torch

from genmodels.data.imagefolder import IMAGE_SUFFIXES, load_imagefolder
from genmodels.data.roots import locate
from genmodels.data.tensors import Split
from genmodels.errors import DataError

PARTITION = "list_eval_partition.txt"
IMAGES = "img_align_celeba"
#: the partition file's part -> our split (valid joins train: the held-out split is carved from it)
PARTS = {"0": "train", "1": "train", "2": "test"}


def read_partition(path: Path) -> dict[str, str]:
    """list_eval_partition.txt: one 'NNNNNN.jpg P' line per image, P in 0 (train), 1 (valid), 2 (test)."""
    split = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in PARTS or fields[0] in split:
            raise DataError(f"{path}:{number}: expected '<image file> <0, 1 or 2>' once per image, got {line!r}")
        split[fields[0]] = PARTS[fields[1]]
    if not split:
        raise DataError(f"{path}: no images listed")
    return split


def fetch(target: Path) -> None:
    from torchvision.datasets import CelebA
    from torchvision.datasets.utils import download_file_from_google_drive, extract_archive

    folder = target / "celeba"
    for file_id, md5, name in CelebA.file_list:
        if name in (f"{IMAGES}.zip", PARTITION):
            download_file_from_google_drive(file_id, str(folder), name, md5)
    extract_archive(str(folder / f"{IMAGES}.zip"), remove_finished=True)


def load_celeba(root: str | Path | None, download: bool, size: int = 64) -> dict[str, Split]:
    folder = locate("celeba", root, ["celeba", "CelebA"], [PARTITION, f"{IMAGES}/000001.jpg"],
                    fetch if download else None)
    split_of = read_partition(folder / PARTITION)
    images = folder / IMAGES
    # The decoder reads every image file under the folder in sorted order: it must hold exactly
    # the partition's files, or an image would land in the wrong split.
    found = sorted(p.relative_to(images).as_posix() for p in images.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if found != sorted(split_of):
        missing, extra = sorted(set(split_of) - set(found)), sorted(set(found) - set(split_of))
        raise DataError(f"{images}: holds {len(found):,} images, {PARTITION} lists {len(split_of):,} ("
                        + (f"missing {len(missing):,}, first {missing[0]}" if missing else
                           f"{len(extra):,} not listed, first {extra[0]}") + ")")
    decoded = load_imagefolder(images, size, 3, "crop", bad_files="error",
                               refusal_hint=f"a damaged download: remove {folder} to fetch it again")
    is_test = torch.tensor([split_of[name] == "test" for name in found])
    return {split: decoded.subset(mask.nonzero().squeeze(1))
            for split, mask in (("train", ~is_test), ("test", is_test))}
