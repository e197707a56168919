"""Reading a finished (or interrupted) run directory back: its config and a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genmodels import checkpoint as ckpt
from genmodels.config import Config, validate
from genmodels.errors import UserError
from genmodels.models import GenerativeModel, build_model


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


def load_run(run_dir: str | Path, which: str = "best", device: torch.device | str = "cpu"
             ) -> tuple[Config, GenerativeModel, dict[str, Any]]:
    """The run's config, its model with trained weights (in eval mode) and the raw checkpoint."""
    path = checkpoint_path(run_dir, which)
    state = ckpt.load_checkpoint(path, device)
    # The checkpoint's own copy of the config built these weights; config.yaml may have been edited.
    cfg = validate(Config, state["config"], f"{path} (config)")
    model = build_model(cfg.model, tuple(state["image_shape"])).to(device)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), state
