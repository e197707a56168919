"""The study's final report: the best trial's config retrained on the whole training split and
scored on the test split, the only read of the test split a study makes."""

from __future__ import annotations

import shutil
from typing import Any

import optuna
import torch

from genmodels.data import DataSplits, Split, load_data
from genmodels.experiment import build
from genmodels.runtime import pick_device
from genmodels.tuning.config import TuneConfig
from genmodels.tuning.objective import trial_config


def retrain_best(study: optuna.Study, tune: TuneConfig, base: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """Train the best trial's config on the whole training split (train + held-out) for as many
    images as its best held-out evaluation had seen, then score the test split: the study's only
    test-split read."""
    best = study.best_trial
    cfg = trial_config(tune, base, best.params, "best-retrained")
    images = best.user_attrs.get("best_images")
    if images:
        cfg.train.max_images, cfg.train.epochs = int(images), 1_000_000
    else:  # trials of older studies recorded the epoch only
        cfg.train.epochs = max(1, round(best.user_attrs.get("best_epoch") or cfg.train.epochs))
    cfg.train.patience = None
    splits = load_data(cfg.data, pick_device(cfg.train.device))
    full = DataSplits(
        train=Split(torch.cat([splits.train.images, splits.heldout.images]),
                    torch.cat([splits.train.labels, splits.heldout.labels])),
        heldout=splits.heldout,  # now seen in training: its curve is for reference only
        test=splits.test, name=splits.name,
    )
    shutil.rmtree(cfg.run_dir(), ignore_errors=True)  # a rerun retrains from scratch, same seed
    trainer = build(cfg, data=full, quiet=quiet)
    result = trainer.fit()
    test = trainer.evaluate("test", full=True)
    return {"trial": best.number, "params": best.params, "images": result.images_seen, "train_images": len(full.train),
            "run_dir": str(trainer.run_dir), "test": test,
            "features": trainer.scorer.name if trainer.scorer and trainer.scorer.loaded else None}
