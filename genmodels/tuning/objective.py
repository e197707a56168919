"""The trial objective: one trial of a study, which `genmodels tune CONFIG` (genmodels.tuning.study) runs.

Each trial is an ordinary training run in <runs_dir>/<study>/trial-NNNN/ (TensorBoard events,
config, metrics, checkpoints), scored on the held-out split only. Held-out values are reported
several times an epoch (reports_per_epoch), so pruners stop bad trials early. A trial that
repeats a dead or interrupted one continues from that trial's last checkpoint.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from genmodels.config import Config
from genmodels.data import DataSplits, kfold_splits, load_data
from genmodels import distributed
from genmodels.errors import Interrupted, NonFiniteLossError, RunFailed, UserError
from genmodels.callbacks import Callback, Loop
from genmodels.experiment import build
from genmodels.recorder import HParams
from genmodels.run_state import FitResult
from genmodels.runtime import pick_device
from genmodels.schema import set_dotted, validate
from genmodels.strategy import RunStopped
from genmodels.tuning.config import ParamSpec, TuneConfig, with_params


def suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if spec.type == "float":
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return spec.value(trial.suggest_categorical(name, spec.labels()))


class PruningCallback(Callback):
    """Reports the trial's objective to its pruner after each held-out evaluation, at a step all
    trials share (the epoch, or the images seen in multiples of train.eval_every_images, so
    trials with other batch sizes meet at the same steps), and stops the run if the pruner says
    so; a stopped trial records the images it trained (`images`, as a finished one does). With
    report='best' the best value so far is reported: a GAN's FID swings from one evaluation to the
    next, and a pruner reading raw values stops good trials on a bad one."""

    def __init__(self, trial: optuna.Trial, metric: str, direction: str, report: str = "last"):
        self.trial, self.metric, self.report = trial, metric, report
        self.better = min if direction == "minimize" else max
        self.best: float | None = None
        self.last_step = -1

    def on_fit_start(self, trainer: Loop) -> None:
        for h in trainer.state.history:  # a retried trial continues where its checkpoint left off
            self._track(h[self.metric])

    def _track(self, value: float) -> float:
        self.best = value if self.best is None else self.better(self.best, value)
        return self.best if self.report == "best" else value

    def on_evaluation(self, trainer: Loop, metrics: dict[str, float]) -> None:
        every, state = trainer.cfg.train.eval_every_images, trainer.state
        step = state.epoch if every is None else state.images_seen // every * every
        value = self._track(metrics[self.metric])
        if step <= self.last_step:  # a final evaluation between two report steps
            return
        self.trial.report(value, step)
        self.last_step = step
        if self.trial.should_prune():
            self.trial.set_user_attr("images", state.images_seen)
            where = f"epoch {step}" if every is None else f"{step:,} images"
            raise optuna.TrialPruned(f"pruned after {where}: heldout/{self.metric}={metrics[self.metric]:.4f}")


def trial_config(tune: TuneConfig, base: dict[str, Any], params: dict[str, Any], name: str) -> Config:
    """The run config of one trial: the base with the trial's parameters, in the study folder."""
    data = with_params(base, params, name, tune)
    set_dotted(data, ["log", "runs_dir"], str(tune.study_dir()))
    return validate(Config, data, f"{tune.study_name}/{name}")


def objective_values(tune: TuneConfig, result: FitResult) -> list[float]:
    """The objectives at the run's best held-out evaluation (the weights best.pt keeps)."""
    metrics = result.best_metrics()
    return [result.train_seconds if o == "train_seconds" else metrics[o] for o in tune.objectives]


