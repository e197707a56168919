"""Shared fixtures: the offline datasets and tiny run configs that train in a second or two."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from genmodels.cli import main
from genmodels.config import Config
from genmodels.schema import apply_overrides, validate
from pgcluster import postgres_cluster

REPO = Path(__file__).resolve().parents[1]

# Feature classifiers and real-feature statistics go to a fresh folder per test session, so the
# suite exercises training them on demand and never reads a cache left by an earlier run.
# The folder goes when the session ends, so repeated runs do not fill the disk.
# The tests never reach outside this machine: Inception weights are "fetched" from a closed port
# on 127.0.0.1 unless a test serves them itself (tests/test_download.py).
os.environ.setdefault("GENMODELS_INCEPTION_URL", "http://127.0.0.1:9/pt_inception-2015-12-05-6726825d.pth")
if "GENMODELS_CACHE" not in os.environ:
    os.environ["GENMODELS_CACHE"] = tempfile.mkdtemp(prefix="genmodels-cache-")
    atexit.register(shutil.rmtree, os.environ["GENMODELS_CACHE"], ignore_errors=True)
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


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql://... of a fresh cluster (password authentication, 127.0.0.1 only), stopped at
    the end of the session."""
    with postgres_cluster() as url:
        yield url


def serve(command, url):
    """Start a server; return it once `url` answers."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "GENMODELS_DATA": data_root()})
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"server did not start: {proc.communicate()[0]}")
            time.sleep(0.3)
