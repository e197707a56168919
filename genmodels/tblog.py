"""TensorBoard writing helpers: image grids and the HParams record of a run."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torchvision.utils import make_grid

from genmodels.images import grid_columns


def grid(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') grid image, a 2-pixel border between tiles."""
    nrow = nrow or grid_columns(images.shape[0])
    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2)


def log_hparams(writer: SummaryWriter, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
    """Write the run's hyper-parameters and final metrics into the run's own event file.

    SummaryWriter.add_hparams would open a second, time-stamped folder; writing the three
    summaries ourselves keeps one folder per run, which is what makes every trial of a study
    line up in one HParams table when TensorBoard is pointed at the study folder.
    """
    values = {k: v for k, v in params.items() if isinstance(v, (bool, int, float, str))}
    metric_tags = {f"hparams/{k}": float(v) for k, v in metrics.items()}
    experiment, start, end = hparams(values, metric_tags)
    file_writer = writer.file_writer  # the public handle of the run's own event file, open until close()
    if file_writer is None:
        raise ValueError("log_hparams: the SummaryWriter is closed")
    for summary in (experiment, start, end):
        file_writer.add_summary(summary)
    for tag, value in metric_tags.items():
        writer.add_scalar(tag, value, step)
