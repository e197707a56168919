"""The one place that assembles a run from a Config: data at the right size, the model, the
fine-tuning step, the FID scorer and callbacks, handed to the Trainer (with the run's own
checkpoint, when it resumes); and the evaluation of a finished run. The CLI, the tuner, the
notebooks and the benchmarks all build runs here.

    trainer = build(load_config("experiments/vae_mnist.yaml"))
    trainer.fit()
    report = evaluate_run("runs/vae_mnist", split="test", options={"iwae_k": 1000})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from genmodels.checkpoint import RunCheckpoint, load_checkpoint
from genmodels.config import Config
from genmodels.data import DataSplits, load_data
from genmodels import finetune
from genmodels.callbacks import Callback
from genmodels.errors import ConfigError, UserError
from genmodels.files import write_json
from genmodels.finetune import FinetuneConfig
from genmodels.metrics.features import resolve
from genmodels.metrics.quality import QUALITY_METRICS, SampleQuality
from genmodels.models import GenerativeModel, build_model, model_class
from genmodels.precision import choose_precision
from genmodels.recorder import HParams
from genmodels.runs import checkpoint_path, load_run
from genmodels.runtime import check_compiler, pick_device
from genmodels.schema import validate
from genmodels.evaluation import eval_context, evaluate_split
from genmodels.train import Trainer


def read_source(ft: FinetuneConfig) -> tuple[RunCheckpoint, str]:
    """The fine-tuning source checkpoint, read once, and where it was."""
    path = checkpoint_path(ft.source, ft.checkpoint)
    return load_checkpoint(path), str(path)


def complete(cfg: Config, reference: RunCheckpoint) -> Config:
    """Fill in what a fine-tuning config leaves to its source (or a resumed run to its own
    checkpoint): the model section, and an image folder's size and channels. The result is
    self-contained: the run's config.yaml and checkpoints need the source no more."""
    data = cfg.to_dict()
    if data["model"] is None:
        data["model"] = reference.config["model"]
    channels, size, _ = reference.image_shape
    if data["data"]["name"] in ("imagefolder", "celeba"):
        data["data"]["image_size"] = data["data"]["image_size"] or size
    if data["data"]["name"] == "imagefolder":
        data["data"]["channels"] = data["data"]["channels"] or channels
    return validate(Config, data, f"{cfg.name} (completed from {cfg.finetune.source if cfg.finetune else 'its run'})")


def resolved(cfg: Config) -> Config:
    """`cfg` completed from its fine-tuning source where it needs one (a study's base config)."""
    return complete(cfg, read_source(cfg.finetune)[0]) if cfg.finetune is not None else cfg


def check_metrics(cfg: Config, names: Sequence[str], field: str) -> None:
    """Each of `names` is a metric the configured model computes at every held-out evaluation
    and has a direction: refused up front, not after an epoch of training."""
    cls = model_class(cfg.model.kind)
    reported = cls.reported_metrics(cfg.eval.metrics, section=cfg.model)
    for name in names:
        if name.startswith("class_accuracy") and name in reported and \
                resolve(cfg.eval.features, cfg.data.name) != "classifier":
            raise ConfigError(f"{field}: '{name}' needs the labelled classifier as eval.features (got "
                              f"'{cfg.eval.features}', which has no classes)")
        if name in reported and cls.metrics.get(name) is not None:
            continue
        if name in QUALITY_METRICS and name in cls.metrics:
            why = f"is computed only when eval.metrics lists it (eval.metrics: {cfg.eval.metrics})"
        elif name in cls.metrics:
            why = ("is no objective (a standard error or diagnostic)" if name in reported else
                   "is not computed at training's held-out evaluations (`genmodels eval` reports it)")
        else:
            why = f"is not a metric a '{cfg.model.kind}' model reports"
        objectives = sorted(m for m in reported if cls.metrics.get(m) is not None)
        raise ConfigError(f"{field}: '{name}' {why} (expected one of {', '.join(objectives)})")


