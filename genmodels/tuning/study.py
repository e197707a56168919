"""The study command (`genmodels tune`): an Optuna study's life: its storage (checked before the
first trial), sampler and pruner, the worker processes that share it, exactly `n_trials` finished
trials, and the trials of workers that died or were interrupted retried from their own checkpoints.

Optuna does the work: RDB storages (SQLite, PostgreSQL) with heartbeats, the stale-trial retry
callback, and `study.optimize`. This module decides how many trials to run and when to stop.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import warnings
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from genmodels import distributed
from genmodels.config import Config
from genmodels.errors import Interrupted, UserError
from genmodels.runtime import setup_process, signals_interrupt, threads_per_process
from genmodels.schema import validate
from genmodels.tuning.config import TuneConfig, load_tune_config
from genmodels.tuning.objective import Objective, counts_towards_n_trials, follow
from genmodels.tuning.search import make_pruner, make_sampler, sampler_seed
from genmodels.tuning.storage import RETRY, open_storage

POLL = 2.0  # seconds between looks at other workers' running trials


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- the study and its trials ---------------------------------------------------------------


def open_study(tune: TuneConfig, base: dict[str, Any], storage: str | None = None, worker: int = 0,
               parallel: bool = False) -> optuna.Study:
    """Create or load the study of `tune` over `base` (the two as load_tune_config returns them):
    the base's train.epochs and train.eval_every_images set the pruner's resources. `parallel`:
    other workers share it (local ones, or any on a database server)."""
    train = validate(Config, base, tune.study_name).train
    tune.study_dir().mkdir(parents=True, exist_ok=True)
    url = storage or tune.storage_url()
    rdb = open_storage(url)
    try:
        existing = len(rdb.get_all_trials(rdb.get_study_id_from_name(tune.study_name), deepcopy=False))
    except KeyError:
        existing = 0
    return optuna.create_study(
        study_name=tune.study_name, storage=rdb, load_if_exists=True, directions=tune.directions,
        sampler=make_sampler(tune, sampler_seed(tune.sampler.seed, existing, worker),
                             parallel or not url.startswith("sqlite")),
        pruner=make_pruner(tune, train.epochs, train.eval_every_images),
    )


# --- which trials count ----------------------------------------------------------------------


def finished(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if t.state.is_finished() and counts_towards_n_trials(t))


def fail_dead_local_trials(study: optuna.Study) -> None:
    """Running trials of worker processes on this machine that no longer exist (killed, crashed)
    are failed and queued for a retry now, without waiting for the heartbeat's grace period."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if where != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first ("cannot tell a FAIL trial", or a lost race)
        retry_trial(study, t)


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue `trial` again with its parameters and run folder (so it continues from its last
    checkpoint), at most MAX_RETRY times: what the storage's heartbeat does for a silent trial."""
    RETRY(study, trial)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- a worker ----------------------------------------------------------------------------------


def optimize(study: optuna.Study | None, tune: TuneConfig, base: dict[str, Any], quiet: bool = True) -> None:
    """Run trials until the study holds n_trials finished ones (or the timeout passes).

    One trial at a time: before each, trials of dead workers are failed and queued again, and
    when the remaining trials are all running elsewhere this worker waits for them, so a retry
    after a crash is picked up and the study ends with exactly n_trials finished trials. Under
    torchrun only rank 0 has the study; the other ranks train the trials it announces.
    """
    if not distributed.is_main():
        follow(tune, base, quiet)
        return
    objective = Objective(tune, base, quiet)
    start = time.monotonic()
    with signals_interrupt():
        _trials(study, tune, objective, start)
    # Under torchrun: the other ranks are done too. (Should rank 0 fail instead, torchrun ends them.)
    distributed.broadcast(None)


