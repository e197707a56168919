"""The `data` config section: which dataset, where its files are, and how it is split."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field

from genmodels.schema import StrictModel


class DataConfig(StrictModel):
    name: Literal["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "stl10", "celeba",
                  "imagefolder"] = Field(
        "mnist", description="dataset")
    root: str | None = Field(None, description="folder holding <dataset>/*.gz; default $GENMODELS_DATA, "
                                                "then ~/.cache/genmodels/data")
    path: str | None = Field(None, description="imagefolder: a folder of PNG/JPEG/BMP/WebP images, nested folders "
                                               "allowed (subfolder names are the labels)")
    image_size: int | None = Field(None, ge=4, le=1024, description="imagefolder, celeba: resize to this side "
                                                                     "(default: the fine-tuning source's, else 28; "
                                                                     "celeba 64)")
    channels: Literal[1, 3] | None = Field(None, description="imagefolder: 1 grey or 3 RGB (default: the "
                                                               "fine-tuning source's, else 1)")
    fit: Literal["crop", "stretch"] = Field("crop", description="imagefolder: crop scales the shorter side to "
                                                                "image_size and keeps the centre; stretch scales "
                                                                "both sides")
    bad_files: Literal["skip", "error"] = Field("skip", description="imagefolder: a file that cannot be decoded "
                                                                    "(corrupt, truncated, a decompression bomb) is "
                                                                    "skipped and counted, or refused")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="imagefolder: share kept as its test split")
    classes: list[int] | None = Field(None, description="keep only these labels (every split)")
    limit: int | None = Field(None, ge=1, description="at most this many images per split (a seeded choice)")
    heldout_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of the training split held out "
                                                                      "for evaluation and tuning")
    # Fixes which images are held out, apart from the run seed: runs with different seeds are
    # scored on the same held-out images, and the FID classifier is trained without them.
    split_seed: int = Field(0, ge=0, lt=2**63, description="seed of the held-out split (the same for every run seed)")
    download: bool = Field(True, description="try torchvision's download when no files are found")


# The datasets a config can name (everything but a folder of one's own images).
NAMED_DATASETS: tuple[str, ...] = tuple(n for n in typing.get_args(DataConfig.model_fields["name"].annotation)
                                        if n != "imagefolder")