def counts_towards_n_trials(t: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count, and so do running and queued ones (they will finish). A failed
    trial counts when the failure is its result (a diverged or broken config, `fail_reason`);
    one whose worker died or was interrupted does not: it is retried instead."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return t.state == TrialState.FAIL and "fail_reason" in t.user_attrs


class Objective:
    def __init__(self, tune: TuneConfig, base: dict[str, Any], quiet: bool = True):
        self.tune, self.base, self.quiet = tune, base, quiet
        self.interrupted: Interrupted | None = None  # set when a signal stopped the last trial
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
        single = len(self.tune.objectives) == 1
        failed = math.nan if single else [math.nan] * len(self.tune.objectives)
        if self._study_full(trial):
            return failed
        params = {key: suggest(trial, key, spec) for key, spec in self.tune.space.items()}
        earlier = trial.user_attrs.get("run_dir")  # set when this trial retries a dead or interrupted one
        cfg = trial_config(self.tune, self.base, params, Path(earlier).name if earlier else f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", str(cfg.run_dir()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        same = self._same_params(trial, trial.params)
        if same is not None:  # small discrete spaces: no second training of one configuration
            trial.set_user_attr("duplicate_of", same.number)
            if same.state == TrialState.PRUNED:
                raise optuna.TrialPruned(f"same parameters as trial {same.number}, which was pruned")
            return same.values[0] if single else same.values
        try:
            values = self._run(trial, cfg, single, resume=bool(earlier))
        except Interrupted as exc:
            # Not a result: the trial is failed (not counted) and queued again, to continue from
            # the checkpoint the Trainer just wrote; the signal ends this worker after it.
            trial.set_user_attr("interrupted", f"signal {exc.signum}")
            self.interrupted = exc
            # Optuna's own record of the parameters (a list-valued choice as its label), which is
            # what a queued trial's suggest_* calls must find, not the values the config got.
            trial.study.enqueue_trial(dict(trial.params), user_attrs={"run_dir": str(cfg.run_dir()),
                                                                      "retry_of": trial.number})
            return failed
        except NonFiniteLossError as exc:
            # A diverged trial is a result, not a crash: recorded as failed, the study goes on.
            trial.set_user_attr("fail_reason", str(exc))
            return failed
        except UserError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            return failed
        except optuna.TrialPruned as exc:
            trial.set_user_attr("prune_reason", str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        return values[0] if single else values

    def _study_full(self, trial: optuna.Trial) -> bool:
        """Workers start trials concurrently: the one whose number comes after the study's
        n_trials-th counted trial steps back (failed, not counted) and stops its worker."""
        earlier = [t for t in trial.study.get_trials(deepcopy=False)
                   if t.number < trial.number and counts_towards_n_trials(t)]
        if len(earlier) < self.tune.trial_budget():
            return False
        trial.set_user_attr("interrupted", f"the study already has its {self.tune.trial_budget()} trials")
        trial.study.stop()
        return True

    @staticmethod
    def _same_params(trial: optuna.Trial, params: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return next((t for t in trial.study.get_trials(deepcopy=False, states=states) if t.params == params), None)

    def _run(self, trial: optuna.Trial, cfg: Config, single: bool, resume: bool) -> list[float]:
        if self.tune.cv_folds:
            return self._cross_validate(trial, cfg, single)
        pruning = PruningCallback(trial, self.tune.objectives[0], self.tune.directions[0], self.tune.pruner.report)
        callbacks = [pruning] if single else []
        last = cfg.run_dir() / "last.pt"
        continuing = resume and last.is_file()
        if resume:
            trial.set_user_attr("retry", "continued from its last checkpoint" if continuing
                                else "restarted: no checkpoint of the earlier attempt was found")
        distributed.broadcast((cfg.to_dict(), continuing))  # under torchrun: the other ranks train it too
        # TensorBoard's HParams table of a study: the searched fields (the columns that differ)
        # and the objectives, not every constant field of the config; in the space's order, which
        # is the user's (trial.params follows the sampler's order).
        hparams = HParams({k: "none" if trial.params[k] is None else trial.params[k]
                           for k in self.tune.space if k in trial.params}, list(self.tune.objectives))
        result = build(cfg, data=self.data_for(cfg), callbacks=callbacks, quiet=self.quiet, resume=continuing,
                       hparams=hparams).fit()
        trial.set_user_attr("images", result.images_seen)
        if result.features:  # the extractor behind the trial's FID: every value names it
            trial.set_user_attr("features", result.features)
        if result.best:
            trial.set_user_attr("best_epoch", result.best["epoch"])
            trial.set_user_attr("best_images", result.best.get("images"))
        return objective_values(self.tune, result)

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


def follow(tune: TuneConfig, base: dict[str, Any], quiet: bool = True) -> None:
    """Ranks other than 0 of a study under torchrun: train each trial rank 0 announces, with it,
    until it announces the end. Rank 0 owns the Optuna trial; its pruner's decisions reach the
    other ranks through the Trainer."""
    objective = Objective(tune, base, quiet)
    while (announced := distributed.broadcast(None)) is not None:
        config, resume = announced
        cfg = validate(Config, config, f"{tune.study_name} (from rank 0)")
        try:
            build(cfg, data=objective.data_for(cfg), quiet=True, resume=resume).fit()
        except (RunStopped, RunFailed):
            continue  # rank 0 records why; the next trial follows