def check_classes(cfg: Config, data: DataSplits) -> None:
    """A conditional model's classes cover the data's labels, and the data has classes to give."""
    n = getattr(cfg.model, "n_classes", 0)
    if not n:
        return
    labels = torch.cat([data.train.labels, data.heldout.labels, data.test.labels])
    if labels.min() < 0 or labels.max() >= n:
        raise ConfigError(f"model.n_classes: {n} classes (labels 0 to {n - 1}), but data '{cfg.data.name}' has "
                          f"labels {int(labels.min())} to {int(labels.max())}")
    if len(data.train.labels.unique()) < 2:
        raise ConfigError(f"model.n_classes: data '{cfg.data.name}' has one class only; a conditional model needs "
                          f"labelled images (an image folder's labels are its subfolders)")


def make_scorer(cfg: Config, device: torch.device, quiet: bool = False,
                image_shape: tuple[int, int, int] | None = None) -> SampleQuality:
    """FID & co. against the run's splits; the feature extractor loads only if the model asks."""
    return SampleQuality(cfg.eval, cfg.data, device, quiet, image_shape)


def build(cfg: Config, data: DataSplits | None = None, model: GenerativeModel | None = None,
          callbacks: Sequence[Callback] = (), run_dir: str | Path | None = None, quiet: bool = False,
          resume: bool = False, hparams: HParams | None = None,
          announce: Callable[[str], None] | None = None) -> Trainer:
    """A Trainer for `cfg`, ready to fit.

    data: splits already loaded (the tuner shares them between trials); model: a model to train
    as it is (its weights are kept: a fine-tuning section then only freezes); resume=True
    continues run_dir/last.pt exactly, whose own config and weights make the fine-tuning source
    unnecessary; hparams: what the run's HParams record shows; announce: called with the
    fine-tuning step's summary (the CLI prints it).
    """
    run_dir = Path(run_dir) if run_dir else cfg.run_dir()
    device = pick_device(cfg.train.device)
    if cfg.train.compile:
        check_compiler(device)
    last = load_checkpoint(run_dir / "last.pt", device) if resume else None
    source = None
    if last is None and cfg.finetune is not None and (model is None or data is None or cfg.model is None):
        source = read_source(cfg.finetune)
    reference = last or (source[0] if source else None)
    if reference is not None:
        cfg = complete(cfg, reference)
    check_metrics(cfg, [cfg.train.monitor or model_class(cfg.model.kind).monitor], "train.monitor")
    data = data or load_data(cfg.data, device, reference.image_shape if reference else None)
    if reference is not None and data.image_shape != tuple(reference.image_shape):
        raise ConfigError(f"finetune.from: the checkpoint's model takes images {tuple(reference.image_shape)}, "
                          f"data '{cfg.data.name}' has {data.image_shape}")
    check_classes(cfg, data)
    start_from_source = source is not None and model is None
    if model is None:
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stays as it was
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, data.image_shape)
    if cfg.finetune is not None:
        # The source's weights (and re-drawn layers) belong to starting from it; a resumed run's
        # weights are its own, and so are a given model's.
        summary = finetune.apply(model, cfg.model.kind, cfg.finetune, source[0] if start_from_source else None,
                                 source[1] if source else "")
        if announce is not None:
            announce(summary.text)
    if last is None:
        cfg = choose_precision(cfg, model, data, device, quiet)
    elif cfg.train.precision == "auto":  # a resumed run keeps the choice it made when it started
        # (a run from before auto measured recorded 'auto': fp32 on CPU, as it trained)
        chosen = last.config.get("train", {}).get("precision", "auto")
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": chosen})})
    if cfg.train.compile:  # after the precision measurement, which trains copies of the eager model
        model.compile_networks()
    scorer = make_scorer(cfg, device, quiet, data.image_shape)
    return Trainer(cfg, data, model, callbacks, run_dir, scorer, quiet, start=last, hparams=hparams)


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
    scorer = make_scorer(cfg, device, quiet, data.image_shape)
    images = {"heldout": data.heldout, "test": data.test}[split]
    ctx = eval_context(cfg, device, split, data, model.conditional, full=True, scorer=scorer, options=opts)
    metrics = evaluate_split(model, images.images, ctx, cfg.train.eval_batch_size, quiet)
    report = {"split": split, "epoch": ckpt.epoch, "images": len(images), "dataset": cfg.data.name,
              **({"options": opts.model_dump()} if opts.model_fields_set else {}),
              **({"features": scorer.name} if scorer.loaded else {}), "metrics": metrics}
    write_json(path.parent / f"eval_{split}.json", report)
    return report
