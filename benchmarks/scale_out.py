"""Scale-out: how far one study storage and one machine's processes go.

1. Studies: tiny trials (a 1-epoch VAE on 300 images) run by 1, 2 and 4 worker processes, each
   the code path of `genmodels tune --workers` (genmodels.tuning.study.optimize), on SQLite and on a
   local PostgreSQL; trials per hour, and the SQL statements each trial costs (counted in every
   worker with SQLAlchemy's cursor events).
2. The storage alone: 32 light processes, each creating trials and reporting 100 intermediate
   values to each, against the local PostgreSQL: storage operations per second as processes
   are added, to show where the database saturates.
3. A run over processes: `torchrun --nproc_per_node 2` against one process for the MLP VAE of
   experiments/vae_mnist.yaml (images/s) and the bytes all-reduced per optimizer step for it and
   for the DCGAN of experiments/dcgan_fashion.yaml.

Writes benchmarks/results/scale_out.json. A documented run, not CI (about 15 minutes here):

    GENMODELS_DATA=../shared/datasets python benchmarks/scale_out.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy
import yaml

from common import write_result
from genmodels.config import load_config
from genmodels.models import build_model
from genmodels.runtime import setup_process
from genmodels.tuning.study import open_study, optimize
from genmodels.tuning.config import load_tune_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import postgres_cluster  # noqa: E402  (the tests' throw-away cluster)

TINY = {"seed": 0, "data": {"name": "mnist", "limit": 300}, "model": {"kind": "vae", "hidden": 16, "latent_dim": 2},
        "train": {"epochs": 1, "batch_size": 128}, "log": {"n_images": 4}}


def tune_file(folder: Path, n_trials: int, name: str) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(TINY))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "base": "base.yaml", "study_name": name, "runs_dir": str(folder / "runs"), "n_trials": n_trials,
        "sampler": {"name": "random"}, "pruner": {"name": "none"},
        "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}))
    return path


def worker(args: tuple[str, str | None, int]) -> int:
    """One study worker with a statement counter; the statements it sent."""
    path, storage, index = args
    setup_process(threads=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counter = {"n": 0}
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute",
                            lambda *a, **k: counter.__setitem__("n", counter["n"] + 1))
    tune, base = load_tune_config(path)
    optimize(open_study(tune, base, storage, worker=index), tune, base)
    return counter["n"]


def study_rates(folder: Path, storage: str | None, label: str, n_trials: int) -> list[dict]:
    rows = []
    for workers in (1, 2, 4):
        name = f"{label}_{workers}"
        path = tune_file(folder, n_trials, name)
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            statements = sum(pool.map(worker, [(str(path), storage, i) for i in range(workers)]))
        seconds = time.perf_counter() - start
        url = storage or f"sqlite:///{folder / 'runs' / name / 'study.db'}"
        trials = optuna.load_study(study_name=name, storage=url).trials
        done = sum(t.state.is_finished() for t in trials)
        rows.append({"storage": label, "workers": workers, "trials": done, "seconds": round(seconds, 1),
                     "trials_per_hour": round(done / seconds * 3600),
                     "statements_per_trial": round(statements / done, 1)})
        print(rows[-1], flush=True)
    return rows


def load_worker(args: tuple[str, int, int]) -> tuple[int, float]:
    """Create trials and report 100 values to each for `seconds`; the storage operations done."""
    url, seconds, seed = args
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="load", storage=url, sampler=optuna.samplers.RandomSampler(seed=seed))
    ops, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        for step in range(100):
            trial.report(x * step, step)
        study.tell(trial, x)
        ops += 103  # ask (with its suggestion), 100 reports, tell
    return ops, time.perf_counter() - start


def storage_load(url: str, seconds: int = 20) -> list[dict]:
    optuna.create_study(study_name="load", storage=url)
    rows = []
    for processes in (1, 4, 8, 16, 32):
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            done = pool.map(load_worker, [(url, seconds, i) for i in range(processes)])
        ops = sum(o for o, _ in done)
        rows.append({"processes": processes, "operations_per_s": round(ops / max(s for _, s in done)),
                     "reports_per_s": round(ops / max(s for _, s in done) * 100 / 103)})
        print(rows[-1], flush=True)
    return rows


def ddp(folder: Path) -> dict:
    cfg = folder / "vae.yaml"
    data = yaml.safe_load((ROOT / "experiments" / "vae_mnist.yaml").read_text())
    data["data"]["name"] = "fashion-mnist"
    data["train"] = {**data["train"], "epochs": 2, "patience": None}
    data["log"] = {"runs_dir": str(folder / "ddp"), "n_images": 16}
    cfg.write_text(yaml.safe_dump(data))
    out = {}
    for procs in (1, 2):
        command = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
                   if procs > 1 else [sys.executable]) + ["-m", "genmodels", "train", str(cfg), "--quiet",
                                                           "--name", f"p{procs}"]
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(2 // procs)})
        metrics = json.loads((folder / "ddp" / f"p{procs}" / "metrics.json").read_text())
        out[f"{procs}_process"] = {"images_per_s": round(metrics["images_seen"] / metrics["train_seconds"]),
                                   "heldout_neg_elbo": round(metrics["heldout"]["neg_elbo"], 3)}
    for name in ("vae_mnist", "dcgan_fashion"):
        model_cfg = load_config(ROOT / "experiments" / f"{name}.yaml").model
        model = build_model(model_cfg, (1, 28, 28))
        out[f"allreduce_bytes_per_step_{name}"] = sum(p.numel() * 4 for p in model.parameters())
    print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per study")
    args = parser.parse_args()
    setup_process()
    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    result = {"cores": os.cpu_count()}
    result["studies"] = study_rates(folder, None, "sqlite", args.trials)
    with postgres_cluster(max_connections=300) as url:
        result["studies"] += study_rates(folder, url, "postgresql", args.trials)
        result["storage_load"] = storage_load(url)
    result["ddp"] = ddp(folder)
    write_result("scale_out", result)


if __name__ == "__main__":
    main()
