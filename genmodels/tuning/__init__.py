"""Tuning with Optuna, one module per role:

    config     the tuning YAML (search space, sampler, pruner, objectives) and its up-front checks
    search     samplers and pruners built from it, and start-up screening
    storage    the study's storage (SQLite or a database server), checked when opened
    objective  one trial: a normal training run scored on the held-out split, reporting to its pruner
    study      the `genmodels tune` command: the study's workers, retries, exactly n_trials trials
    retrain    the best config retrained on train + held-out and scored on the test split
    report     best parameters, trials.csv, plots and a markdown summary
"""

from genmodels.tuning.config import TuneConfig, load_tune_config
from genmodels.tuning.report import write_report
from genmodels.tuning.retrain import retrain_best
from genmodels.tuning.study import open_study, optimize, tune_study

__all__ = ["TuneConfig", "load_tune_config", "open_study", "optimize", "retrain_best", "tune_study", "write_report"]
