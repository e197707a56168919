"""Feature extractors for FID/KID/precision-recall, by name: the toolkit's own classifier (for the
labelled built-in datasets), the label-free contrastive encoder trained on the run's own images
(for everything else), or Inception-v3 (weights fetched or on disk). `auto` picks the first two
by dataset."""

from __future__ import annotations

import torch

from genmodels.data import DATASETS, DataConfig
from genmodels.errors import UserError
from genmodels.metrics.classifier import classifier_name, load_classifier
from genmodels.metrics.contrastive import load_contrastive
from genmodels.metrics.extractor import FeatureExtractor, cache_dirs, extract
from genmodels.metrics.inception import PYTORCH_FID_WEIGHTS, TORCHVISION_WEIGHTS, load_inception

__all__ = ["EXTRACTORS", "PYTORCH_FID_WEIGHTS", "TORCHVISION_WEIGHTS", "FeatureExtractor", "cache_dirs",
           "classifier_name", "extract", "load_classifier", "load_extractor", "resolve"]

EXTRACTORS = ("auto", "classifier", "contrastive", "inception")


def resolve(kind: str, dataset: str | None) -> str:
    """`auto`: the classifier for the datasets it is trained for (labelled, built in), the
    label-free contrastive encoder for any other."""
    if kind == "auto":
        return "classifier" if dataset in DATASETS else "contrastive"
    if kind not in EXTRACTORS:
        raise UserError(f"eval.features: unknown extractor '{kind}' (expected {', '.join(EXTRACTORS)})")
    return kind


def check_extractor(kind: str, dataset: str | None) -> str:
    """The extractor `kind` resolves to for `dataset`, or a one-line error before any work."""
    kind = resolve(kind, dataset)
    if kind == "classifier" and dataset not in DATASETS:
        raise UserError(f"eval.features: the classifier extractor is trained for {', '.join(DATASETS)}; for "
                        f"'{dataset}' use features: contrastive (label-free, trained on its images) or auto")
    return kind


def load_extractor(kind: str, data: DataConfig, device: torch.device | str = "cpu", quiet: bool = False,
                   image_shape: tuple[int, int, int] | None = None) -> FeatureExtractor:
    """The extractor `kind` for a run on `data` (its split settings say which images the
    classifier or the contrastive encoder may learn from)."""
    kind = check_extractor(kind, data.name)
    if kind == "inception":
        return load_inception(device)
    if kind == "classifier":
        return load_classifier(data.name, data.root, data.split_seed, data.heldout_fraction, device, quiet=quiet)
    return load_contrastive(data, device, quiet, image_shape)
