"""Studies over many processes: PostgreSQL and SQLite storages with real servers and real workers,
dead workers noticed and their trials continued, no process left behind."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from genmodels.checkpoint import load_checkpoint

from conftest import cli, data_root
from pgcluster import free_port

TINY = {"seed": 0, "data": {"name": "mnist", "limit": 300},
        "model": {"kind": "vae", "hidden": 16, "latent_dim": 2},
        "train": {"epochs": 1, "batch_size": 128}, "log": {"n_images": 4}}


def write(tmp_path, n_trials, base=None, **tune):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or TINY))
    cfg = {"base": "base.yaml", "study_name": "s", "runs_dir": str(tmp_path / "runs"), "n_trials": n_trials,
           "sampler": {"name": "random"}, "pruner": {"name": "none"},
           "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}, **tune}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def start(*args):
    env = {**os.environ, "GENMODELS_DATA": data_root()}
    return subprocess.Popen([sys.executable, "-m", "genmodels", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_four_workers_on_postgresql_finish_exactly_n_trials(tmp_path, postgres_url):
    path = write(tmp_path, n_trials=100, study_name="pg100")
    code, out, err = cli("tune", path, "--quiet", "--workers", "4", "--storage", postgres_url)
    assert code == 0, err
    trials = optuna.load_study(study_name="pg100", storage=postgres_url).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 100 and not [t for t in trials if t.state == TrialState.RUNNING]
    assert len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["worker"] for t in finished}) == 4  # all four took part
    assert "study pg100: " in out


@pytest.mark.parametrize("problem, message", [
    ("unreachable", "cannot open the study storage"),
    ("password", "cannot open the study storage"),
    ("driver", "the database driver is not installed (psycopg2)"),
])
def test_storage_problems_are_one_line_before_any_trial(tmp_path, postgres_url, problem, message):
    url = {"unreachable": f"postgresql://postgres:x@127.0.0.1:{free_port()}/studies",
           "password": postgres_url.replace("tuning-secret", "wrong"),
           "driver": postgres_url.replace("postgresql://", "postgresql+psycopg2://")}[problem]
    code, _, err = cli("tune", write(tmp_path, 2), "--storage", url)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert "tuning-secret" not in err and not (tmp_path / "runs" / "s" / "trial-0000").exists()


def test_two_workers_on_sqlite_never_see_a_locked_database(tmp_path):
    code, _, err = cli("tune", write(tmp_path, 12), "--quiet", "--workers", "2")
    assert code == 0, err
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}").trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 12
    assert "database is locked" not in err and not [t for t in trials if "fail_reason" in t.user_attrs]


def test_a_killed_worker_s_trial_continues_from_its_checkpoint(tmp_path):
    base = {**TINY, "data": {"name": "mnist", "limit": 2000}, "train": {"epochs": 40, "batch_size": 32}}
    path = write(tmp_path, 4, base=base)
    proc = start("tune", path, "--quiet", "--workers", "2")
    deadline = time.monotonic() + 180
    storage = f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}"
    victim = None
    while victim is None:  # the worker process's trial, once it has saved a checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
        try:
            running = optuna.load_study(study_name="s", storage=storage).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study is still being created
            continue
        for t in running:
            pid = int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if pid in children(proc.pid) and (tmp_path / "runs" / "s" / f"trial-{t.number:04d}" / "last.pt").exists():
                victim = (t.number, pid)
    number, pid = victim
    done = load_checkpoint(tmp_path / "runs" / "s" / f"trial-{number:04d}" / "last.pt").epoch
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[number].state == TrialState.FAIL
    retry = next(t for t in trials if t.number != number and t.user_attrs["run_dir"].endswith(f"trial-{number:04d}"))
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry"] == "continued from its last checkpoint"
    assert min(retry.intermediate_values) > done  # the epochs done before the kill were not trained again
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 4


def test_sigterm_to_a_study_with_workers_leaves_no_process_and_no_running_trial(tmp_path):
    base = {**TINY, "data": {"name": "mnist", "limit": 2000}, "train": {"epochs": 30, "batch_size": 32}}
    proc = start("tune", write(tmp_path, 6, base=base), "--quiet", "--workers", "2")
    deadline = time.monotonic() + 180
    while len(list((tmp_path / "runs" / "s").glob("trial-*/last.pt"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    family = [proc.pid, *children(proc.pid)]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143 and time.monotonic() - sent < 10
    time.sleep(1)
    assert not [p for p in family if alive(p)]
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}").trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def _open(url):
    from genmodels.tuning.storage import open_storage
    open_storage(url)
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_opening_an_empty_storage_together(tmp_path, kind, request):
    """Workers started at the same moment on a new storage (workers on several machines, or a
    dashboard opened first) all open it: the first one creates Optuna's tables, the others wait."""
    import multiprocessing
    url = f"sqlite:///{tmp_path / 'new.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    if kind == "postgresql":  # a database no study has used yet
        engine = __import__("sqlalchemy").create_engine(url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("CREATE DATABASE fresh")
        engine.dispose()
        url = url.rsplit("/", 1)[0] + "/fresh"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open, [url] * 4) == [url] * 4
