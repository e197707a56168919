"""Assembling runs (genmodels.experiment): fine-tuning sources, resume, and what a run leaves alone."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genmodels.config import load_config
from genmodels.errors import ConfigError
from genmodels.experiment import build
from genmodels.models import GAN, Updater
from genmodels.optim import OptimConfig
from genmodels.tuning.study import tune_study

from conftest import REPO, cli, tiny_config

# Every file a test process opens, recorded by an audit hook: real reads, nothing patched.
OPENED: list[str] = []
sys.addaudithook(lambda event, args: OPENED.append(str(args[0])) if event == "open" and args else None)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    trainer = build(tiny_config(tmp, "name=src"), quiet=True)
    trainer.fit()
    return trainer.run_dir


def ft_config(tmp_path, source, *extra):
    return tiny_config(tmp_path, "name=ft", f"finetune.from={source}", "finetune.freeze=[encoder.*]",
                       "data.name=fashion-mnist", "data.limit=300", "train.epochs=2", *extra)


def test_given_model_keeps_its_weights(tmp_path, source):
    trained = build(tiny_config(tmp_path, "name=other", "seed=7"), quiet=True)
    trained.fit()
    weights = {k: v.clone() for k, v in trained.model.state_dict().items()}
    trainer = build(ft_config(tmp_path, source), model=trained.model, quiet=True)
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in weights.items())
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if n.startswith("encoder."))


def test_resume_needs_no_source(tmp_path, source):
    straight = build(ft_config(tmp_path, source, "name=straight"), quiet=True)
    straight.fit()
    copy = tmp_path / "src_copy"
    shutil.copytree(source, copy)
    build(ft_config(tmp_path, copy, "name=ft", "train.epochs=1"), quiet=True).fit()
    shutil.rmtree(copy)  # the source run is gone; the run's own last.pt holds every weight
    cfg = load_config_from(tmp_path, ft_config(tmp_path, copy, "name=ft"))
    resumed = build(cfg, quiet=True, resume=True)
    assert sum(not p.requires_grad for p in resumed.model.parameters()) == 4
    resumed.fit()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def load_config_from(tmp_path, cfg):
    """Write a config without its model section to YAML and load it back, as a user's file is."""
    data = cfg.to_dict()
    del data["model"]
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_finetune_config_loads_without_its_source(tmp_path):
    cfg = load_config(REPO / "experiments" / "finetune_vae_fashion.yaml", [f"finetune.from={tmp_path / 'absent'}"])
    assert cfg.model is None and cfg.finetune.source == str(tmp_path / "absent")


