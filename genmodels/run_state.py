"""A run's progress as the loop keeps it (all of it saved in checkpoints) and what `fit` returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from genmodels.checkpoint import RunCheckpoint


@dataclass
class TrainState:
    """Where training stands; a checkpoint holds every field, so a resumed run continues exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed training steps (training_step calls)
    images_seen: int = 0  # over all ranks
    batch_index: int = 0  # within the current epoch
    perm: torch.Tensor | None = None  # the current epoch's data order
    best: dict[str, Any] | None = None  # {"epoch", "step", "images", "value", "metrics"}
    bad_evaluations: int = 0  # held-out evaluations since the best one
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per held-out evaluation
    stop_reason: str = ""  # why the run ended early ("" while it goes on)
    should_stop: bool = False  # set by early stopping or a callback: the loop ends after this step

    def stop(self, reason: str) -> None:
        self.should_stop, self.stop_reason = True, reason

    def saved(self) -> dict[str, Any]:
        """The fields a checkpoint holds (all but should_stop, which follows from stop_reason)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "should_stop"}

    @classmethod
    def from_checkpoint(cls, ckpt: RunCheckpoint) -> "TrainState":
        # An early-stopped run is finished: resuming it reports, it does not train on.
        return cls(**{name: getattr(ckpt, name) for name in cls().saved()}, should_stop=bool(ckpt.stop_reason))


class LossWindow:
    """Training losses since the last log line, and their sums since the last evaluation (for the
    train-vs-held-out curves). Reduced once per log window, not per step: a tensor add per loss
    per step costs more, and reading a value back stalls a GPU."""

    def __init__(self) -> None:
        self._window: dict[str, list[torch.Tensor]] = {}
        self._since_eval: dict[str, tuple[float, int]] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            self._window.setdefault(k, []).append(v)

    def flush(self) -> dict[str, float]:
        """Each loss's mean over the window (emptied), added to the sums since the last evaluation."""
        window, self._window = self._window, {}
        sums = {k: torch.stack(vs).sum().item() for k, vs in window.items()}
        for k, total in sums.items():
            so_far, n = self._since_eval.get(k, (0.0, 0))
            self._since_eval[k] = (so_far + total, n + len(window[k]))
        return {k: sums[k] / len(window[k]) for k in window}

    def since_evaluation(self) -> dict[str, float]:
        """Each loss's mean since the last call (or the start)."""
        means = {k: total / n for k, (total, n) in self._since_eval.items()}
        self._since_eval = {}
        return means


@dataclass
class FitResult:
    """What a finished (or stopped) `fit` reports; metrics.json holds it as JSON."""

    name: str
    run_dir: str
    device: str
    processes: int
    epochs: int  # completed epochs
    steps: int
    images_seen: int
    monitor: str  # the held-out metric behind best.pt and early stopping
    heldout: dict[str, float]  # the last evaluation's metrics
    best: dict[str, Any] | None  # the best evaluation: {"epoch", "step", "images", "value", "metrics"}
    stop_reason: str
    train_seconds: float
    history: list[dict[str, Any]]
    features: str | None = None  # the extractor behind FID & co., when the model used one

    def best_metrics(self) -> dict[str, float]:
        """The metrics of the best evaluation (the weights best.pt keeps), else the last one's."""
        return (self.best or {}).get("metrics") or self.heldout

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
