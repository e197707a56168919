"""Real (tiny) Optuna studies: SQLite storage read back after each run."""

import itertools
import math

import optuna
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genmodels.errors import ConfigError
from genmodels.tuning.study import open_study, optimize, tune_study
from genmodels.tuning.config import load_tune_config

from conftest import cli, run_cli

BASE = {
    "seed": 0,
    "data": {"name": "mnist"},
    "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
    "train": {"epochs": 2, "batch_size": 256},
    "log": {"n_images": 4},
}


def write_study(tmp_path, **tune):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    cfg = {"base": "base.yaml", "study_name": "s", "runs_dir": str(tmp_path / "runs"), "n_trials": 4,
           "objectives": ["neg_elbo"], "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
           **tune}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def load(tmp_path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}")


def test_grid_sampler_visits_exactly_the_grid(tmp_path):
    path = write_study(tmp_path, n_trials=20, sampler={"name": "grid"}, pruner={"name": "none"},
                       space={"optim.lr": {"type": "categorical", "choices": [1e-3, 3e-3]},
                              "model.latent_dim": {"type": "int", "low": 2, "high": 4, "step": 2}},
                       set=["train.epochs=1"])
    tune_study(path, quiet=True)
    trials = load(tmp_path).trials
    visited = sorted((t.params["optim.lr"], t.params["model.latent_dim"]) for t in trials)
    assert visited == sorted(itertools.product([1e-3, 3e-3], [2, 4]))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("pruner", [{"name": "median"}, {"name": "percentile", "percentile": 25.0}])
