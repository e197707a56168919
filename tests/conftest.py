"""Shared fixtures: the offline datasets and tiny run configs that train in a second or two."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from genmodels.cli import main
from genmodels.config import Config
from genmodels.schema import apply_overrides, validate

REPO = Path(__file__).resolve().parents[1]

# Feature classifiers and real-feature statistics go to a fresh folder per test session, so the
# suite exercises training them on demand and never reads a cache left by an earlier run.
os.environ.setdefault("GENMODELS_CACHE", tempfile.mkdtemp(prefix="genmodels-cache-"))
# Configs written by tests name no data root: they find the shared datasets the way users do.
if not os.environ.get("GENMODELS_DATA") and (REPO.parent / "shared" / "datasets").is_dir():
    os.environ["GENMODELS_DATA"] = str(REPO.parent / "shared" / "datasets")


def data_root() -> str:
    root = os.environ.get("GENMODELS_DATA") or str(REPO.parent / "shared" / "datasets")
    if not (Path(root) / "mnist").is_dir():
        pytest.fail(f"test data not found in {root}: set GENMODELS_DATA to the shared datasets folder")
    return root


@pytest.fixture(scope="session")
def data_dir() -> str:
    return data_root()


def tiny_config(tmp_path: Path, *overrides: str) -> Config:
    """A VAE small enough that an epoch over the 4,500 MNIST training images takes well under a second."""
    data = {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "mnist", "root": data_root()},
        "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
        "train": {"epochs": 1, "batch_size": 256, "log_every": 4},
        "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 16},
    }
    return validate(Config, apply_overrides(data, list(overrides)), "tiny config")


def cli(*args: str) -> tuple[int, str, str]:
    """genmodels in this process, as `main(argv)`: its exit code, stdout and stderr. Seconds faster
    than a new process (no torch import), and it sees model families registered by a test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m genmodels ...` as a user would, capturing output."""
    env = {**os.environ, "GENMODELS_DATA": data_root()}
    return subprocess.run([sys.executable, "-m", "genmodels", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


# --- a throw-away PostgreSQL cluster on 127.0.0.1 for the study-storage tests ------------------

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path("/usr/lib/postgresql").is_dir() else None
PG_PASSWORD = "tuning-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql://... of a fresh cluster (password authentication, 127.0.0.1 only), stopped at
    the end of the session. PostgreSQL refuses to run as root: as root it runs as `postgres`."""
    if PG_BIN is None:
        pytest.fail("PostgreSQL is not installed: .ci/run installs it (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="genmodels-pg-"))
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(root, "postgres")
    (root / "pw").write_text(PG_PASSWORD + "\n")
    if user:
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "scram-sha-256",
        "--pwfile", str(root / "pw"), "--no-sync")
    run(str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-w", "-l", str(root / "log"), "start", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=200 -c fsync=off")
    try:
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "studies"],
                       check=True, env=env, capture_output=True)
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/studies"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)
