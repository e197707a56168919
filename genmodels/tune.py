"""Optuna studies over run configs: `genmodels tune CONFIG`.

Each trial is an ordinary training run in <runs_dir>/<study>/trial-NNNN/ (TensorBoard events,
config, metrics, checkpoints), scored on the held-out split only. Held-out values are reported
every epoch, so pruners stop bad trials early. The study lives in an Optuna storage (SQLite under
the study folder by default): rerunning the same command resumes it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import socket
import sys
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from genmodels.config import Config
from genmodels.data import DataSplits, Split, kfold_splits, load_data
from genmodels.errors import NonFiniteLossError
from genmodels.experiment import build
from genmodels.runtime import pick_device, setup_process
from genmodels.schema import set_dotted, validate
from genmodels.train import Callback, Trainer
from genmodels.tune_config import ParamSpec, TuneConfig, load_tune_config, with_params


def make_sampler(tune: TuneConfig) -> optuna.samplers.BaseSampler:
    s = tune.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler({k: spec.grid() for k, spec in tune.space.items()}, seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials, multivariate=True)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    return optuna.samplers.NSGAIISampler(seed=s.seed)


def make_pruner(tune: TuneConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    p = tune.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=max_epochs,
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if spec.type == "float":
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return trial.suggest_categorical(name, spec.choices)


class PruningCallback(Callback):
    """Reports a held-out metric to the trial after each epoch and stops the run if the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str, step_offset: int = 0):
        self.trial, self.metric, self.step_offset = trial, metric, step_offset

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        self.trial.report(value, self.step_offset + epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: heldout/{self.metric}={value:.4f}")


def trial_config(tune: TuneConfig, base: dict[str, Any], params: dict[str, Any], name: str) -> Config:
    """The run config of one trial: the base with the trial's parameters, in the study folder."""
    data = with_params(base, params, name)
    set_dotted(data, ["log", "runs_dir"], str(tune.study_dir()))
    return validate(Config, data, f"{tune.study_name}/{name}")


def objective_values(tune: TuneConfig, result: dict[str, Any]) -> list[float]:
    """The objectives at the run's best held-out epoch (the weights best.pt keeps)."""
    metrics = (result["best"] or {}).get("metrics") or result["heldout"]
    return [result["train_seconds"] if o == "train_seconds" else metrics[o] for o in tune.objectives]


class Objective:
    def __init__(self, tune: TuneConfig, base: dict[str, Any], quiet: bool = True):
        self.tune, self.base, self.quiet = tune, base, quiet
        self._data: dict[str, Any] = {}  # data splits shared by trials with the same data section

    def data_for(self, cfg: Config) -> DataSplits | list[DataSplits]:
        """Splits for a trial's (resolved) data section, loaded once per study and process."""
        d = cfg.data
        key = str((d.model_dump(), cfg.train.device, self.tune.cv_folds))
        if key not in self._data:
            device = pick_device(cfg.train.device)
            if self.tune.cv_folds:
                self._data[key] = kfold_splits(d, self.tune.cv_folds, device)
            else:
                self._data[key] = load_data(d, device)
        return self._data[key]

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        params = {key: suggest(trial, key, spec) for key, spec in self.tune.space.items()}
        name = f"trial-{trial.number:04d}"
        cfg = trial_config(self.tune, self.base, params, name)
        trial.set_user_attr("run_dir", str(cfg.run_dir()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        single = len(self.tune.objectives) == 1
        try:
            if self.tune.cv_folds:
                values = self._cross_validate(trial, cfg, single)
            else:
                callbacks = [PruningCallback(trial, self.tune.objectives[0])] if single else []
                result = build(cfg, data=self.data_for(cfg), callbacks=callbacks, quiet=self.quiet).fit()
                values = objective_values(self.tune, result)
                if result["best"]:
                    trial.set_user_attr("best_epoch", result["best"]["epoch"])
        except NonFiniteLossError as exc:
            # A diverged trial is a result, not a crash: recorded as failed, the study goes on.
            trial.set_user_attr("fail_reason", str(exc))
            return math.nan if single else [math.nan] * len(self.tune.objectives)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("prune_reason", str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        return values[0] if single else values

    def _cross_validate(self, trial: optuna.Trial, cfg: Config, single: bool) -> list[float]:
        """Mean of the objectives over k folds; after fold i the running mean of the first
        objective is reported at step i, so a pruner can stop a bad trial after one fold."""
        per_fold: list[list[float]] = []
        for i, splits in enumerate(self.data_for(cfg)):
            trainer = build(cfg, data=splits, run_dir=cfg.run_dir() / f"fold-{i}", quiet=self.quiet)
            per_fold.append(objective_values(self.tune, trainer.fit()))
            trial.set_user_attr("fold_values", [v[0] for v in per_fold])
            if single:
                trial.report(sum(v[0] for v in per_fold) / len(per_fold), i)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {i + 1} of {self.tune.cv_folds}")
        return [sum(col) / len(col) for col in zip(*per_fold)]


def open_study(tune: TuneConfig, storage: str | None = None, max_epochs: int = 1) -> optuna.Study:
    tune.study_dir().mkdir(parents=True, exist_ok=True)
    url = storage or tune.storage_url()
    if url.startswith("sqlite"):
        # Several worker processes share one SQLite file: wait for its lock instead of failing.
        url_storage: Any = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    else:
        url_storage = url
    return optuna.create_study(
        study_name=tune.study_name, storage=url_storage, load_if_exists=True,
        directions=tune.directions, sampler=make_sampler(tune), pruner=make_pruner(tune, max_epochs),
    )


def run_worker(config_path: str, overrides: list[str], storage: str | None, quiet: bool = True) -> None:
    """One worker process: pull trials from the shared study until n_trials exist in total."""
    setup_process()  # a spawned interpreter starts without it
    tune, base = load_tune_config(config_path, overrides)
    max_epochs = validate(Config, base, config_path).train.epochs
    study = open_study(tune, storage, max_epochs)
    optimize(study, tune, base, quiet)


def optimize(study: optuna.Study, tune: TuneConfig, base: dict[str, Any], quiet: bool = True) -> None:
    # Trials that ran or run count towards n_trials; enqueued (waiting) ones are still to come.
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    remaining = tune.n_trials - len(study.get_trials(deepcopy=False, states=counted))
    if remaining <= 0:
        return
    # MaxTrialsCallback caps the study's total across workers and reruns.
    study.optimize(Objective(tune, base, quiet), n_trials=remaining, timeout=tune.timeout, catch=(Exception,),
                   callbacks=[optuna.study.MaxTrialsCallback(tune.n_trials, states=counted)],
                   show_progress_bar=not quiet)


def tune_study(config_path: str, overrides: list[str] | None = None, storage: str | None = None,
               workers: int = 1, quiet: bool = False) -> tuple[optuna.Study, TuneConfig, dict[str, Any]]:
    """Create or resume the study and run trials until it holds n_trials, using `workers` processes."""
    overrides = overrides or []
    tune, base = load_tune_config(config_path, overrides)
    max_epochs = validate(Config, base, config_path).train.epochs
    study = open_study(tune, storage, max_epochs)
    procs = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
        procs = [ctx.Process(target=run_worker, args=(str(config_path), overrides, storage, True))
                 for _ in range(workers - 1)]
        for p in procs:
            p.start()
    try:
        optimize(study, tune, base, quiet)
    finally:
        for p in procs:
            p.join()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        print(f"genmodels: warning: {len(failed)} of {workers - 1} extra worker processes exited with "
              f"codes {failed}; the study holds what the others finished", file=sys.stderr)
    return study, tune, base


def retrain_best(study: optuna.Study, tune: TuneConfig, base: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """Train the best trial's config on the whole training split (train + held-out) for the epoch
    count that was best on held-out, then score the test split: the study's only test-split read."""
    best = study.best_trial
    cfg = trial_config(tune, base, best.params, "best-retrained")
    epochs = best.user_attrs.get("best_epoch") or cfg.train.epochs
    cfg.train.epochs, cfg.train.patience = int(epochs), None
    splits = load_data(cfg.data, pick_device(cfg.train.device))
    full = DataSplits(
        train=Split(torch.cat([splits.train.images, splits.heldout.images]),
                    torch.cat([splits.train.labels, splits.heldout.labels])),
        heldout=splits.heldout,  # now seen in training: its curve is for reference only
        test=splits.test, name=splits.name,
    )
    shutil.rmtree(cfg.run_dir(), ignore_errors=True)  # a rerun retrains from scratch, same seed
    trainer = build(cfg, data=full, quiet=quiet)
    trainer.fit()
    test = trainer.evaluate("test", full=True)
    return {"trial": best.number, "params": best.params, "epochs": int(epochs), "train_images": len(full.train),
            "run_dir": str(trainer.run_dir), "test": test,
            "features": trainer.scorer.name if trainer.scorer and trainer.scorer.loaded else None}

