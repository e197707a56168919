"""Fine-tuning: start from a trained run's weights, freeze and re-initialise parameters by name.

A run config with a `finetune` section is trained by the same Trainer; this module only prepares
the model before the optimizers are built, so frozen parameters never reach an optimizer.

    finetune:
      from: runs/vae_mnist        # a run directory or a .pt checkpoint
      freeze: [encoder.*]         # glob patterns over parameter names (model.named_parameters())
      reinit: [decoder.2.*]       # re-drawn from the layer's own initialiser before training
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

from genmodels import checkpoint as ckpt
from genmodels.config import FinetuneConfig
from genmodels.errors import ConfigError
from genmodels.models import GenerativeModel
from genmodels.runs import checkpoint_path


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


def load_source(ft: FinetuneConfig) -> dict[str, Any]:
    return ckpt.load_checkpoint(checkpoint_path(ft.source, ft.checkpoint))


def source_image_shape(ft: FinetuneConfig | None) -> tuple[int, int, int] | None:
    """The image shape the source run's model takes (None when not fine-tuning)."""
    return tuple(load_source(ft)["image_shape"]) if ft else None


def check_compatible(state: dict[str, Any], kind: str, model: nn.Module, source: str) -> None:
    if state["kind"] != kind:
        raise ConfigError(f"finetune.from: {source} holds a '{state['kind']}' model, the config trains '{kind}'")
    own = model.state_dict()
    for name, tensor in state["model"].items():
        if name not in own:
            raise ConfigError(f"finetune.from: {source} has parameter '{name}' that the configured model lacks")
        if own[name].shape != tensor.shape:
            raise ConfigError(f"finetune.from: shape mismatch for '{name}': checkpoint {tuple(tensor.shape)}, "
                              f"model {tuple(own[name].shape)} (the model section must match the checkpoint's)")
    missing = sorted(set(own) - set(state["model"]))
    if missing:
        raise ConfigError(f"finetune.from: {source} lacks '{missing[0]}' that the configured model has")


def prepare(model: GenerativeModel, kind: str, ft: FinetuneConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Load the source checkpoint `state` into `model`, re-initialise and freeze by pattern.

    Returns counts for the log: frozen and trainable parameter numbers (elements)."""
    check_compatible(state, kind, model, ft.source)
    model.load_state_dict(state["model"])
    names = [n for n, _ in model.named_parameters()]
    reinit = match(names, ft.reinit_patterns(), "reinit")
    frozen = match(names, ft.freeze_patterns(), "freeze")
    if reinit:
        _reinitialise(model, reinit)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    n_frozen = sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    n_train = sum(p.numel() for n, p in model.named_parameters() if n not in frozen)
    return {"frozen": n_frozen, "trainable": n_train, "frozen_tensors": len(frozen), "reinit_tensors": len(reinit),
            "source_epoch": state["epoch"]}


def _reinitialise(model: nn.Module, names: set[str]) -> None:
    """Re-draw whole layers that own a matched parameter, with the layer's reset_parameters()."""
    for module_name, module in model.named_modules():
        own = {f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)}
        if own & names and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """Modules all of whose parameters are frozen and that hold running statistics (BatchNorm):
    kept in eval mode while training, so frozen blocks do not drift through their buffers."""
    out = []
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params) and any(True for _ in module.buffers(recurse=False)):
            out.append(module)
    return out

