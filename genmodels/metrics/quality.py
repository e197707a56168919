"""Sample quality of generated images against a real split: FID, and for final reports KID and
precision/recall, all through one feature extractor that is named with every number."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from genmodels import checkpoint as ckpt
from genmodels.metrics.features import FeatureExtractor, cache_dirs, extract, load_extractor
from genmodels.metrics.frechet import fid_from_features, kid, precision_recall


def _fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class SampleQuality:
    """Loads its extractor on first use; real-split features are computed once per
    (dataset, split, extractor) and cached in memory and on disk."""

    def __init__(self, features: str, dataset: str, data_root: str | None = None, split_seed: int = 0,
                 heldout_fraction: float = 0.1, device: torch.device | str = "cpu", quiet: bool = False,
                 kid_subsets: int = 50, kid_subset_size: int = 1000, pr_k: int = 3):
        self.kind = features
        self.dataset = dataset
        self.data_root = data_root
        self.split_seed = split_seed
        self.heldout_fraction = heldout_fraction
        self.device = device
        self.quiet = quiet
        self.kid_subsets, self.kid_subset_size, self.pr_k = kid_subsets, kid_subset_size, pr_k
        self._extractor: FeatureExtractor | None = None
        self._real: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = load_extractor(self.kind, self.dataset, self.data_root, self.split_seed,
                                             self.heldout_fraction, self.device, self.quiet)
        return self._extractor

    @property
    def loaded(self) -> bool:
        return self._extractor is not None

    @property
    def name(self) -> str:
        return self.extractor.name

    def real_features(self, split: str, images: torch.Tensor) -> torch.Tensor:
        key = (split, _fingerprint(images))
        if key not in self._real:
            stem = f"{self.dataset}-{split}-{key[1]}-{self.name}.pt"
            cached = next((d / "stats" / stem for d in cache_dirs(self.data_root, self.dataset)
                           if (d / "stats" / stem).is_file()), None)
            if cached is not None:
                self._real[key] = ckpt.load_checkpoint(cached)["features"]
            else:
                self._real[key] = extract(self.extractor, images)
                self._save(stem, self._real[key])
        return self._real[key]

    def _save(self, stem: str, features: torch.Tensor) -> None:
        for folder in cache_dirs(self.data_root, self.dataset):
            try:
                ckpt.save_checkpoint(Path(folder) / "stats" / stem, {"features": features})
                return
            except OSError:
                continue  # read-only data root: try the next folder

    def score(self, split: str, real: torch.Tensor, fake: torch.Tensor, full: bool = False) -> dict[str, float]:
        """FID of fake (images in [0, 1]) against real (uint8) images of `split`; with full=True
        also KID (mean, std) and precision/recall."""
        real_f = self.real_features(split, real)
        fake_f = extract(self.extractor, fake)
        out = {"fid": fid_from_features(real_f, fake_f)}
        if full:
            out["kid"], out["kid_std"] = kid(real_f, fake_f, self.kid_subsets, self.kid_subset_size)
            out["precision"], out["recall"] = precision_recall(real_f, fake_f, self.pr_k)
        return out
