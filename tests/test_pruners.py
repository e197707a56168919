"""Start-up screening around Optuna's own pruners, on real studies with a real TPE sampler."""

import optuna
from optuna.trial import TrialState

from genmodels.tuning.search import StartupScreening


def run(pruner, n_trials=8):
    # x is the trial's quality; each trial reports x at steps 1-4 and returns it.
    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 5):
            trial.report(x, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3), pruner=pruner)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)
    return study.trials


def test_start_up_trials_stop_at_the_first_cut_and_later_ones_follow_the_wrapped_pruner():
    trials = run(StartupScreening(optuna.pruners.NopPruner(), n_startup_trials=3, first_cut=2))
    assert [t.state for t in trials[:3]] == [TrialState.PRUNED] * 3
    assert [sorted(t.intermediate_values) for t in trials[:3]] == [[1, 2]] * 3
    assert all(t.state == TrialState.COMPLETE for t in trials[3:])


def test_the_wrapped_pruner_sees_start_up_trials_and_still_prunes_later_ones():
    sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    trials = run(StartupScreening(sha, n_startup_trials=3, first_cut=1), n_trials=20)
    assert all("completed_rung_0" in t.system_attrs for t in trials[:3])
    later = trials[3:]
    assert {TrialState.PRUNED, TrialState.COMPLETE} <= {t.state for t in later}
    assert all(len(t.intermediate_values) < 4 for t in later if t.state == TrialState.PRUNED)


def test_no_start_up_trials_screens_nothing():
    trials = run(StartupScreening(optuna.pruners.NopPruner(), n_startup_trials=0, first_cut=1))
    assert all(t.state == TrialState.COMPLETE for t in trials)
