"""Sample quality of generated images against a real split: the `eval` config section and the
scorer behind FID, KID and precision/recall, all through one feature extractor that is named with
every number."""

from __future__ import annotations

import os
import socket
import time
import typing
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import Field

from genmodels.checkpoint import load_tensors, save_tensors
from genmodels.files import exclusive
from genmodels.data import DataConfig
from genmodels.metrics.by_class import class_scores
from genmodels.metrics.extractor import fingerprint
from genmodels.metrics.features import FeatureExtractor, cache_dirs, check_extractor, extract, load_extractor
from genmodels.metrics.frechet import (fid_infinity, frechet_distance, gaussian_stats, half_sample_se, kid,
                                       precision_recall, spread_ratio)
from genmodels.schema import StrictModel


QualityMetric = Literal["fid_inf", "kid", "precision", "recall"]
QUALITY_METRICS: tuple[str, ...] = typing.get_args(QualityMetric)  # computed only when asked for


class EvalConfig(StrictModel):
    features: Literal["auto", "classifier", "contrastive", "inception"] = Field(
        "auto", description="feature extractor behind FID/KID/precision-recall; auto: the classifier for mnist and "
                            "fashion-mnist, else contrastive (label-free, trained on the run's training images)")
    fid_samples: int = Field(2000, ge=10, le=1_000_000, description="generated images per held-out FID")
    kid_subsets: int = Field(50, ge=1, le=10_000, description="random subsets KID averages over")
    kid_subset_size: int = Field(1000, ge=2, description="images per KID subset")
    pr_k: int = Field(3, ge=1, le=100, description="neighbours defining the precision/recall manifolds")
    se_draws: int = Field(10, ge=2, le=1000, description="half-samples of both sets behind each standard error "
                                                         "(<name>_se)")
    metrics: list[QualityMetric] = Field(
        default_factory=list, description="sample-quality metrics at every held-out evaluation besides fid "
                                          "(final reports compute them all)")
    noise_seed: int = Field(0, ge=0, lt=2**63, description="seed of the evaluation noise: every run (and every "
                                                          "trial of a study) is scored on the same samples' noise")


