"""Tuning GANs: reports every K images, failed trials stopped with their reasons, real-image
statistics computed once per study, objectives beyond FID."""

import shutil

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from genmodels.metrics.features import cache_dirs, classifier_name, load_classifier
from genmodels.tuning.study import tune_study

from conftest import cli

GAN = {"seed": 0, "data": {"name": "mnist", "limit": 1200},
       "model": {"kind": "gan", "arch": "mlp", "hidden": 32, "latent_dim": 8, "ema": 0.9},
       "optim": {"lr": 2e-4, "betas": [0.5, 0.999]},
       "train": {"epochs": 2, "batch_size": 64}, "eval": {"fid_samples": 200}, "log": {"n_images": 4}}


def write(tmp_path, base_extra=None, **tune):
    base = {**GAN, **(base_extra or {})}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    cfg = {"base": "base.yaml", "study_name": "g", "runs_dir": str(tmp_path / "runs"), "n_trials": 2,
           "objectives": ["fid"], "sampler": {"name": "random"}, "pruner": {"name": "none"},
           "space": {"model.lr_g": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}, **tune}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "tune.yaml")


def study(tmp_path):
    return optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'runs' / 'g' / 'study.db'}")


def test_reports_every_k_images_reach_the_pruner(tmp_path):
    # 1,080 training images per epoch, 2 epochs: evaluations after 500, 1,000, 1,500 and 2,000
    # images (and a final one at 2,160, between two report steps)
    path = write(tmp_path, {"train": {**GAN["train"], "eval_every_images": 500}}, n_trials=1)
    assert cli("tune", path, "--quiet")[0] == 0
    trial = study(tmp_path).trials[0]
    assert sorted(trial.intermediate_values) == [500, 1000, 1500, 2000]


def test_objectives_beyond_fid(tmp_path):
    path = write(tmp_path, objectives=["fid_inf"], n_trials=1)
    assert cli("tune", path, "--quiet")[0] == 0
    trial = study(tmp_path).trials[0]
    config = yaml.safe_load(open(f"{trial.user_attrs['run_dir']}/config.yaml"))
    assert config["train"]["monitor"] == "fid_inf" and "fid_inf" in config["eval"]["metrics"]
    assert trial.value > 0 and trial.value == pytest.approx(min(trial.intermediate_values.values()))


def test_diverged_and_collapsed_trials_stop_with_their_reasons(tmp_path):
    # lr_g 1e-9: the generator never learns, its samples stay alike (judged after 10 updates);
    # a discriminator at lr 1e12 diverges at once.
    path = write(tmp_path, {"model": {**GAN["model"], "judge_after": 10}}, n_trials=2, sampler={"name": "grid"},
                 space={"model.lr_d": {"type": "categorical", "choices": [2e-4, 1e12]}},
                 set=["model.lr_g=1e-9", "optim.name=sgd"])
    assert cli("tune", path, "--quiet")[0] == 0
    trials = {t.params["model.lr_d"]: t for t in study(tmp_path).trials}
    assert all(t.state == TrialState.FAIL for t in trials.values())
    assert "training diverged" in trials[1e12].user_attrs["fail_reason"]
    assert "collapsed: the samples are near-identical" in trials[2e-4].user_attrs["fail_reason"]


def test_real_statistics_are_computed_once_per_study(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    name = classifier_name("mnist")
    (cache / "features").mkdir(parents=True)
    load_classifier("mnist", quiet=True)  # in the session's cache (trained there if no test did yet)
    shutil.copy(cache_dirs(None, "mnist")[0] / f"{name}.pt", cache / "features")
    monkeypatch.setenv("GENMODELS_CACHE", str(cache))
    tune_study(write(tmp_path, {"train": {**GAN["train"], "epochs": 8}}, n_trials=6), workers=2, quiet=True)
    trials = study(tmp_path).trials
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    lines = (cache / "features" / "stats" / "computed.log").read_text().splitlines()
    assert len([line for line in lines if "-heldout-" in line]) == 1, lines
