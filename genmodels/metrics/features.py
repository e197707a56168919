"""Feature extractors for FID/KID/precision-recall, by name: the toolkit's own classifier (the
default: Inception weights cannot be assumed downloadable) or Inception-v3 from local weights."""

from __future__ import annotations

import torch

from genmodels.data import DATASETS
from genmodels.errors import UserError
from genmodels.metrics.classifier import classifier_name, load_classifier
from genmodels.metrics.extractor import FeatureExtractor, cache_dirs, extract
from genmodels.metrics.inception import PYTORCH_FID_WEIGHTS, TORCHVISION_WEIGHTS, load_inception

__all__ = ["PYTORCH_FID_WEIGHTS", "TORCHVISION_WEIGHTS", "FeatureExtractor", "cache_dirs", "classifier_name",
           "extract", "load_classifier", "load_extractor"]


def load_extractor(kind: str, dataset: str, data_root: str | None = None, split_seed: int = 0,
                   heldout_fraction: float = 0.1, device: torch.device | str = "cpu",
                   quiet: bool = False) -> FeatureExtractor:
    if kind == "inception":
        return load_inception(device)
    if kind == "classifier":
        if dataset not in DATASETS:
            raise UserError(f"eval.features: the classifier extractor is trained for {', '.join(DATASETS)}; "
                            f"for '{dataset}' use features: inception (weights on disk)")
        return load_classifier(dataset, data_root, split_seed, heldout_fraction, device, quiet=quiet)
    raise UserError(f"eval.features: unknown extractor '{kind}' (expected classifier or inception)")
