"""The command line: `genmodels train|finetune|eval|sample|fid|tune|dashboard|features`, its flags
and its exit codes (the commands themselves: genmodels.commands). User errors are one line on
stderr and exit code 2; Ctrl-C and SIGTERM save the run and exit 130 and 143."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import yaml

from genmodels import distributed
from genmodels.commands import (cmd_dashboard, cmd_eval, cmd_export, cmd_features, cmd_fid, cmd_sample, cmd_train,
                                cmd_tune, eval_option_fields)
from genmodels.errors import Interrupted, UserError
from genmodels.metrics.classifier import EPOCHS
from genmodels.metrics.features import EXTRACTORS
from genmodels.runtime import check_torch, setup_process


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields by dotted path, e.g. --set train.epochs=5 optim.lr=3e-4 "
                        "(default: none)")
    p.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: data.root, then $GENMODELS_DATA, "
                                       "then ~/.cache/genmodels/data)")
    _add_quiet(p)


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-evaluation lines (default: off)")


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
    p.add_argument("--class", dest="label", type=int, help="a conditional run: every sample of this class "
                                                          "(default: the classes in turn, one per column)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("fid", help="FID (and KID, precision/recall) between two image sets",
                       description="score image set B against A: each a folder of images, a run (samples of its "
                                   "best checkpoint) or a dataset split such as fashion-mnist:test; A twice gives "
                                   "A's floor (two halves)")
    p.add_argument("a", help="the reference set")
    p.add_argument("b", help="the set scored against it")
    p.add_argument("--metrics", nargs="+", default=[], metavar="NAME",
                   help="also fid_inf, kid, precision, recall (default: FID only)")
    p.add_argument("--features", choices=EXTRACTORS, default="auto",
                   help="feature extractor; auto: the classifier for mnist and fashion-mnist, else contrastive, "
                        "label-free (default: auto)")
    p.add_argument("--feature-dataset", metavar="DATASET_OR_FOLDER",
                   help="what the extractor is trained on: a dataset's name, or a folder for contrastive "
                        "(default: the dataset of a run or split given, else the first folder)")
    p.add_argument("--image-size", type=int, help="side folders are read at for contrastive features learnt from "
                                                  "a folder (default: 28)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 grey or 3 RGB, as --image-size (default: 1)")
    p.add_argument("--samples", type=int, default=10_000, help="images sampled from a run (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of a run's samples and of the halves (default: 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (default: off)")
    p.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: $GENMODELS_DATA)")
    _add_quiet(p)
    p.set_defaults(func=cmd_fid)

    p = sub.add_parser("export", help="write a dataset's split as PNG files into a new folder, without labels",
                       description="write a dataset's split (e.g. fashion-mnist:train) as PNG files into a new or "
                                   "empty folder, labels left out: a folder of images to try data.name: imagefolder on")
    p.add_argument("split", help="<dataset>:train or <dataset>:test")
    p.add_argument("folder", help="a new or empty folder")
    p.add_argument("--data-root", help="folder holding <dataset>/*.gz (default: $GENMODELS_DATA)")
    _add_quiet(p)
    p.set_defaults(func=cmd_export)

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
