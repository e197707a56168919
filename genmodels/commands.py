"""What each `genmodels` subcommand does, one function a command (genmodels.cli parses the flags
and calls them). Each returns the exit code; a user error is raised as UserError, which the
command line prints as one line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import optuna
import torch
from torchvision.utils import save_image

from genmodels import distributed
from genmodels.compare import compare
from genmodels.config import load_config
from genmodels.dashboard import serve, storage_of
from genmodels.errors import Interrupted, UserError
from genmodels.experiment import build, evaluate_run
from genmodels.export import export_split
from genmodels.files import atomic_write
from genmodels.images import grid_columns
from genmodels.metrics.classifier import load_classifier, save_classifier, train_classifier
from genmodels.metrics.extractor import cache_dirs
from genmodels.models import MODELS
from genmodels.runs import checkpoint_path, load_run
from genmodels.tuning.report import write_report
from genmodels.tuning.retrain import retrain_best
from genmodels.tuning.storage import safe_url
from genmodels.tuning.study import tune_study


def _format_metrics(metrics: dict[str, float]) -> str:
    width = max(len(k) for k in metrics)
    return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in metrics.items())


def cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.runs_dir:
        overrides.append(f"log.runs_dir={args.runs_dir}")
    if args.name:
        overrides.append(f"name={args.name}")
    cfg = load_config(args.config, overrides)
    if args.command == "finetune" and cfg.finetune is None:
        raise UserError(f"{args.config}: finetune: a section naming 'from' (a run or checkpoint) is required")
    run_dir = cfg.run_dir()
    if (run_dir / "last.pt").exists() and not args.resume:
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it, or --name NEW for a new run")
    if args.resume and not (run_dir / "last.pt").exists():
        raise UserError(f"{run_dir / 'last.pt'}: nothing to resume")
    main_rank = distributed.is_main()  # under torchrun rank 0 speaks for the run
    result = build(cfg, quiet=args.quiet, resume=args.resume, announce=print if main_rank else None).fit()
    if not main_rank:
        return 0
    processes = f"  processes: {result.processes}" if result.processes > 1 else ""
    print(f"run: {run_dir}  device: {result.device}{processes}  epochs: {result.epochs}  "
          f"time: {result.train_seconds:.1f}s" + (f"  ({result.stop_reason})" if result.stop_reason else ""))
    features = f", features: {result.features}" if result.features else ""
    print(f"held-out metrics (nats per image where applicable{features}), epoch {result.epochs}:")
    print(_format_metrics(result.heldout))
    if result.best:
        print(f"best heldout/{result.monitor}: {result.best['value']:.4f} at epoch {result.best['epoch']:g}")
    print(f"view the curves: tensorboard --logdir {cfg.log.runs_dir}")
    return 0


def eval_option_fields() -> dict[str, Any]:
    """Every evaluation option some registered model family declares, by name."""
    return {name: field for cls in MODELS.values() for name, field in cls.EvalOptions.model_fields.items()}


def cmd_eval(args: argparse.Namespace) -> int:
    options = {name: value for name in eval_option_fields() if (value := getattr(args, name)) is not None}
    path = checkpoint_path(args.run_dir, args.checkpoint)
    report = evaluate_run(path, args.split, args.checkpoint, options, args.data_root, args.quiet)
    extra = f", features: {report['features']}" if "features" in report else ""
    print(f"{args.split} split ({report['images']} images), {report['dataset']}, epoch {report['epoch']}{extra}:")
    print(_format_metrics(report["metrics"]))
    print(f"written to {path.parent / f'eval_{args.split}.json'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    if not 1 <= args.n <= 100_000:
        raise UserError(f"-n: expected a number of images from 1 to 100000, got {args.n}")
    cfg, model, _ = load_run(args.run_dir, args.checkpoint)
    labels, nrow = None, grid_columns(args.n)
    if args.label is not None:
        if not model.conditional:
            raise UserError(f"--class: {args.run_dir} is an unconditional run (model.n_classes: 0); it takes no class")
        if not 0 <= args.label < model.n_classes:
            raise UserError(f"--class: expected a class from 0 to {model.n_classes - 1}, got {args.label}")
        labels = torch.full((args.n,), args.label)
    elif model.conditional:
        nrow = min(model.n_classes, args.n)  # the classes in turn: a column per class
    seed = cfg.seed if args.seed is None else args.seed
    noise = torch.Generator().manual_seed(seed)
    images = model.sample(args.n, noise) if labels is None else model.sample(args.n, noise, labels=labels)
    atomic_write(args.output, lambda tmp: save_image(images, tmp, nrow=nrow, format="png"))
    print(f"wrote {args.n} samples to {args.output}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    if args.force:
        net, info = train_classifier(args.dataset, args.data_root, args.split_seed, args.heldout_fraction,
                                     epochs=args.epochs, quiet=args.quiet)
        path = save_classifier(net, info, cache_dirs(args.data_root, args.dataset))
    else:
        extractor = load_classifier(args.dataset, args.data_root, args.split_seed, args.heldout_fraction,
                                    quiet=args.quiet)
        info = extractor.info
        path = next(d / f"{info['name']}.pt" for d in cache_dirs(args.data_root, args.dataset)
                    if (d / f"{info['name']}.pt").is_file())
    print(f"{info['name']}: test accuracy {info['test_accuracy']:.4f} "
          f"({info['train_images']} training images, {info['epochs']} epochs)")
    print(f"cached at {path}")
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    if not 2 <= args.samples <= 1_000_000:
        raise UserError(f"--samples: expected a number of images from 2 to 1000000, got {args.samples}")
    report = compare(args.a, args.b, args.features, args.feature_dataset, args.metrics, args.samples, args.seed,
                     args.data_root, quiet=args.quiet, image_size=args.image_size, channels=args.channels)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    what = f"{report['a']} (floor: two halves)" if report["floor"] else f"{report['b']} against {report['a']}"
    print(f"{what}, {report['images'][1]:,} vs {report['images'][0]:,} images, features: {report['features']}")
    values = report["metrics"]
    for name in (k for k in values if not k.endswith("_se")):
        print(f"  {name:<9}  {values[name]:.4f} +- {values[name + '_se']:.4f}")
    print("  (+-: standard error over both sets' sampling noise)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    n = export_split(args.split, args.folder, args.data_root, args.quiet)
    print(f"wrote {n:,} images of {args.split} to {args.folder}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING if args.quiet else optuna.logging.INFO)
    if args.workers < 1:
        raise UserError(f"--workers: expected at least 1, got {args.workers}")
    overrides = list(args.overrides)
    if args.n_trials:
        overrides.append(f"n_trials={args.n_trials}")
    try:
        devices = [d.strip() for d in args.devices.split(",")] if args.devices else None
        study, tune, base = tune_study(args.config, overrides, args.storage, args.workers, args.quiet, devices)
    except KeyboardInterrupt as exc:
        print("genmodels: interrupted: running trials saved their state and are queued again; rerun the same "
              "command to resume the study", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    if study is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    retrained = None
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if (args.retrain_best or tune.retrain_best) and complete and len(tune.objectives) == 1:
        retrained = retrain_best(study, tune, base, quiet=args.quiet)
    summary = write_report(study, tune, base, retrained)
    out = tune.study_dir()
    states = ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n)
    print(f"study {tune.study_name}: {summary['trials']} trials ({states}), "
          f"storage {safe_url(args.storage or tune.storage_url())}")
    for best in summary.get("best", []):
        values = ", ".join(f"{o}={v:.4f}" for o, v in zip(tune.objectives, best["values"]))
        features = f"  features: {best['features']}" if best.get("features") else ""
        print(f"best trial {best['trial']}: {values}{features}  params: {best['params']}")
    if retrained:
        features = f"  features: {retrained['features']}" if retrained.get("features") else ""
        print("retrained best config, test split: " + ", ".join(f"{k}={v:.4f}" for k, v in retrained["test"].items())
              + features)
    print(f"results: {out}/summary.md, trials.csv, best_config*.yaml, *.png")
    print(f"compare trials: tensorboard --logdir {out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: expected a port number from 1 to 65535, got {args.port}")
    serve(storage_of(args.study_dir, args.storage), args.port)
    return 0
