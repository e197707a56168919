"""Held-out and test evaluation of a model, shared by the loop and by `genmodels eval`."""

from __future__ import annotations

import math
import sys
from typing import Iterator

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from genmodels.config import Config
from genmodels.data.tensors import DataSplits, Split
from genmodels.models.base import EvalContext, GenerativeModel, SampleScorer


def progress(total: int, desc: str, quiet: bool = False, initial: int = 0) -> tqdm:
    """A progress bar on stderr, silent with quiet=True or when stderr is not a terminal (the
    loop then prints a line per evaluation instead)."""
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def eval_context(cfg: Config, device: torch.device, split: str, data: DataSplits, conditional: bool = False,
                 full: bool = False, scorer: SampleScorer | None = None,
                 options: BaseModel | None = None) -> EvalContext:
    """Evaluation noise from eval.noise_seed: the same weights give the same numbers, and runs
    (trials of a study among them) are scored on the same noise. The training split goes along
    for the models that compare themselves on it (a GAN's overfitting watch); a conditional
    model also gets the labels of both splits."""
    part = {"heldout": data.heldout, "test": data.test}[split]
    return EvalContext(generator=torch.Generator(device).manual_seed(cfg.eval.noise_seed), split=split, full=full,
                       scorer=scorer, fid_samples=cfg.eval.fid_samples, options=options,
                       train_images=data.train.images, labels=part.labels if conditional else None,
                       train_labels=data.train.labels if conditional else None)


@torch.no_grad()
def evaluate_split(model: GenerativeModel, images: torch.Tensor, ctx: EvalContext, batch_size: int,
                   quiet: bool = False) -> dict[str, float]:
    """model.evaluate over consecutive batches of `images` (no shuffling), with a progress bar."""
    model.eval()
    n_batches = math.ceil(len(images) / batch_size)
    with progress(n_batches, f"evaluating ({ctx.split})", quiet) as bar:
        def batches() -> Iterator[torch.Tensor]:
            for start in range(0, len(images), batch_size):
                yield images[start : start + batch_size]
                bar.update()

        return model.evaluate(batches(), ctx)


@torch.no_grad()
def image_grids(model: GenerativeModel, split: Split, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The model's TensorBoard grids from the split's first n images (with their labels for a
    conditional model)."""
    n = min(n, len(split))
    model.eval()
    extra = (split.labels[:n],) if model.conditional else ()  # an unconditional model's own signature
    return model.image_grids(split.images[:n], generator, *extra)
