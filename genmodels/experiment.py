"""The one place that assembles a run from a Config: data at the right size, the model, the
fine-tuning source, the FID scorer and callbacks, handed to the Trainer; and the evaluation of a
finished run. The CLI, the tuner, the notebooks and the benchmarks all build runs here.

    trainer = build(load_config("experiments/vae_mnist.yaml"))
    trainer.fit()
    report = evaluate_run("runs/vae_mnist", split="test", options={"iwae_k": 1000})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from genmodels.checkpoint import RunCheckpoint, load_checkpoint
from genmodels.config import Config
from genmodels.data import DataSplits, load_data
from genmodels.errors import ConfigError, UserError
from genmodels.files import write_json
from genmodels.finetune import FineTuning, freeze, load_source_weights
from genmodels.metrics.quality import QUALITY_METRICS, SampleQuality
from genmodels.models import GenerativeModel, build_model, model_class
from genmodels.runs import checkpoint_path, load_run
from genmodels.runtime import pick_device
from genmodels.schema import validate
from genmodels.evaluation import eval_context, evaluate_split
from genmodels.train import Callback, Trainer


def read_source(cfg: Config) -> tuple[RunCheckpoint, str]:
    """The fine-tuning source checkpoint, read once."""
    assert cfg.finetune is not None
    path = checkpoint_path(cfg.finetune.source, cfg.finetune.checkpoint)
    return load_checkpoint(path), str(path)


def resolve(cfg: Config, reference: RunCheckpoint) -> Config:
    """Fill in what a fine-tuning config leaves to its source (or a resumed run to its own
    checkpoint): the model section, and an image folder's size and channels. The result is
    self-contained: the run's config.yaml and checkpoints need the source no more."""
    data = cfg.to_dict()
    if data["model"] is None:
        data["model"] = reference.config["model"]
    channels, size, _ = reference.image_shape
    if data["data"]["name"] == "imagefolder":
        data["data"]["image_size"] = data["data"]["image_size"] or size
        data["data"]["channels"] = data["data"]["channels"] or channels
    return validate(Config, data, f"{cfg.name} (completed from {cfg.finetune.source if cfg.finetune else 'its run'})")


def make_scorer(cfg: Config, device: torch.device, quiet: bool = False) -> SampleQuality:
    """FID & co. against the run's splits; the feature extractor loads only if the model asks."""
    return SampleQuality(cfg.eval, cfg.data, device, quiet)


def build(cfg: Config, data: DataSplits | None = None, model: GenerativeModel | None = None,
          callbacks: Sequence[Callback] = (), run_dir: str | Path | None = None, quiet: bool = False,
          resume: bool = False) -> Trainer:
    """A Trainer for `cfg`, ready to fit.

    data: splits already loaded (the tuner shares them between trials); model: a model to train
    as it is (its weights are kept: a fine-tuning section then only freezes); resume=True
    continues run_dir/last.pt, whose own config and weights make the fine-tuning source
    unnecessary.
    """
    run_dir = Path(run_dir) if run_dir else cfg.run_dir()
    if cfg.train.monitor in QUALITY_METRICS and cfg.train.monitor not in cfg.eval.metrics:
        raise ConfigError(f"train.monitor: '{cfg.train.monitor}' is computed only when eval.metrics lists it "
                          f"(eval.metrics: {cfg.eval.metrics})")
    device = pick_device(cfg.train.device)
    last = load_checkpoint(run_dir / "last.pt", device) if resume else None
    source = None
    if last is not None:
        cfg = resolve(cfg, last)
    elif cfg.finetune is not None and (model is None or data is None or cfg.model is None):
        source = read_source(cfg)
        cfg = resolve(cfg, source[0])
    image_shape = (last or source[0]).image_shape if (last or source) else None
    data = data or load_data(cfg.data, device, image_shape)
    if image_shape and data.image_shape != tuple(image_shape):
        raise ConfigError(f"finetune.from: the checkpoint's model takes images {tuple(image_shape)}, "
                          f"data '{cfg.data.name}' has {data.image_shape}")
    if model is None:
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stays as it was
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, data.image_shape)
        if source is not None:
            load_source_weights(model, cfg.model.kind, source[0], source[1])
    callbacks = list(callbacks)
    if cfg.finetune is not None:
        # Re-drawing belongs to starting from the source; a resumed run's weights are its own.
        counts = freeze(model, cfg.finetune, reinit=source is not None)
        callbacks.append(FineTuning(cfg.finetune.source, counts, source[0].epoch if source else None))
    trainer = Trainer(cfg, data, model, callbacks, run_dir, make_scorer(cfg, device, quiet), quiet)
    if last is not None:
        trainer.restore(last, str(run_dir / "last.pt"))
    return trainer


def evaluate_run(run_dir: str | Path, split: str = "heldout", which: str = "best",
                 options: dict[str, Any] | None = None, data_root: str | None = None,
                 quiet: bool = False) -> dict[str, Any]:
    """Score a run's checkpoint on the held-out or test split with every metric its model has
    (the final report), write run_dir/eval_<split>.json and return the report."""
    path = checkpoint_path(run_dir, which)
    cfg, model, ckpt = load_run(path)
    kind, fields = cfg.model.kind, model_class(cfg.model.kind).EvalOptions.model_fields
    for name in options or {}:
        if name not in fields:
            raise UserError(f"evaluation option '{name}': a '{kind}' run has no such option "
                            f"(its options: {', '.join(fields) or 'none'})")
    opts = validate(model_class(kind).EvalOptions, options or {}, f"{kind} evaluation options")
    device = pick_device(cfg.train.device)
    model.to(device)
    if data_root:
        cfg.data.root = data_root
    # The checkpoint holds the fine-tuned weights: evaluate them as they are, on images of the
    # size the model was trained at.
    data = load_data(cfg.data, device, ckpt.image_shape)
    if data.image_shape != ckpt.image_shape:
        raise UserError(f"{path}: the model takes images {ckpt.image_shape}, data '{cfg.data.name}' has "
                        f"{data.image_shape}")
    scorer = make_scorer(cfg, device, quiet)
    images = {"heldout": data.heldout, "test": data.test}[split]
    ctx = eval_context(cfg, device, split, full=True, scorer=scorer, options=opts)
    metrics = evaluate_split(model, images.images, ctx, cfg.train.eval_batch_size, quiet)
    report = {"split": split, "epoch": ckpt.epoch, "images": len(images), "dataset": cfg.data.name,
              **({"options": opts.model_dump()} if opts.model_fields_set else {}),
              **({"features": scorer.name} if scorer.loaded else {}), "metrics": metrics}
    write_json(path.parent / f"eval_{split}.json", report)
    return report
