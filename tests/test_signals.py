"""Real signals to real `genmodels` processes: SIGTERM saves and stops, SIGKILL loses no trial."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genmodels.checkpoint import load_checkpoint

from conftest import cli, data_root, serve, tiny_config
from pgcluster import free_port

TRIAL_BASE = {"seed": 0, "data": {"name": "mnist", "limit": 2000},
              "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
              "train": {"epochs": 6, "batch_size": 32}, "log": {"n_images": 4}}


def start(*args, **kw):
    env = {**os.environ, "GENMODELS_DATA": data_root()}
    return subprocess.Popen([sys.executable, "-m", "genmodels", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def stop(proc, signum, timeout=10):
    """Send `signum`; the seconds until the process exited (it must within `timeout`)."""
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=timeout + 5)
    took = time.monotonic() - sent
    assert took <= timeout, f"took {took:.1f}s"
    return proc.returncode, out, err


def test_sigterm_during_training_saves_and_resumes_exactly(tmp_path):
    cfg = tiny_config(tmp_path, "name=run", "train.epochs=4", "train.batch_size=16", "train.log_every=1")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    straight = cli("train", str(path), "--quiet", "--name", "straight")
    assert straight[0] == 0, straight[2]

    proc = start("train", str(path))
    run = tmp_path / "runs" / "run"
    wait_for(run / "last.pt", proc)  # one epoch done: the interrupt lands mid-run
    time.sleep(0.3)
    code, _, err = stop(proc, signal.SIGTERM)
    assert code == 143, err
    assert "stopped by signal 15" in err and "Traceback" not in err
    saved = load_checkpoint(run / "last.pt")
    events = EventAccumulator(str(run))
    events.Reload()
    logged = max(e.step for e in events.Scalars("train/loss"))
    assert saved.step == logged and 0 < saved.epoch < 4  # the checkpoint is at the step it stopped

    resumed = cli("train", str(path), "--quiet", "--resume")
    assert resumed[0] == 0, resumed[2]
    a = load_checkpoint(tmp_path / "runs" / "straight" / "last.pt").model
    b = load_checkpoint(run / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def write_tune(tmp_path, n_trials, sampler="random", space=None, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TRIAL_BASE))
    space = space or {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    cfg = {"base": "base.yaml", "study_name": "s", "runs_dir": str(tmp_path / "runs"), "n_trials": n_trials,
           "sampler": {"name": sampler, "seed": 0, "n_startup_trials": 10}, "pruner": {"name": "none"},
           "space": space, **extra}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def trials(tmp_path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}").trials


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_study_reruns_to_exactly_n_trials(tmp_path, signum):
    # a list-valued choice too: the retried trial must be queued with Optuna's label of it
    path = write_tune(tmp_path, n_trials=3, space={
        "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "optim.betas": {"type": "categorical", "choices": [[0.9, 0.999], [0.5, 0.999]]}})
    proc = start("tune", str(path), "--quiet")
    wait_for(tmp_path / "runs" / "s" / "trial-0001" / "last.pt", proc)  # trial 1 is mid-run
    code, _, err = stop(proc, signum)
    assert code == (143 if signum == signal.SIGTERM else -9), err
    if signum == signal.SIGTERM:
        assert not [t for t in trials(tmp_path) if t.state == TrialState.RUNNING]
        assert trials(tmp_path)[1].user_attrs["interrupted"] == "signal 15"
    done_before = load_checkpoint(tmp_path / "runs" / "s" / "trial-0001" / "last.pt").images_seen

    code, out, err = cli("tune", str(path), "--quiet")
    assert code == 0, err
    final = trials(tmp_path)
    assert not [t for t in final if t.state == TrialState.RUNNING]
    complete = [t for t in final if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    retry = next(t for t in complete if t.user_attrs["run_dir"].endswith("trial-0001") and t.number != 1)
    assert retry.params == final[1].params and retry.user_attrs["retry"] == "continued from its last checkpoint"
    trial_dir = tmp_path / "runs" / "s" / "trial-0001"
    history = json.loads((trial_dir / "metrics.json").read_text())["history"]
    # 6 epochs of 4 evaluations (the default reports_per_epoch), none repeated or missing across the stop
    epochs = [h["epoch"] for h in history]
    assert len(epochs) == 24 and epochs == sorted(set(epochs)) and epochs[-1] == 6 and done_before >= 2000
    events = EventAccumulator(str(trial_dir))
    events.Reload()
    assert len(events.Scalars("heldout/neg_elbo")) == 24
    # the continued trial ends with bitwise the weights of the same config trained without a stop
    cfg = yaml.safe_load((trial_dir / "config.yaml").read_text())
    cfg["log"]["runs_dir"] = str(tmp_path / "again")
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(cfg))
    assert cli("train", str(tmp_path / "again.yaml"), "--quiet")[0] == 0
    a = load_checkpoint(trial_dir / "last.pt").model
    b = load_checkpoint(tmp_path / "again" / "trial-0001" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_workers_and_reruns_draw_different_configurations(tmp_path):
    path = write_tune(tmp_path, n_trials=4, sampler="tpe", set=["train.epochs=2"])
    code, _, err = cli("tune", str(path), "--quiet")  # one worker; then two more, then a rerun
    assert code == 0, err
    from genmodels.tuning.study import tune_study

    tune_study(str(path), ["n_trials=8"], workers=2, quiet=True)
    tune_study(str(path), ["n_trials=10"], quiet=True)
    drawn = [tuple(sorted(t.params.items())) for t in trials(tmp_path) if t.state == TrialState.COMPLETE]
    assert len(drawn) == 10 and len(set(drawn)) == 10  # all start-up trials: TPE starts after 10


def test_sigterm_stops_the_dashboard_while_a_request_is_being_answered(tmp_path):
    # wsgiref answers 500 to any exception raised while it handles a request, KeyboardInterrupt
    # included: a signal handled in the thread that serves was swallowed, and the server went on.
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    port = free_port()
    proc = serve([sys.executable, "-m", "genmodels", "dashboard", str(tmp_path), "--port", str(port)],
                 f"http://127.0.0.1:{port}/api/studies")
    with socket.create_connection(("127.0.0.1", port)) as held:
        # A request whose body never finishes: the dashboard's handler waits reading it.
        held.sendall(b"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill()
            proc.communicate()
