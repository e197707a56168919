"""`genmodels train|finetune|eval|sample|tune|features`: thin wrappers over the package. User errors
are one line on stderr and exit code 2; Ctrl-C and SIGTERM save the run and exit 130 and 143."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import optuna
import torch
import yaml
from torchvision.utils import save_image

from genmodels import distributed
from genmodels.config import load_config
from genmodels.dashboard import serve, storage_of
from genmodels.tuning.storage import safe_url
from genmodels.errors import Interrupted, UserError
from genmodels.experiment import build, evaluate_run
from genmodels.files import atomic_write
from genmodels.images import grid_columns
from genmodels.metrics.classifier import EPOCHS, load_classifier, save_classifier, train_classifier
from genmodels.metrics.extractor import cache_dirs
from genmodels.models import MODELS
from genmodels.runs import checkpoint_path, load_run
from genmodels.runtime import check_torch, setup_process
from genmodels.tuning.report import write_report
from genmodels.tuning.study import tune_study
from genmodels.tuning.retrain import retrain_best


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields by dotted path, e.g. --set train.epochs=5 optim.lr=3e-4 "
                        "(default: none)")
    p.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: data.root, then $GENMODELS_DATA, "
                                       "then ~/.cache/genmodels/data)")
    _add_quiet(p)


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-evaluation lines (default: off)")


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
    print(f"held-out metrics (nats per image where applicable), epoch {result.epochs}:")
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
    seed = cfg.seed if args.seed is None else args.seed
    images = model.sample(args.n, torch.Generator().manual_seed(seed))
    atomic_write(args.output, lambda tmp: save_image(images, tmp, nrow=grid_columns(args.n), format="png"))
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
        print(f"best trial {best['trial']}: {values}  params: {best['params']}")
    if retrained:
        print("retrained best config, test split: " + ", ".join(f"{k}={v:.4f}" for k, v in retrained["test"].items()))
    print(f"results: {out}/summary.md, trials.csv, best_config*.yaml, *.png")
    print(f"compare trials: tensorboard --logdir {out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: expected a port number from 1 to 65535, got {args.port}")
    serve(storage_of(args.study_dir, args.storage), args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every option says its default in its help: `genmodels <command> --help` is the reference."""
    parser = argparse.ArgumentParser(prog="genmodels", description="Train, tune, fine-tune, evaluate and sample "
                                     "generative image models.")
    sub = parser.add_subparsers(dest="command", required=True)

    # `finetune` is `train` for a config that has a finetune section; same flags, same loop.
    for command, help_text, config_help in (
        ("train", "train a model from a YAML config", "YAML run config, e.g. experiments/vae_mnist.yaml"),
        ("finetune", "fine-tune a trained run on new data (a config with a finetune section)",
         "YAML run config with finetune: {from: RUN_DIR, freeze: [...]}"),
    ):
        p = sub.add_parser(command, help=help_text, description=help_text)
        p.add_argument("config", help=config_help)
        _add_overrides(p)
        p.add_argument("--name", help="run name; the run goes to <runs_dir>/<name> (default: the config's name)")
        p.add_argument("--runs-dir", help="parent folder of runs (default: the config's log.runs_dir)")
        p.add_argument("--resume", action="store_true", help="continue <runs_dir>/<name>/last.pt exactly "
                                                             "(default: off; a run folder is never overwritten)")
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint on the held-out or test split",
                       description="evaluate a run's checkpoint with every metric its model has; writes "
                                   "<run>/eval_<split>.json")
    p.add_argument("run_dir", help="a run folder (or a .pt checkpoint)")
    p.add_argument("--split", choices=["heldout", "test"], default="heldout", help="(default: heldout)")
    # One flag per evaluation option a model family declares (e.g. the VAE's --iwae-k).
    for name, field in eval_option_fields().items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_yaml_value, metavar="VALUE",
                       help=f"{field.description} (default: {field.default})")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="(default: best)")
    p.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: the run's data.root, then "
                                       "$GENMODELS_DATA)")
    _add_quiet(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="write a grid of samples from a run")
    p.add_argument("run_dir", help="a run folder (or a .pt checkpoint)")
    p.add_argument("-n", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("-o", "--output", default="samples.png", help="PNG file to write (default: samples.png)")
    p.add_argument("--seed", type=int, help="noise seed (default: the run's seed)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="(default: best)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("tune", help="run (or resume) an Optuna study from a tuning YAML")
    p.add_argument("config", help="tuning YAML, e.g. experiments/tune_vae_mnist.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override tuning fields, e.g. --set n_trials=50 sampler.name=random (default: none)")
    p.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host/db for workers on many "
                                     "machines (default: the config's storage, else "
                                     "sqlite:///<runs_dir>/<study>/study.db)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (default: 1)")
    p.add_argument("--devices", metavar="0,1,...", help="GPU indices: worker i trains on device i mod their number "
                                                        "(default: the config's train.device)")
    p.add_argument("--n-trials", type=int, help="finished trials the study should hold (default: the config's "
                                                "n_trials)")
    p.add_argument("--retrain-best", action="store_true", help="train the best config on train+held-out, then "
                                                               "score the test split (default: off)")
    _add_quiet(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("dashboard", help="watch a study (live) in optuna-dashboard, served on 127.0.0.1")
    p.add_argument("study_dir", nargs="?", help="a study folder, e.g. runs/tune_vae_mnist (its study.db)")
    p.add_argument("--storage", help="the study's storage URL instead, e.g. postgresql://... (default: none)")
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default: 8080)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("features", help="the feature classifier behind FID/KID/precision-recall")
    fsub = p.add_subparsers(dest="action", required=True)
    f = fsub.add_parser("train", help="train and cache it (reports the cached one if present)")
    f.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist"], help="(required)")
    f.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: $GENMODELS_DATA)")
    f.add_argument("--split-seed", type=int, default=0, help="the held-out split it must not see: data.split_seed "
                                                             "(default: 0)")
    f.add_argument("--heldout-fraction", type=float, default=0.1, help="data.heldout_fraction (default: 0.1)")
    f.add_argument("--epochs", type=int, default=EPOCHS, help=f"(default: {EPOCHS})")
    f.add_argument("--force", action="store_true", help="train again even if cached (default: off)")
    _add_quiet(f)
    f.set_defaults(func=cmd_features)
    return parser


def _yaml_value(text: str) -> Any:
    """A flag's value as YAML (numbers, booleans, lists); the model's schema checks it."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def main(argv: list[str] | None = None) -> int:
    setup_process()  # before torch starts its worker threads, so they inherit it
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    who = f"genmodels[rank {distributed.rank_from_env()}]" if distributed.launched() else "genmodels"
    try:
        check_torch()
        distributed.init_from_env()  # under torchrun: join the other processes of the run
        return func(args)
    except UserError as exc:
        print(f"{who}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # the Trainer has said what it saved; elsewhere nothing was lost
        if not isinstance(exc, Interrupted):
            print("genmodels: interrupted", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
