"""Sample quality between any two image sets, `genmodels fid A B`: each a folder of images, a
dataset split (`fashion-mnist:test`) or a run (samples of its best checkpoint). The same scores
as training's held-out evaluation (`quality_scores`, the `eval` section's defaults), every number
with its standard error and extractor.

    genmodels fid runs/dcgan_fashion fashion-mnist:test --metrics kid precision recall
    genmodels fid my_images/ my_images/        # the folder's floor: FID between its two halves
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from genmodels.data import DATASETS, NAMED_DATASETS, DataConfig, load_data, load_imagefolder
from genmodels.errors import UserError
from genmodels.metrics.features import check_extractor, extract, load_extractor
from genmodels.metrics.quality import EvalConfig, quality_scores
from genmodels.runs import load_run

SPLITS = ("train", "heldout", "test")
METRICS = ("fid_inf", "kid", "precision", "recall")


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W), or floats in [0, 1] for a run's samples
    label: str  # what it is, for the report
    data: DataConfig | None  # the dataset it comes from, if known (picks and trains the extractor)


def dataset_split(spec: str, data_root: str | None) -> ImageSet | None:
    """`name:split` of a named dataset, or None when `spec` is not of that form."""
    name, sep, split = spec.partition(":")
    if not sep or name not in NAMED_DATASETS or Path(spec).exists():
        return None
    if split not in SPLITS:
        raise UserError(f"{spec}: expected a split of {name}: {', '.join(f'{name}:{s}' for s in SPLITS)}")
    data = DataConfig(name=name, root=data_root)
    return ImageSet(getattr(load_data(data), split).images, f"{name} {split} split", data)


def run_samples(spec: str, n: int, seed: int, data_root: str | None) -> ImageSet | None:
    """`n` samples of a run folder's best checkpoint (or of a .pt checkpoint), or None."""
    path = Path(spec)
    if not (path.suffix == ".pt" and path.is_file() or path.is_dir() and any(path.glob("*.pt"))):
        return None
    cfg, model, _ = load_run(path)
    with torch.no_grad():
        images = model.sample(n, torch.Generator().manual_seed(seed))
    data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
    return ImageSet(images, f"{n:,} samples of {path}", data)


def folder_set(spec: str, shape: tuple[int, int] | None, quiet: bool) -> ImageSet:
    """A folder of images at the extractor's input shape (channels, side); Inception's: 3 x 299."""
    if not Path(spec).is_dir():
        raise UserError(f"{spec}: expected an image folder, a run folder, a .pt checkpoint or a dataset split "
                        f"such as fashion-mnist:test")
    channels, size = shape or (3, 299)
    return ImageSet(load_imagefolder(spec, size, channels, quiet=quiet).images, f"images in {spec}", None)


def feature_data(features: str, given: str | None, sets: Sequence[ImageSet | None], folders: Sequence[str],
                 data_root: str | None, image_size: int | None, channels: int | None) -> DataConfig:
    """The dataset the extractor belongs to: --feature-dataset (a dataset's name or a folder), else
    that of a run or split given, else (label-free features) the first folder given."""
    if given is not None:
        if given in NAMED_DATASETS:
            return DataConfig(name=given, root=data_root)
        if not Path(given).is_dir():
            raise UserError(f"--feature-dataset: expected a dataset ({', '.join(NAMED_DATASETS)}) or an image folder, "
                            f"got '{given}'")
        return DataConfig(name="imagefolder", path=given, image_size=image_size, channels=channels)
    known = next((s.data for s in sets if s is not None and s.data is not None), None)
    if known is not None:
        return known
    if features == "classifier":
        raise UserError(f"--feature-dataset: the classifier extractor is trained on a labelled dataset; name one "
                        f"({', '.join(DATASETS)}), or use --features contrastive (label-free) or inception")
    if folders:
        return DataConfig(name="imagefolder", path=folders[0], image_size=image_size, channels=channels)
    return DataConfig()  # inception on two runs of unknown data: no dataset needed


def compare(a: str, b: str, features: str = "auto", feature_dataset: str | None = None,
            metrics: Sequence[str] = (), samples: int = 10_000, seed: int = 0, data_root: str | None = None,
            device: str = "cpu", quiet: bool = False, image_size: int | None = None,
            channels: int | None = None) -> dict[str, Any]:
    """FID (and `metrics`) of set `b` against set `a`, with standard errors over both sets'
    sampling noise; with a == b, the set's floor: the same between two disjoint random halves.
    The label-free extractor learns from --feature-dataset, a run's or split's dataset, or else
    the first folder (at image_size and channels)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"--metrics: unknown metric '{unknown[0]}' (expected any of {', '.join(METRICS)})")
    floor = Path(a).resolve() == Path(b).resolve() if Path(a).exists() else a == b
    sets = {s: found for s in {a, b} if (found := dataset_split(s, data_root) or run_samples(s, samples, seed,
                                                                                             data_root))}
    folders = [s for s in (a, b) if s not in sets and Path(s).is_dir()]
    data = feature_data(features, feature_dataset, list(sets.values()), folders, data_root, image_size, channels)
    kind = check_extractor(features, data.name)
    extractor = load_extractor(kind, data, device=device, quiet=quiet)
    shape = {"inception": None, "classifier": _classifier_input(data),
             "contrastive": tuple(getattr(extractor, "shape", (1, 28)))[:2]}[kind]
    first = sets.get(a) or folder_set(a, shape, quiet)
    second = first if floor else sets.get(b) or folder_set(b, shape, quiet)
    for s in (first, second):
        if kind == "classifier" and tuple(s.images.shape[1:]) != (shape[0], shape[1], shape[1]):
            raise UserError(f"{s.label}: images of shape {tuple(s.images.shape[1:])}; the {extractor.name} "
                            f"extractor takes {(shape[0], shape[1], shape[1])}")
    real, fake = extract(extractor, first.images), extract(extractor, second.images)
    if floor:  # two disjoint random halves of the one set
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
        real, fake = real[order[: len(real) // 2]], real[order[len(real) // 2 :]]
    report = {"a": first.label, "b": "the other half of it" if floor else second.label, "floor": floor,
              "features": extractor.name, "images": [len(real), len(fake)],
              "metrics": quality_scores(real, fake, set(metrics), EvalConfig())}
    return report


def _classifier_input(data: DataConfig) -> tuple[int, int]:
    """(channels, side) of the labelled dataset the classifier was trained on."""
    if data.name not in DATASETS:
        return (1, 28)
    train = load_data(data.model_copy(update={"limit": 1})).train.images
    return train.shape[1], train.shape[2]
