"""Held-out and test evaluation of a model, shared by the loop and by `genmodels eval`."""

from __future__ import annotations

import math
import sys
from typing import Iterator

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from genmodels.config import Config
from genmodels.models.base import EvalContext, GenerativeModel, SampleScorer


def progress(total: int, desc: str, quiet: bool = False, initial: int = 0) -> tqdm:
    """A progress bar on stderr, silent with quiet=True or when stderr is not a terminal (the
    loop then prints a line per evaluation instead)."""
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def eval_context(cfg: Config, device: torch.device, split: str, full: bool = False,
                 scorer: SampleScorer | None = None, options: BaseModel | None = None,
                 train_images: torch.Tensor | None = None) -> EvalContext:
    """Evaluation noise from eval.noise_seed: the same weights give the same numbers, and runs
    (trials of a study among them) are scored on the same noise. `train_images`: the training
    split, for the models that compare themselves on it (a GAN's overfitting watch)."""
    return EvalContext(generator=torch.Generator(device).manual_seed(cfg.eval.noise_seed), split=split, full=full,
                       scorer=scorer, fid_samples=cfg.eval.fid_samples, options=options, train_images=train_images)


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
