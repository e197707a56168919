"""Everything around the loop that is not the loop: hooks a callback overrides, and the ones the
Trainer always adds (best/last checkpoints, a stop the model asks for, and early stopping when
train.patience is set).

The tuner's pruning callback (genmodels.tuning.objective) is another. A hook may raise to end the
run (the pruner raises optuna.TrialPruned) or call `trainer.state.stop(reason)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from genmodels.config import Config
from genmodels.models.base import GenerativeModel
from genmodels.run_state import TrainState


class Loop(Protocol):
    """What a callback sees of the Trainer."""

    cfg: Config
    model: GenerativeModel
    state: TrainState
    monitor: str

    def save(self, *names: str) -> Path:
        """Checkpoint the full training state under each of `names` in the run folder."""

    def done(self) -> bool:
        """Whether training ends after this evaluation."""


class Callback:
    """Hooks into the loop; override the ones you need."""

    def on_fit_start(self, trainer: Loop) -> None:
        """After resuming, before the first step."""

    def on_train_epoch_start(self, trainer: Loop) -> None:
        """After the model is put in training mode, before (more of) an epoch's steps."""

    def on_evaluation(self, trainer: Loop, metrics: dict[str, float]) -> None:
        """After each held-out evaluation (every epoch, or every train.eval_every_images), once
        the state's best and history include it."""


class EarlyStopping(Callback):
    """Ends the run after `patience` held-out evaluations without a gain in the monitored metric
    (train.min_delta sets what counts as one)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_evaluation(self, trainer: Loop, metrics: dict[str, float]) -> None:
        state = trainer.state
        if state.bad_evaluations >= self.patience:
            state.stop(f"early stop: no heldout/{trainer.monitor} gain in {state.bad_evaluations} evaluations")


class ModelStopping(Callback):
    """Ends the run when the model says training should stop (GenerativeModel.stop_reason)."""

    def on_evaluation(self, trainer: Loop, metrics: dict[str, float]) -> None:
        reason = trainer.model.stop_reason(metrics)
        if reason:
            trainer.state.stop(reason)


class Checkpointing(Callback):
    """best.pt at every new best held-out value; last.pt every `every` evaluations and when the run
    ends. Both names at once are one serialization, copied."""

    def __init__(self, every: int = 1):
        self.every = every

    def on_evaluation(self, trainer: Loop, metrics: dict[str, float]) -> None:
        names = ["best.pt"] if trainer.state.bad_evaluations == 0 else []
        if len(trainer.state.history) % self.every == 0 or trainer.done():
            names.append("last.pt")
        if names:
            trainer.save(*names)