def test_median_and_percentile_pruners_prune_a_poor_trial(tmp_path, pruner):
    path = write_study(tmp_path, n_trials=3, set=["train.epochs=3"],
                       pruner={**pruner, "n_startup_trials": 2, "n_warmup_steps": 0},
                       space={"optim.lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}})
    tune, base = load_tune_config(path)
    study = open_study(tune, base)
    for lr in (3e-3, 3e-3, 1e-8):  # the last one cannot learn anything in 3 epochs
        study.enqueue_trial({"optim.lr": lr})
    optimize(study, tune, base)
    states = [t.state for t in load(tmp_path).trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2] == optuna.trial.TrialState.PRUNED
    # Four reports an epoch (the default): the first after a quarter of the 4,500 training images.
    assert "pruned after 1,125 images" in load(tmp_path).trials[2].user_attrs["prune_reason"]


def test_resume_adds_trials_and_respects_n_trials(tmp_path):
    path = write_study(tmp_path, n_trials=2, set=["train.epochs=1"], sampler={"name": "random"})
    tune_study(path, quiet=True)
    assert len(load(tmp_path).trials) == 2
    tune_study(path, ["n_trials=3"], quiet=True)
    tune_study(path, ["n_trials=3"], quiet=True)
    trials = load(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert (tmp_path / "runs" / "s" / "trial-0002" / "metrics.json").is_file()


def test_nan_trial_does_not_stop_the_study(tmp_path):
    path = write_study(tmp_path, n_trials=5, sampler={"name": "grid"}, set=["train.epochs=1", "optim.name=sgd",
                                                                          "train.log_every=1"],
                       space={"optim.lr": {"type": "categorical", "choices": [1e12, 1e-3]}})
    tune_study(path, quiet=True)
    trials = {t.params["optim.lr"]: t for t in load(tmp_path).trials}
    assert trials[1e12].state == optuna.trial.TrialState.FAIL
    assert "training diverged" in trials[1e12].user_attrs["fail_reason"]
    assert trials[1e-3].state == optuna.trial.TrialState.COMPLETE and math.isfinite(trials[1e-3].value)


def test_cross_validation_stores_fold_values(tmp_path):
    path = write_study(tmp_path, n_trials=1, cv_folds=3, set=["train.epochs=1"], pruner={"name": "none"})
    tune_study(path, quiet=True)
    trial = load(tmp_path).trials[0]
    folds = trial.user_attrs["fold_values"]
    assert len(folds) == 3 and trial.value == pytest.approx(sum(folds) / 3)
    assert all((tmp_path / "runs" / "s" / "trial-0000" / f"fold-{i}" / "best.pt").is_file() for i in range(3))


def test_cli_tune_report_best_config_and_hparams(tmp_path):
    path = write_study(tmp_path, n_trials=3, set=["train.epochs=2"], sampler={"name": "tpe", "n_startup_trials": 2},
                       space={"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                              "model.n_layers": {"type": "int", "low": 1, "high": 2},
                              "train.batch_size": {"type": "categorical", "choices": [128, 256]}})
    result = run_cli("tune", path, "--quiet", "--retrain-best")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "runs" / "s"
    assert "best trial" in result.stdout and "test split" in result.stdout
    for name in ("trials.csv", "summary.md", "summary.json", "best_config.yaml", "optimization_history.png",
                 "parallel_coordinate.png", "slice.png", "param_importances.png"):
        assert (out / name).is_file(), name
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 4
    assert "pruner: sha (random start-up trials stopped at the first cut)" in (out / "summary.md").read_text()
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    study = load(tmp_path)
    assert best["optim"]["lr"] == study.best_params["optim.lr"]
    trained = run_cli("train", str(out / "best_config.yaml"), "--quiet", "--set", "train.epochs=1",
                      "--runs-dir", str(tmp_path / "again"))
    assert trained.returncode == 0, trained.stderr
    for t in study.trials:
        acc = EventAccumulator(t.user_attrs["run_dir"])
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def test_space_typo_is_one_line(tmp_path):
    path = write_study(tmp_path, space={"optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}})
    with pytest.raises(ConfigError, match=r"space.optim.lrr: unknown key 'optim.lrr'; did you mean 'optim.lr'\?"):
        load_tune_config(path)
    result = run_cli("tune", path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_workers_share_one_study(tmp_path):
    # Trials long enough (a few seconds) that the second process, which starts a fresh interpreter, joins in.
    path = write_study(tmp_path, n_trials=6, set=["train.epochs=15"], sampler={"name": "random"},
                       pruner={"name": "none"})
    threads = torch.get_num_threads()
    tune_study(path, workers=2, quiet=True)
    assert torch.get_num_threads() == threads  # the caller's own thread count is given back
    trials = load(tmp_path).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # exactly n_trials finished; a trial one worker started after the other took the last one
    # steps back as failed, not counted
    assert len(done) == 6 and len({t.user_attrs["worker"] for t in done}) == 2
    assert all("interrupted" in t.user_attrs for t in trials if t.state != optuna.trial.TrialState.COMPLETE)


def test_list_valued_choices(tmp_path):
    """A field that holds a list (optim.betas) is searched over lists; reports and best configs
    give the list back."""
    path = write_study(tmp_path, n_trials=2, sampler={"name": "grid"}, set=["train.epochs=1"],
                       space={"optim.betas": {"type": "categorical", "choices": [[0.5, 0.999], [0.0, 0.9]]}})
    tune_study(path, quiet=True)
    trials = load(tmp_path).trials
    assert sorted(t.params["optim.betas"] for t in trials) == ["[0.0, 0.9]", "[0.5, 0.999]"]
    for t in trials:
        cfg = yaml.safe_load(open(f"{t.user_attrs['run_dir']}/config.yaml"))
        assert cfg["optim"]["betas"] == yaml.safe_load(t.params["optim.betas"])
    code, _, err = cli("tune", path, "--quiet")  # the report: best_config.yaml holds the list
    assert code == 0, err
    best = yaml.safe_load((tmp_path / "runs" / "s" / "best_config.yaml").read_text())
    assert best["optim"]["betas"] in ([0.5, 0.999], [0.0, 0.9])


def test_study_hparams_show_the_searched_fields_and_the_objective(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    space = {"optim.lr": {"type": "categorical", "choices": [1e-3, 3e-3]},
             "model.hidden": {"type": "categorical", "choices": [16, 24]},
             "optim.betas": {"type": "categorical", "choices": [[0.5, 0.999], [0.9, 0.999]]}}
    tune_study(write_study(tmp_path, n_trials=8, set=["train.epochs=1"], sampler={"name": "grid"}, space=space),
               quiet=True)
    columns, values = [], []
    for t in load(tmp_path).trials:
        acc = EventAccumulator(t.user_attrs["run_dir"])
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        columns.append([h.name for h in experiment.hparam_infos])
        assert [m.name.tag for m in experiment.metric_infos] == ["hparams/heldout_neg_elbo"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        values.append({k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                       for k, v in start.session_start_info.hparams.items()})
    assert all(c == list(space) for c in columns), columns  # the searched fields, in the order of the space
    for key in space:  # no column is the same for every trial
        assert len({v[key] for v in values}) > 1, key


def test_gp_sampler_runs_without_pruning_and_refuses_a_pruner(tmp_path):
    # Optuna's GP ignores pruned trials and would propose their parameters again and again.
    path = write_study(tmp_path, sampler={"name": "gp", "n_startup_trials": 2})
    tune, _ = load_tune_config(path)
    assert tune.pruner.name == "none"
    assert cli("tune", path)[0] == 0
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len({t.params["optim.lr"] for t in trials}) == 4
    path = write_study(tmp_path, sampler={"name": "gp"}, pruner={"name": "median"})
    code, _, err = cli("tune", path)
    assert code == 2 and "pruner: 'median' cannot go with sampler 'gp'" in err and len(err.strip().splitlines()) == 1


def test_successive_halving_counts_reports_when_trials_report_every_k_images(tmp_path):
    # Reports at 1,024, 2,048, 3,072 and 4,096 images: halving cuts after the 1st, 2nd and 4th report.
    # Counted in raw image steps, every rung up to 1,024 would be passed at the first report.
    path = write_study(tmp_path, n_trials=1, set=["train.epochs=1", "train.eval_every_images=1024"],
                       pruner={"name": "sha", "min_resource": 1, "reduction_factor": 2, "screen_startup": False})
    assert cli("tune", path)[0] == 0
    (trial,) = load(tmp_path).trials
    assert sorted(trial.intermediate_values) == [1024, 2048, 3072, 4096]
    assert sorted(k for k in trial.system_attrs if k.startswith("completed_rung_")) == [
        "completed_rung_0", "completed_rung_1", "completed_rung_2"]


def test_startup_screening_stops_the_random_start_up_trials_at_the_first_cut(tmp_path):
    # Two start-up trials that cannot learn (lr 1e-8, 2e-8), then a good one: the start-up trials stop
    # at the first report (a quarter of the 4,500 training images) whatever their values, halving
    # still records them at its first rung, and the good trial, best of the three there, trains to the end.
    path = write_study(tmp_path, n_trials=3, set=["train.epochs=3"],
                       sampler={"name": "tpe", "n_startup_trials": 2},
                       pruner={"name": "sha", "min_resource": 1, "reduction_factor": 2, "screen_startup": True},
                       space={"optim.lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}})
    tune, base = load_tune_config(path)
    study = open_study(tune, base)
    for lr in (1e-8, 2e-8, 3e-3):  # distinct: a repeated configuration would not be trained again
        study.enqueue_trial({"optim.lr": lr})
    optimize(study, tune, base)
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2 + [optuna.trial.TrialState.COMPLETE]
    assert [sorted(t.intermediate_values) for t in trials] == [[1125], [1125], list(range(1125, 13_501, 1125))]
    assert [t.user_attrs["images"] for t in trials] == [1280, 1280, 13_500]  # batches of 256
    assert all("completed_rung_0" in t.system_attrs for t in trials)


def test_startup_screening_with_another_pruner_or_sampler_is_one_line(tmp_path):
    for sampler, pruner in (("tpe", "median"), ("cmaes", "sha")):
        path = write_study(tmp_path, sampler={"name": sampler}, pruner={"name": pruner, "screen_startup": True})
        code, _, err = cli("tune", path)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert (f"pruner.screen_startup: goes with pruner 'sha' and sampler 'tpe' only, not '{pruner}' and "
                f"'{sampler}'") in err


def test_trials_report_four_times_an_epoch_by_default(tmp_path):
    # 4,500 training images: an evaluation (and a report) every 1,125; patience, checkpoint_every and
    # log.images_every count evaluations, so they are scaled to keep meaning the same epochs.
    path = write_study(tmp_path, n_trials=1, pruner={"name": "none"}, set=["train.patience=2"])
    assert cli("tune", path)[0] == 0
    (trial,) = load(tmp_path).trials
    assert sorted(trial.intermediate_values) == list(range(1125, 9001, 1125))
    assert trial.user_attrs["images"] == 9000
    run = yaml.safe_load((tmp_path / "runs" / "s" / "trial-0000" / "config.yaml").read_text())
    train = run["train"]
    assert (train["eval_every_images"], train["patience"], train["checkpoint_every"]) == (1125, 8, 4)
    assert run["log"]["images_every"] == 4
    events = EventAccumulator(str(tmp_path / "runs" / "s" / "trial-0000"))
    events.Reload()
    assert [e.step for e in events.Scalars("heldout/neg_elbo")] == [5, 9, 14, 18, 23, 27, 32, 36]
    assert [e.step for e in events.Images("samples/fixed_noise")] == [18, 36]  # a grid an epoch


def test_one_report_an_epoch_reports_epochs(tmp_path):
    path = write_study(tmp_path, n_trials=1, pruner={"name": "none"}, reports_per_epoch=1)
    assert cli("tune", path)[0] == 0
    assert sorted(load(tmp_path).trials[0].intermediate_values) == [1, 2]


def test_a_median_warm_up_counts_reports(tmp_path):
    # n_warmup_steps=2: no pruning at the first report (1,125 images), the poor trial stops at the second.
    path = write_study(tmp_path, n_trials=3, set=["train.epochs=1"],
                       pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
                       space={"optim.lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}})
    tune, base = load_tune_config(path)
    study = open_study(tune, base)
    for lr in (3e-3, 3e-3, 1e-8):
        study.enqueue_trial({"optim.lr": lr})
    optimize(study, tune, base)
    poor = load(tmp_path).trials[2]
    assert poor.state == optuna.trial.TrialState.PRUNED and sorted(poor.intermediate_values) == [1125, 2250]


def test_reports_per_epoch_beside_fixed_reports_is_one_line(tmp_path):
    cases = [({"set": ["train.eval_every_images=1000"]}, "the base sets train.eval_every_images=1000"),
             ({"cv_folds": 2}, "cross-validated trials report once per fold")]
    for extra, why in cases:
        path = write_study(tmp_path, reports_per_epoch=2, **extra)
        code, _, err = cli("tune", path)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"reports_per_epoch: {why}; leave reports_per_epoch out" in err
        assert not (tmp_path / "runs" / "s").exists()
