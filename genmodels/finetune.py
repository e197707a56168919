"""Fine-tuning: the `finetune` config section and the one build step that applies it: the source
run's weights in, chosen parameters re-drawn, chosen parameters frozen.

    finetune:
      from: runs/vae_mnist        # a run directory or a .pt checkpoint
      freeze: [encoder.*]         # glob patterns over parameter names (model.named_parameters())
      reinit: [decoder.2.*]       # re-drawn from the layer's own initialiser before training
      freeze_d_blocks: 2          # GANs: FreezeD, the discriminator's first 2 blocks (and
      freeze_g_blocks: 0          #   the generator's first k) kept as the source trained them

`genmodels.experiment.build` reads the source checkpoint (once) to complete the config, builds
the model and calls `apply`. Once the run has a checkpoint of its own the source is never needed
again: a resumed run's last.pt holds every weight, and `apply` then only freezes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from torch import nn

from genmodels.checkpoint import RunCheckpoint, load_weights
from genmodels.errors import ConfigError
from genmodels.models.base import GenerativeModel
from genmodels.models.conditional import ConditionalBatchNorm
from genmodels.schema import StrictModel


class FinetuneConfig(StrictModel):
    """Start from a trained run: its weights in, chosen parameters frozen or re-drawn."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    source: str = Field(alias="from", description="a run folder or a .pt checkpoint")
    checkpoint: Literal["best", "last"] = Field("best", description="which checkpoint of a run folder")
    # Glob patterns over parameter names. A comma-separated string works too, so a tuning
    # space can choose between pattern sets (categorical choices must be strings).
    freeze: list[str] | str = Field(default_factory=list, description="glob patterns of parameters kept fixed")
    reinit: list[str] | str = Field(default_factory=list, description="glob patterns of layers re-drawn "
                                                                      "before training")
    # FreezeD (Mo et al. 2020): the discriminator's first blocks, from the image side, keep the
    # source's features; the generator's first blocks, from the noise side, its layout.
    freeze_d_blocks: int = Field(0, ge=0, le=64, description="GANs: the discriminator's first k blocks frozen "
                                                             "(FreezeD), counted from the image")
    freeze_g_blocks: int = Field(0, ge=0, le=64, description="GANs: the generator's first k blocks frozen, "
                                                             "counted from the noise")

    @staticmethod
    def _patterns(value: list[str] | str) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        return [p.strip() for p in items if p.strip() and p.strip() != "none"]

    def freeze_patterns(self) -> list[str]:
        return self._patterns(self.freeze)

    def reinit_patterns(self) -> list[str]:
        return self._patterns(self.reinit)


@dataclass
class FinetuneSummary:
    """What `apply` did, for the run's log."""

    source: str
    source_epoch: int | None  # None: the weights came from the run's own checkpoint (a resume)
    frozen: int  # parameters (scalars)
    trainable: int
    frozen_tensors: int
    reinit_tensors: int
    text: str = ""  # the line the command prints

    def __post_init__(self) -> None:
        start = (f"fine-tuning from {self.source} (epoch {self.source_epoch})" if self.source_epoch is not None
                 else f"fine-tuning (weights from the run's own checkpoint; source {self.source})")
        self.text = (f"{start}: {self.frozen:,} parameters frozen ({self.frozen_tensors} tensors), "
                     f"{self.trainable:,} trainable, {self.reinit_tensors} tensors re-initialised")


def apply(model: GenerativeModel, kind: str, ft: FinetuneConfig, source: RunCheckpoint | None,
          where: str = "") -> FinetuneSummary:
    """Prepare `model` (of family `kind`) for fine-tuning, before its optimizers are built (frozen parameters never
    reach one): the `source` checkpoint's weights in (None: the model's weights are kept, as a
    resumed run's or a model passed in are), `reinit` layers re-drawn (only when starting from the
    source), `freeze` parameters fixed. Frozen BatchNorm layers keep the source's running
    statistics: the model holds them in eval mode while the rest trains."""
    if source is not None and source.kind != kind:
        raise ConfigError(f"finetune.from: {where} holds a '{source.kind}' model, the config trains '{kind}'")
    names = [n for n, _ in model.named_parameters()]
    redrawn = match(names, ft.reinit_patterns(), "reinit")
    frozen = match(names, ft.freeze_patterns(), "freeze")
    frozen |= first_blocks(model, kind, ft)
    if source is not None:
        load_weights(model, source.model, f"finetune.from: {where}", keep=model.run_state)
        _reinitialise(model, redrawn)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    model.fixed_statistics = _frozen_with_statistics(model)
    return FinetuneSummary(
        source=ft.source, source_epoch=source.epoch if source is not None else None,
        frozen=sum(p.numel() for n, p in model.named_parameters() if n in frozen),
        trainable=sum(p.numel() for n, p in model.named_parameters() if n not in frozen),
        frozen_tensors=len(frozen), reinit_tensors=len(redrawn) if source is not None else 0)


def first_blocks(model: GenerativeModel, kind: str, ft: FinetuneConfig) -> set[str]:
    """The parameters of the blocks finetune.freeze_d_blocks / freeze_g_blocks name."""
    out: set[str] = set()
    for field, part in (("freeze_d_blocks", "discriminator"), ("freeze_g_blocks", "generator")):
        k = getattr(ft, field)
        if not k:
            continue
        if kind != "gan":
            raise ConfigError(f"finetune.{field}: for GANs only (this run trains a '{kind}')")
        blocks = layer_blocks(getattr(model, part), part)
        if k >= len(blocks):
            raise ConfigError(f"finetune.{field}: {k} of the {part}'s {len(blocks)} blocks leaves none to train "
                              f"(at most {len(blocks) - 1})")
        prefixes = tuple(f"{name}." for block in blocks[:k] for name in block)
        out |= {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
    return out


def layer_blocks(net: nn.Module, prefix: str) -> list[list[str]]:
    """A network's blocks in forward order, each the names of its modules: a layer with weights
    (or a residual block) with the normalisation after it; Sequential containers are opened."""
    blocks: list[list[str]] = []

    def visit(module: nn.Module, name: str) -> None:
        if isinstance(module, (nn.Sequential, nn.ModuleList)):
            for child_name, child in module.named_children():
                visit(child, f"{name}.{child_name}")
        elif any(True for _ in module.parameters()):
            if isinstance(module, (nn.modules.batchnorm._NormBase, ConditionalBatchNorm)) and blocks:
                blocks[-1].append(name)
            else:
                blocks.append([name])

    for child_name, child in net.named_children():
        visit(child, f"{prefix}.{child_name}")
    return blocks


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


def _reinitialise(model: nn.Module, names: set[str]) -> None:
    """Re-draw whole layers that own a matched parameter, with the layer's reset_parameters()."""
    for module_name, module in model.named_modules():
        own = {f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)}
        if own & names and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _frozen_with_statistics(model: nn.Module) -> list[nn.Module]:
    """Modules all of whose parameters are frozen and that hold running statistics (BatchNorm)."""
    out = []
    for module in model.modules():
        if isinstance(module, ConditionalBatchNorm):  # its statistics sit in a norm without parameters
            if not any(p.requires_grad for p in module.parameters()):
                out.append(module.norm)
            continue
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params) and any(True for _ in module.buffers(recurse=False)):
            out.append(module)
    return out
