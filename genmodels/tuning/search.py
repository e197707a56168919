"""How a study searches: its sampler and pruner built from the tuning config, each worker's
sampler seed, and start-up screening (the sampler's random start-up trials stop at the pruner's
first cut).

Screening: a start-up trial's values are drawn at random, not from what the study has learnt, so training it
to the end mostly buys a finished poor trial. Stopped at the first cut it still teaches TPE: Optuna's
TPE ranks pruned trials by their last report, and one report already ranks trials well on the VAE
space (Spearman 0.86 between epoch-1 and epoch-5 held-out -ELBO over 80 random trials). This is the
lowest-fidelity bracket of Hyperband/BOHB, spent on exploration only.
"""

from __future__ import annotations

import socket
import warnings
import zlib

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from genmodels.tuning.config import TuneConfig


def sampler_seed(study_seed: int, trials_at_start: int, worker: int) -> int:
    """A seed of its own for each worker and each rerun, derived from the study's seed: two
    samplers never draw the same start-up configurations. The same study, machine and worker
    index give the same seed, so a single-process study is reproducible."""
    host = zlib.crc32(socket.gethostname().encode())
    return int(np.random.SeedSequence([study_seed, trials_at_start, worker, host]).generate_state(1)[0])


def make_sampler(tune: TuneConfig, seed: int, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """The study's sampler. `parallel`: other workers run trials at the same time, so TPE treats
    their running trials as if they had scored badly (the constant liar) instead of sampling
    next to them."""
    s = tune.sampler
    startup = s.startup_trials(len(tune.space))
    if s.name == "grid":
        return optuna.samplers.GridSampler({k: spec.grid() for k, spec in tune.space.items()}, seed=seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                              constant_liar=parallel)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.NSGAIISampler(seed=seed)


def make_pruner(tune: TuneConfig, max_epochs: int, report_every: int | None = None) -> optuna.pruners.BasePruner:
    """The study's pruner. Trials report at steps in epochs, or in images seen every
    `report_every` images (reports_per_epoch, or the base's train.eval_every_images): warm-ups and
    resources count reports, so they are scaled to the step's unit (a first cut at "1" image
    would otherwise run every rung at a trial's first report)."""
    p = tune.pruner
    unit = report_every or 1
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps * unit)
    if p.name == "percentile":
        return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.n_startup_trials,
                                               n_warmup_steps=p.n_warmup_steps * unit)
    if p.name == "sha":
        sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource * unit,
                                                     reduction_factor=p.reduction_factor)
        if p.screens(tune.sampler.name):
            return StartupScreening(sha, tune.sampler.startup_trials(len(tune.space)), first_cut=p.min_resource * unit)
        return sha
    if p.name == "hyperband":
        # A trial's last image step depends on the data size: estimated from the first finished trial.
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource * unit,
                                              max_resource=max_epochs if report_every is None else "auto",
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


class StartupScreening(optuna.pruners.BasePruner):
    """Wraps `pruner`; a trial sampled while fewer than `n_startup_trials` trials had finished (TPE's
    own rule for drawing at random) is pruned once it reports at step `first_cut` or later. The
    wrapped pruner still sees every report first, so successive halving records the start-up
    trials' values at its first rung and later trials compete with them, as without screening."""

    def __init__(self, pruner: optuna.pruners.BasePruner, n_startup_trials: int, first_cut: int):
        self._pruner = pruner
        self._n_startup_trials = n_startup_trials
        self._first_cut = first_cut

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._pruner.prune(study, trial):
            return True
        step = trial.last_step
        return step is not None and step >= self._first_cut and self._is_startup(study, trial)

    def _is_startup(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        # Finished trials numbered before this one are those the sampler counted when it drew this
        # trial's values (exactly so in one process; close to it with workers running side by side).
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return sum(t.number < trial.number for t in finished) < self._n_startup_trials
