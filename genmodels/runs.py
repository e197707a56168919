"""Reading a finished (or interrupted) run folder back: its config and its trained model."""

from __future__ import annotations

from pathlib import Path

import torch

from genmodels.checkpoint import RunCheckpoint, load_checkpoint, load_weights
from genmodels.config import Config
from genmodels.errors import UserError
from genmodels.models import GenerativeModel, build_model
from genmodels.schema import validate


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """run_dir/<which>.pt, falling back to last.pt; a .pt file path is taken as it is."""
    path = Path(run_dir)
    if path.suffix == ".pt":
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory")
    for name in (f"{which}.pt", "last.pt"):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: no checkpoint (expected {which}.pt or last.pt)")


def run_config(ckpt: RunCheckpoint, source: str) -> Config:
    """The config stored in a checkpoint: the one that built its weights (config.yaml may have
    been edited since)."""
    cfg = validate(Config, ckpt.config, f"{source} (config)")
    if cfg.model is None:
        raise UserError(f"{source}: its config has no model section")
    return cfg


def load_run(run_dir: str | Path, which: str = "best", device: torch.device | str = "cpu"
             ) -> tuple[Config, GenerativeModel, RunCheckpoint]:
    """The run's config, its model with trained weights (in eval mode) and the checkpoint."""
    path = checkpoint_path(run_dir, which)
    ckpt = load_checkpoint(path, device)
    cfg = run_config(ckpt, str(path))
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation must not use the caller's RNG
        model = build_model(cfg.model, ckpt.image_shape)
    load_weights(model, ckpt.model, str(path))
    return cfg, model.to(device).eval(), ckpt
