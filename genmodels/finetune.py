"""Fine-tuning: a build step that starts a model from a trained run's weights and freezes or
re-draws parameters by name, and a callback that keeps frozen BatchNorm statistics fixed.

    finetune:
      from: runs/vae_mnist        # a run directory or a .pt checkpoint
      freeze: [encoder.*]         # glob patterns over parameter names (model.named_parameters())
      reinit: [decoder.2.*]       # re-drawn from the layer's own initialiser before training

The source is read once, by `genmodels.experiment`; once the run has a checkpoint of its own it
is never needed again (resuming reads the run's last.pt, which holds every weight).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

from genmodels.checkpoint import RunCheckpoint, load_weights
from genmodels.config import FinetuneConfig
from genmodels.errors import ConfigError
from genmodels.models.base import GenerativeModel
from genmodels.train import Callback, Trainer


def match(names: list[str], patterns: list[str], field: str) -> set[str]:
    """Names matched by any pattern; a pattern that matches nothing is a config error."""
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            close = sorted({n.rsplit(".", 1)[0] + ".*" for n in names})[:6]
            raise ConfigError(f"finetune.{field}: pattern '{pattern}' matches no parameter "
                              f"(parameter groups: {', '.join(close)}, ...)")
        chosen.update(hits)
    return chosen


def load_source_weights(model: GenerativeModel, kind: str, source: RunCheckpoint, where: str) -> None:
    """The source checkpoint's weights into `model`, which must be of the same family and shape."""
    if source.kind != kind:
        raise ConfigError(f"finetune.from: {where} holds a '{source.kind}' model, the config trains '{kind}'")
    load_weights(model, source.model, f"finetune.from: {where}")


def freeze(model: nn.Module, ft: FinetuneConfig, reinit: bool = True) -> dict[str, Any]:
    """Re-draw (if `reinit`) and freeze parameters by pattern; before the optimizers are built,
    so frozen parameters never reach one. Returns counts for the log."""
    names = [n for n, _ in model.named_parameters()]
    redrawn = match(names, ft.reinit_patterns(), "reinit")
    frozen = match(names, ft.freeze_patterns(), "freeze")
    if reinit and redrawn:
        _reinitialise(model, redrawn)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    n_frozen = sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    n_train = sum(p.numel() for n, p in model.named_parameters() if n not in frozen)
    return {"frozen": n_frozen, "trainable": n_train, "frozen_tensors": len(frozen),
            "reinit_tensors": len(redrawn) if reinit else 0}


def _reinitialise(model: nn.Module, names: set[str]) -> None:
    """Re-draw whole layers that own a matched parameter, with the layer's reset_parameters()."""
    for module_name, module in model.named_modules():
        own = {f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)}
        if own & names and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """Modules all of whose parameters are frozen and that hold running statistics (BatchNorm)."""
    out = []
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params) and any(True for _ in module.buffers(recurse=False)):
            out.append(module)
    return out


class FineTuning(Callback):
    """Keeps frozen BatchNorm layers in eval mode while the rest trains, so their running
    statistics stay the source's: a frozen block does not drift through its buffers. Carries
    what the build step did, for the log."""

    def __init__(self, source: str, counts: dict[str, Any], source_epoch: int | None = None):
        self.source, self.counts, self.source_epoch = source, counts, source_epoch

    def summary(self) -> str:
        c = self.counts
        start = (f"fine-tuning from {self.source} (epoch {self.source_epoch})" if self.source_epoch is not None
                 else f"fine-tuning (weights from the run's own checkpoint; source {self.source})")
        return (f"{start}: {c['frozen']:,} parameters frozen ({c['frozen_tensors']} tensors), {c['trainable']:,} "
                f"trainable, {c['reinit_tensors']} tensors re-initialised")

    def on_train_epoch_start(self, trainer: Trainer) -> None:
        for module in frozen_modules(trainer.model):
            module.eval()
