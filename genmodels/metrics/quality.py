"""Sample quality of generated images against a real split: the `eval` config section and the
scorer behind FID, KID and precision/recall, all through one feature extractor that is named with
every number."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from genmodels.checkpoint import load_tensors, save_tensors
from genmodels.data import DataConfig
from genmodels.metrics.features import FeatureExtractor, cache_dirs, extract, load_extractor
from genmodels.metrics.frechet import fid_from_features, kid, precision_recall
from genmodels.schema import StrictModel


class EvalConfig(StrictModel):
    features: Literal["classifier", "inception"] = Field("classifier", description="feature extractor behind "
                                                                                  "FID/KID/precision-recall")
    fid_samples: int = Field(2000, ge=10, le=1_000_000, description="generated images per held-out FID")
    kid_subsets: int = Field(50, ge=1, le=10_000, description="random subsets KID averages over")
    kid_subset_size: int = Field(1000, ge=2, description="images per KID subset")
    pr_k: int = Field(3, ge=1, le=100, description="neighbours defining the precision/recall manifolds")


def _fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class SampleQuality:
    """Loads its extractor on first use; real-split features are computed once per
    (dataset, split, extractor) and cached in memory and on disk."""

    def __init__(self, cfg: EvalConfig, data: DataConfig, device: torch.device | str = "cpu", quiet: bool = False):
        self.cfg, self.data, self.device, self.quiet = cfg, data, device, quiet
        self._extractor: FeatureExtractor | None = None
        self._real: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = load_extractor(self.cfg.features, self.data.name, self.data.root, self.data.split_seed,
                                             self.data.heldout_fraction, self.device, self.quiet)
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
            stem = f"{self.data.name}-{split}-{key[1]}-{self.name}.pt"
            dirs = cache_dirs(self.data.root, self.data.name)
            cached = next((d / "stats" / stem for d in dirs if (d / "stats" / stem).is_file()), None)
            if cached is not None:
                self._real[key] = load_tensors(cached, {"features": torch.Tensor})["features"]
            else:
                self._real[key] = extract(self.extractor, images)
                self._save(dirs, stem, self._real[key])
        return self._real[key]

    @staticmethod
    def _save(dirs: list[Path], stem: str, features: torch.Tensor) -> None:
        for folder in dirs:
            try:
                save_tensors(folder / "stats" / stem, {"features": features})
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
            out["kid"], out["kid_std"] = kid(real_f, fake_f, self.cfg.kid_subsets, self.cfg.kid_subset_size)
            out["precision"], out["recall"] = precision_recall(real_f, fake_f, self.cfg.pr_k)
        return out
