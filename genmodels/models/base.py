"""The contract between a model and the training loop; the loop knows nothing else about models.

A model family is one module: its config section (a `ModelSection` subclass whose fields are the
constructor's keyword arguments), its class (a `GenerativeModel`), the held-out metrics it reports
with the direction that makes each better, and any evaluation options of its own. One line in
`genmodels.models.MODELS` registers it.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Collection, Iterable, Literal, Protocol, Sequence

import torch
from pydantic import BaseModel
from torch import nn

from genmodels.models.conditional import cycled_labels
from genmodels.optim import OptimConfig
from genmodels.runtime import autocast_dtype
from genmodels.schema import StrictModel

Direction = Literal["minimize", "maximize"]


class ModelSection(StrictModel):
    """Base of every family's `model:` config section; `kind` names the family."""

    kind: str


class NoOptions(StrictModel):
    """Evaluation options of a family that has none."""


class SampleScorer(Protocol):
    """Scores generated images against a real split (FID & co.); models see only this."""

    @property
    def name(self) -> str:
        """The feature extractor behind the numbers, reported with them."""

    def score(self, split: str, real: torch.Tensor, fake: torch.Tensor, full: bool = False,
              real_labels: torch.Tensor | None = None, fake_labels: torch.Tensor | None = None) -> dict[str, float]:
        """Metrics of `fake` (floats in [0, 1]) against `real` (uint8) images of `split`; with the
        labels of both also the class-by-class ones (intra_fid, class_accuracy)."""


@dataclass
class EvalContext:
    """What `evaluate` gets besides the images of the split."""

    generator: torch.Generator  # all evaluation noise: same weights, same numbers
    split: str = "heldout"
    full: bool = False  # the final report: every metric the model has, not only the per-epoch ones
    scorer: SampleScorer | None = None  # sample quality against the split, for models that sample
    fid_samples: int = 2000  # generated images per sample-quality score
    options: BaseModel | None = None  # the family's own evaluation options (its EvalOptions); None: defaults
    train_images: torch.Tensor | None = None  # the training split (uint8), for a model's overfitting watch
    labels: torch.Tensor | None = None  # the split's labels, in the order of its batches (conditional models)
    train_labels: torch.Tensor | None = None  # the training split's labels (conditional models)