def _trials(study: optuna.Study, tune: TuneConfig, objective: Objective, start: float) -> None:
    while tune.timeout is None or time.monotonic() - start < tune.timeout:
        fail_dead_local_trials(study)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if finished(trials) >= tune.trial_budget():
            return
        queued = [t for t in trials if t.state == TrialState.WAITING]
        if sum(counts_towards_n_trials(t) for t in trials) >= tune.trial_budget() and not queued:
            time.sleep(POLL)  # the rest are running in other workers: wait for them, or their retries
            continue
        study.optimize(objective, n_trials=1, catch=(Exception,))
        if objective.interrupted is not None:
            raise objective.interrupted


def run_worker(config_path: str, overrides: list[str], storage: str | None, index: int, threads: int,
               device: str | None = None, quiet: bool = True) -> None:
    """A worker process: opens the study and runs trials; ends when its parent does."""
    if device is not None:  # before anything touches CUDA: this worker sees its own GPU only
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    setup_process(threads)  # a spawned interpreter starts without it
    _exit_with_parent(os.getppid())
    tune, base = load_tune_config(config_path, overrides)
    try:
        optimize(open_study(tune, base, storage, worker=index, parallel=True), tune, base, quiet)
    except KeyboardInterrupt as exc:
        sys.exit(exc.exit_code if isinstance(exc, Interrupted) else 130)


def _exit_with_parent(parent: int) -> None:
    """SIGTERM ourselves when the parent process is gone (killed with SIGKILL, say): no orphans."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def tune_study(config_path: str, overrides: list[str] | None = None, storage: str | None = None,
               workers: int = 1, quiet: bool = False, devices: list[str] | None = None
               ) -> tuple[optuna.Study | None, TuneConfig, dict[str, Any]]:
    """Create or resume the study and run trials until it holds n_trials, using `workers` processes
    (worker i on GPU devices[i % len(devices)] when devices are given)."""
    overrides = overrides or []
    if distributed.world_size() > 1 and devices:
        # torch.cuda.set_device(devices[0]) would put every rank on that one GPU.
        raise UserError("--devices: under torchrun each rank trains on the GPU of its local rank; leave --devices "
                        "out (or choose GPUs with CUDA_VISIBLE_DEVICES)")
    if devices and not torch.cuda.is_available():
        raise UserError(f"--devices {','.join(devices)}: no CUDA device is available here")
    if devices and any(not d.isdigit() or int(d) >= torch.cuda.device_count() for d in devices):
        raise UserError(f"--devices {','.join(devices)}: expected GPU indices below {torch.cuda.device_count()}")
    tune, base = load_tune_config(config_path, overrides)
    if distributed.world_size() > 1 and workers > 1:
        raise UserError("--workers: under torchrun each trial already spans the launched processes; use one or "
                        "the other")
    if distributed.world_size() > 1 and tune.cv_folds:
        raise UserError("cv_folds: cross-validated trials run as one process each; use --workers instead of torchrun")
    if not distributed.is_main():  # under torchrun rank 0 owns the study; this rank trains its trials
        follow(tune, base, quiet)
        return None, tune, base
    study = open_study(tune, base, storage, worker=0, parallel=workers > 1)
    procs = []
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
    threads, caller_threads = threads_per_process(workers), torch.get_num_threads()
    if workers > 1:  # N processes with all cores' threads each would fight over the cores
        torch.set_num_threads(threads)
    if devices:
        torch.cuda.set_device(int(devices[0]))
    try:
        for index in range(1, workers):
            device = devices[index % len(devices)] if devices else None
            procs.append(ctx.Process(target=run_worker, args=(str(config_path), overrides, storage, index,
                                                              threads, device, True)))
            procs[-1].start()
        optimize(study, tune, base, quiet)
        for p in procs:
            p.join()
    finally:
        _stop(procs)
        # A caller in Python (a notebook, a test) trains on afterwards with its own thread count:
        # thread counts change float summation order, so bitwise results depend on it.
        torch.set_num_threads(caller_threads)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        print(f"genmodels: warning: {len(failed)} of {workers - 1} extra worker processes exited with "
              f"codes {failed}; the study holds what the others finished", file=sys.stderr)
    return study, tune, base


def _stop(procs: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to workers still running (each saves its trial's state), then wait; SIGKILL stragglers."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 20
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()

