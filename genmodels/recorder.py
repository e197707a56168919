"""What a run writes to its folder: config.yaml, TensorBoard events (scalars, image grids, the
HParams record), metrics.json, samples.png, and failed.json when it fails. Under torchrun only
rank 0 writes; the others' recorder is switched off.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image
from tqdm.auto import tqdm

from genmodels.config import Config
from genmodels.files import atomic_write, write_json, write_text
from genmodels.run_state import FitResult
from genmodels.tblog import grid, grid_columns, log_hparams


@dataclass
class HParams:
    """What a run's HParams record shows instead of every config field and the final held-out
    metrics: a tuning trial shows its searched fields and its objectives at its best evaluation."""

    params: dict[str, Any]
    metrics: list[str]


class RunRecorder:
    def __init__(self, run_dir: Path, cfg: Config, enabled: bool = True, quiet: bool = False,
                 hparams: HParams | None = None):
        self.run_dir, self.cfg, self.enabled, self.quiet, self.hparams = run_dir, cfg, enabled, quiet, hparams
        self._writer: SummaryWriter | None = None
        self._layout_written = False

    def open(self, resumed_at: int | None) -> None:
        """Start writing; `resumed_at`: the step of the checkpoint a resumed run continues from."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        # purge_step drops events a crashed run wrote after its last checkpoint (those at the
        # checkpoint's own step were written before it and stay).
        if resumed_at is not None:
            self._after_earlier_event_files()
        self._writer = SummaryWriter(str(self.run_dir), purge_step=resumed_at + 1 if resumed_at is not None else None)

    def _after_earlier_event_files(self) -> None:
        """TensorBoard reads a folder's event files in name order, and a name starts with the
        second its writer was made: a resumed run's file made within the same second as the
        earlier run's could sort before it, and then the purge would not apply to the earlier
        file's late events. So the new file waits for the next second."""
        seconds = []
        for path in self.run_dir.glob("events.out.tfevents.*"):
            stamp = path.name.split(".")[3]
            if stamp.isdigit():
                seconds.append(int(stamp))
        while seconds and time.time() < max(seconds) + 1:
            time.sleep(0.05)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(f"{prefix}/{k}", v, step)

    def train_vs_heldout(self, train: dict[str, float], heldout: dict[str, float], step: int) -> None:
        """Training-loss means since the last evaluation as epoch_train/<k>, and a custom-scalars
        chart per loss the held-out split also reports: overfitting shows as the curves part."""
        self.scalars("epoch_train", train, step)
        common = [k for k in train if k in heldout]
        if self._writer is not None and common and not self._layout_written:
            self._writer.add_custom_scalars({"train vs held-out": {
                k: ["Multiline", [f"epoch_train/{k}", f"heldout/{k}"]] for k in common}})
            self._layout_written = True

    def images(self, grids: dict[str, torch.Tensor], step: int) -> None:
        if self._writer is not None:
            for name, images in grids.items():
                self._writer.add_image(f"samples/{name}", grid(images), step)

    def finish(self, result: FitResult, samples: torch.Tensor, step: int) -> None:
        """A finished (or stopped) run's results: HParams with its final held-out metrics,
        metrics.json and a grid of samples."""
        if self._writer is None:
            return
        params, metrics = self.cfg.flat(), result.heldout
        if self.hparams is not None:
            at_best = result.best_metrics()
            params, metrics = self.hparams.params, {k: at_best[k] for k in self.hparams.metrics if k in at_best}
        log_hparams(self._writer, params, {f"heldout_{k}": v for k, v in metrics.items()}, step)
        write_json(self.run_dir / "metrics.json", result.to_dict())
        nrow = grid_columns(len(samples))
        atomic_write(self.run_dir / "samples.png", lambda tmp: save_image(samples.cpu(), tmp, nrow=nrow, format="png"))

    def flush(self) -> None:
        """Events written so far onto disk (the writer otherwise flushes every 2 minutes)."""
        if self._writer is not None:
            self._writer.flush()

    def failed(self, info: dict[str, Any]) -> None:
        if self.enabled:
            write_json(self.run_dir / "failed.json", info)

    def log(self, message: str) -> None:
        if self.enabled and not self.quiet:
            tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
