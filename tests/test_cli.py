"""End to end through the command line, as a user runs it."""

import json

import yaml
from PIL import Image

from conftest import run_cli


def write_config(tmp_path):
    cfg = {
        "name": "cli",
        "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
        "train": {"epochs": 2, "batch_size": 256},
        "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 16},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_eval_sample(tmp_path):
    cfg = write_config(tmp_path)
    result = run_cli("train", str(cfg), "--quiet")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "cli"
    assert "neg_elbo" in result.stdout and f"tensorboard --logdir {tmp_path / 'runs'}" in result.stdout

    again = run_cli("train", str(cfg), "--quiet")
    assert again.returncode == 2
    assert again.stderr.strip() == (f"genmodels: error: {run} already holds a run; pass --resume to continue it, "
                                    f"or --name NEW for a new run")

    more = run_cli("train", str(cfg), "--quiet", "--resume", "--set", "train.epochs=3")
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3

    ev = run_cli("eval", str(run), "--split", "test", "--iwae-k", "8", "--quiet")
    assert ev.returncode == 0, ev.stderr
    report = json.loads((run / "eval_test.json").read_text())
    assert report["split"] == "test" and report["images"] == 10000
    assert report["metrics"]["iwae_nll"] > 0 and "neg_elbo" in report["metrics"]

    png = tmp_path / "grid.png"
    sm = run_cli("sample", str(run), "-n", "9", "-o", str(png))
    assert sm.returncode == 0, sm.stderr
    assert Image.open(png).size == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2)


def test_eval_missing_run_dir(tmp_path):
    result = run_cli("eval", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"genmodels: error: {tmp_path / 'nope'}: no such run directory"


def test_every_option_says_its_default():
    import argparse

    from genmodels.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = []
    for parser in parsers(build_parser()):
        for action in parser._actions:
            subcommands = isinstance(action, argparse._SubParsersAction)
            if action.option_strings and action.dest not in ("help",) and not subcommands:
                if "default" not in (action.help or "") and "required" not in (action.help or ""):
                    missing.append(f"{parser.prog} {action.option_strings[0]}")
    assert not missing, missing