def test_a_finetuning_trial_reads_its_source_once(tmp_path, source):
    base = {"name": "x", "data": {"name": "fashion-mnist", "limit": 300}, "train": {"epochs": 1, "batch_size": 128},
            "log": {"n_images": 4}, "finetune": {"from": str(source), "freeze": "encoder.*"}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    tune = {"base": "base.yaml", "study_name": "ft", "runs_dir": str(tmp_path / "runs"), "n_trials": 3,
            "sampler": {"name": "random"}, "pruner": {"name": "none"},
            "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune))
    OPENED.clear()
    tune_study(str(tmp_path / "tune.yaml"), quiet=True)
    reads = [p for p in OPENED if Path(p).resolve() == (source / "best.pt").resolve()]
    # One read to check the tuning config (the source's model kind), then one per trial.
    assert len(reads) == 1 + 3, reads


def test_frozen_discriminator_layers_get_no_gradient():
    model = GAN((1, 28, 28), arch="mlp", hidden=8, latent_dim=4)
    frozen = [p for n, p in model.named_parameters() if n.startswith("discriminator.1.0.")]
    for p in frozen:
        p.requires_grad_(False)
    update = Updater(model.configure_optimizers(OptimConfig()))
    batch = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    for _ in range(3):  # a generator step happens on every one of them
        assert "g_loss" in model.training_step(batch, update)
        assert all(not p.requires_grad and p.grad is None for p in frozen)
    trainable = [p for n, p in model.named_parameters() if n.startswith("discriminator.1.2.")]
    assert all(p.requires_grad and p.grad is not None for p in trainable)


LEAVES_ALONE = """
import sys, torch, matplotlib, optuna
from conftest import tiny_config
from genmodels.errors import ConfigError
from genmodels.experiment import build
import pathlib
torch.manual_seed(123)
before = torch.get_rng_state()
backend, verbosity = matplotlib.get_backend(), optuna.logging.get_verbosity()
trainer = build(tiny_config(pathlib.Path(sys.argv[1])), quiet=True)
trainer.fit()
import genmodels.tuning.report, genmodels.cli
x = torch.full((4,), 1e-39)
print(torch.equal(before, torch.get_rng_state()), bool((x * 1.0 != 0).all()),
      matplotlib.get_backend() == backend, optuna.logging.get_verbosity() == verbosity)
"""


def test_a_run_leaves_rng_fp_mode_and_libraries_as_it_found_them(tmp_path):
    out = subprocess.run([sys.executable, "-c", LEAVES_ALONE, str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO / "tests")
    assert out.returncode == 0, out.stderr
    # global RNG untouched, denormals still computed (no flush-to-zero set), backend and verbosity kept
    assert out.stdout.split() == ["True", "True", "True", "True"]


@pytest.mark.parametrize("overrides, message", [
    # The VAE computes iwae_nll only under `genmodels eval --iwae-k K`: training would fail at its first evaluation.
    (["train.monitor=iwae_nll"], "train.monitor: 'iwae_nll' is not computed at training's held-out evaluations"),
    (["model.kind=gan", "train.monitor=kid"], "train.monitor: 'kid' is computed only when eval.metrics lists it"),
    (["model.kind=gan", "train.monitor=fid_se"], "train.monitor: 'fid_se' is no objective"),
    (["train.monitor=fid"], "train.monitor: 'fid' is not a metric a 'vae' model reports"),
])
def test_a_monitor_that_is_never_computed_is_refused_before_data_loads(tmp_path, overrides, message):
    opened = len(OPENED)
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(tiny_config(tmp_path, "data.root=" + str(tmp_path / "nothing-here"), *overrides), quiet=True)
    assert not any("nothing-here" in path for path in OPENED[opened:])


def test_kid_as_monitor_with_eval_metrics_is_accepted(tmp_path):
    trainer = build(tiny_config(tmp_path, "model.kind=gan", "model.arch=mlp", "model.hidden=16", "model.latent_dim=4",
                                "train.monitor=kid", "eval.metrics=[kid]", "data.limit=300"), quiet=True)
    assert trainer.monitor == "kid"


def test_a_fine_tuning_run_enters_the_fine_tuning_code_once(tmp_path, source):
    """From `genmodels finetune` to the first training step, the calls that enter
    genmodels/finetune.py or genmodels/experiment.py from elsewhere in the package."""
    package = str(REPO / "genmodels")
    cfg = {"name": "traced", "data": {"name": "mnist", "limit": 300}, "train": {"epochs": 1},
           "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4},
           "finetune": {"from": str(source), "freeze": ["encoder.*"]}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    entries = []

    class FirstStep(Exception):
        pass

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(package):
            return
        back = frame.f_back  # the nearest caller in the package (generated code such as a dataclass's skipped)
        while back is not None and not back.f_code.co_filename.startswith(package):
            back = back.f_back
        here, there = Path(frame.f_code.co_filename).name, Path(back.f_code.co_filename).name if back else ""
        if here in ("finetune.py", "experiment.py") and here != there:
            entries.append((here, frame.f_code.co_name))
        if frame.f_code.co_name == "training_step":
            raise FirstStep

    sys.setprofile(profile)
    try:
        cli("finetune", str(tmp_path / "ft.yaml"), "--quiet")
    except FirstStep:
        pass
    finally:
        sys.setprofile(None)
    assert entries == [("experiment.py", "build"), ("finetune.py", "apply")]