class Updater:
    """Applies one optimizer update for a model's training_step.

    Mixed precision and gradient clipping live here, once, so no model repeats them. float16
    gets a GradScaler per optimizer (its gradients underflow otherwise); bfloat16 has float32's
    range and needs none.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], device: torch.device | str = "cpu",
                 precision: str = "fp32", grad_clip: float | None = None,
                 average_gradients: Callable[[list[torch.nn.Parameter]], None] | None = None):
        self.optimizers = optimizers
        self.average_gradients = average_gradients
        self.device = torch.device(device)
        self.amp_dtype = autocast_dtype(precision, self.device)
        use_scaler = self.amp_dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=use_scaler) for name in optimizers}
        self.grad_clip = grad_clip

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, name: str, loss: torch.Tensor) -> None:
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        # Under torchrun: the gradients averaged over ranks, as DDP does, but per optimizer step.
        # DDP's reducer expects one forward per backward and the same parameters to receive
        # gradients each time; a GAN step runs several passes through its discriminator, with its
        # parameters switched off for the generator's update (and a double backward for WGAN-GP).
        if self.average_gradients is not None:
            self.average_gradients(params)
        if self.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(opt)
        scaler.update()


class GenerativeModel(nn.Module, ABC):
    """A generative image model that the shared loop can train.

    Images arrive as uint8 batches (B, C, H, W); models convert them with `to_unit` on the
    device. `sample` returns images in [0, 1].
    """

    #: the family's config section; its fields are the constructor's keyword arguments
    Config: ClassVar[type[ModelSection]]
    #: the family's evaluation options (e.g. the VAE's importance samples), given to `evaluate`
    EvalOptions: ClassVar[type[BaseModel]] = NoOptions
    #: every metric `evaluate` can return, with the direction that makes it better; None for what
    #: is no objective (standard errors, diagnostics)
    metrics: ClassVar[dict[str, Direction | None]]
    #: the held-out metric for early stopping, the best checkpoint and tuning
    monitor: ClassVar[str]

    #: modules kept in eval mode while the rest trains: the frozen BatchNorm layers of a fine-tuned
    #: model keep the source's running statistics (set by genmodels.finetune.apply)
    fixed_statistics: Sequence[nn.Module] = ()
    #: state_dict prefixes of what belongs to a run, not to the weights (a GAN's adaptive
    #: augmentation probability): fine-tuning starts them afresh instead of taking the source's
    run_state: ClassVar[tuple[str, ...]] = ()
    #: whether `train.precision: auto` may train the family in reduced precision: only where it was
    #: measured to train as well as fp32 at equal images (benchmarks/precision_quality.py)
    auto_reduced_precision: ClassVar[bool] = True
    #: the classes a conditional model generates (0: unconditional; it is never given labels)
    n_classes: int = 0

    def train(self, mode: bool = True) -> "GenerativeModel":
        super().train(mode)
        for module in self.fixed_statistics:
            module.eval()
        return self

    @classmethod
    def from_config(cls, cfg: ModelSection, image_shape: tuple[int, int, int]) -> "GenerativeModel":
        """The model a config section describes, built by keyword: no field can land in another's place."""
        return cls(image_shape=tuple(image_shape), **cfg.model_dump(exclude={"kind"}))

    @classmethod
    def constructor_arguments(cls) -> list[str]:
        return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "image_shape")]

    @classmethod
    def reported_metrics(cls, requested: Collection[str] = (), full: bool = False,
                         options: BaseModel | None = None, section: ModelSection | None = None) -> set[str]:
        """Exactly the names `evaluate` returns when the optional metrics in `requested`
        (eval.metrics) are asked for, or all of them with full=True (a final report), under the
        family's evaluation `options` (None at training's held-out evaluations), for a model of
        config `section` (None: what every config of the family reports): what train.monitor and a
        study's objectives may name. By default every name in `metrics`."""
        return set(cls.metrics)

    @abstractmethod
    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; checkpoints store them under these names."""

    @property
    def conditional(self) -> bool:
        return self.n_classes > 0

    def check_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels a step was given: a conditional model's, required; an unconditional one's, none."""
        if self.n_classes and labels is None:
            raise ValueError(f"a conditional model ({self.n_classes} classes) needs each image's label")
        if not self.n_classes and labels is not None:
            raise ValueError("an unconditional model takes no labels")
        return labels

    def sample_labels(self, n: int, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The classes of n samples: a conditional model's `labels` on its device (default: its
        classes in turn, 0, 1, ...); none for an unconditional model, which takes none."""
        if not self.n_classes:
            return self.check_labels(labels)
        return cycled_labels(n, self.n_classes, self.device) if labels is None else labels.to(self.device)

    @abstractmethod
    def training_step(self, batch: torch.Tensor, update: Updater, labels: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """One update (a GAN does its D and G steps here), applied through `update.step`.
        `labels`: the batch's, for a conditional model only (the loop passes none to another).

        Returns detached scalar losses, still on the device (no host synchronisation); the
        loop logs them as train/<name>.
        """

    @abstractmethod
    def evaluate(self, batches: Iterable[torch.Tensor], ctx: EvalContext) -> dict[str, float]:
        """Metrics over all `batches` of a held-out or test split. Must contain `self.monitor`."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [0, 1], shape (n, C, H, W); a conditional model's of `labels` (default: its
        classes in turn, 0, 1, ...)."""

    def failed(self, metrics: dict[str, float], evaluations: int) -> str | None:
        """Why the run is beyond saving, judging by the held-out `metrics` of its
        `evaluations`-th evaluation; None while it is fine (the default)."""
        return None

    def stop_reason(self, metrics: dict[str, float]) -> str | None:
        """Why training should end now although the run is fine (a GAN's discriminator
        memorising its training images); None to go on (the default). best.pt stays as it is."""
        return None

    def compile_networks(self) -> list[str]:
        """train.compile: each child network with parameters that train, compiled in place with
        torch.compile (its calls go through the compiled graph; parameters, state_dict keys and so
        checkpoints stay as they are); returns their names. A call that must stay eager (a double
        backward, which compiled graphs do not support) calls the network's `forward` itself."""
        names = [n for n, child in self.named_children() if any(p.requires_grad for p in child.parameters())]
        for name in names:
            getattr(self, name).compile()
        return names

    @torch.no_grad()
    def image_grids(self, batch: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
        """Images for TensorBoard, by name, from held-out images `batch` (with their `labels` for a
        conditional model). Same generator state -> same noise every epoch. A conditional model's
        also by class: a square grid whose row k holds samples of class k (the first 16 classes)."""
        grids = {"fixed_noise": self.sample(batch.shape[0], generator)}
        if self.n_classes:
            k = min(self.n_classes, 16)
            labels = torch.arange(k, device=self.device).repeat_interleave(k)
            grids["by_class"] = self.sample(k * k, generator, labels=labels)
        return grids

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