class SampleQuality:
    """Loads its extractor on first use; real-split features are computed once per
    (dataset, split, extractor) and cached in memory and on disk."""

    def __init__(self, cfg: EvalConfig, data: DataConfig, device: torch.device | str = "cpu", quiet: bool = False,
                 image_shape: tuple[int, int, int] | None = None):
        self.cfg, self.data, self.device, self.quiet = cfg, data, device, quiet
        self.image_shape = image_shape  # an image folder's, as the run resolved it (the label-free extractor's)
        check_extractor(cfg.features, data.name)  # a one-line error before any training
        self._extractor: FeatureExtractor | None = None
        self._real: dict[tuple[str, str], torch.Tensor] = {}
        self._real_stats: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = load_extractor(self.cfg.features, self.data, self.device, self.quiet, self.image_shape)
        return self._extractor

    @property
    def loaded(self) -> bool:
        return self._extractor is not None

    @property
    def name(self) -> str:
        return self.extractor.name

    def real_features(self, split: str, images: torch.Tensor) -> torch.Tensor:
        """Features of a real split: computed once and cached on disk, under a lock, so the
        workers of a study share one computation."""
        key = (split, fingerprint(images))
        if key not in self._real:
            stem = f"{self.data.name}-{split}-{key[1]}-{self.name}.pt"
            dirs = cache_dirs(self.data.root, self.data.name)
            with exclusive(dirs[0] / "stats" / f"{stem}.lock"):
                cached = next((d / "stats" / stem for d in dirs if (d / "stats" / stem).is_file()), None)
                if cached is not None:
                    self._real[key] = load_tensors(cached, {"features": torch.Tensor})["features"]
                else:
                    start = time.perf_counter()
                    self._real[key] = extract(self.extractor, images)
                    self._save(dirs, stem, self._real[key], time.perf_counter() - start)
        return self._real[key]

    @staticmethod
    def _save(dirs: list[Path], stem: str, features: torch.Tensor, seconds: float) -> None:
        for folder in dirs:
            try:
                save_tensors(folder / "stats" / stem, {"features": features})
                # One line per computation: where and when the statistics a FID used came from.
                with open(folder / "stats" / "computed.log", "a") as log:
                    log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {socket.gethostname()}:{os.getpid()} "
                              f"{stem} {len(features)} images {seconds:.1f}s\n")
                return
            except OSError:
                continue  # read-only data root: try the next folder

    def score(self, split: str, real: torch.Tensor, fake: torch.Tensor, full: bool = False,
              real_labels: torch.Tensor | None = None, fake_labels: torch.Tensor | None = None) -> dict[str, float]:
        """Quality of fake (images in [0, 1]) against real (uint8) images of `split`: always FID
        and the spread ratio (collapse shows as ~0); the metrics of `eval.metrics`, or with
        full=True all of them: FID extrapolated to infinitely many samples (fid_inf), KID
        (unbiased), precision and recall. Each value with `<name>_se`, its standard error over
        independent draws of both the real and the generated images (`half_sample_se`). With the
        labels of both (a conditional model's samples), intra_fid and, where the extractor is a
        labelled classifier, class_accuracy and class_accuracy_min (`by_class.py`)."""
        key = (split, fingerprint(real))
        real_f = self.real_features(split, real)
        if key not in self._real_stats:
            self._real_stats[key] = gaussian_stats(real_f)
        wanted = {"spread", *self.cfg.metrics, *(QUALITY_METRICS if full else ())}
        fake_f = extract(self.extractor, fake)
        out = quality_scores(real_f, fake_f, wanted, self.cfg, self._real_stats[key])
        if real_labels is not None and fake_labels is not None:
            out |= class_scores(real_f, real_labels, fake_f, fake_labels, self.extractor.logits)
        return out


def quality_scores(real_f: torch.Tensor, fake_f: torch.Tensor, wanted: set[str], cfg: EvalConfig,
                   real_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """FID between two feature sets, and those of spread, fid_inf, kid, precision and recall in
    `wanted` (KID and precision/recall with `cfg`'s subsets and k). Each value but spread with
    `<name>_se`, its standard error over independent draws of both sets (`half_sample_se`, from
    cfg.se_draws half-samples). `real_stats`: the real set's Gaussian fit, when already at hand."""
    stats = real_stats if real_stats is not None else gaussian_stats(real_f)

    def se(statistic: Callable[[torch.Tensor, torch.Tensor], Any]) -> list[float]:
        return half_sample_se(statistic, real_f, fake_f, cfg.se_draws)

    out = {"fid": frechet_distance(*stats, *gaussian_stats(fake_f)),
           "fid_se": se(lambda r, f: frechet_distance(*gaussian_stats(r), *gaussian_stats(f)))[0]}
    if "spread" in wanted:
        out["spread"] = spread_ratio(stats, fake_f)
    if "fid_inf" in wanted:
        out["fid_inf"] = fid_infinity(stats, fake_f)
        out["fid_inf_se"] = se(lambda r, f: fid_infinity(gaussian_stats(r), f))[0]
    if "kid" in wanted:
        out["kid"] = kid(real_f, fake_f, cfg.kid_subsets, cfg.kid_subset_size)[0]
        out["kid_se"] = se(lambda r, f: kid(r, f, cfg.kid_subsets, cfg.kid_subset_size)[0])[0]
    if wanted & {"precision", "recall"}:
        out["precision"], out["recall"] = precision_recall(real_f, fake_f, cfg.pr_k)
        out["precision_se"], out["recall_se"] = se(lambda r, f: precision_recall(r, f, cfg.pr_k))
    return out
