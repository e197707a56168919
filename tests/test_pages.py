"""What a person sees: `genmodels dashboard` and TensorBoard, each started as a real server and
opened in headless Chromium; the rendered page must show the study and its trials, and a run's
scalars, images and hyper-parameters. Servers are stopped afterwards; on failure a screenshot
is kept in test-artifacts/."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from conftest import REPO, cli, data_root, serve, tiny_config
from pgcluster import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a sandboxed, offline machine: no background connections, no GPU, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
ARTIFACTS = REPO / "test-artifacts"


def browser(url, tmp_path, *extra):
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed: .ci/run installs it (apt-get install chromium)")
    # A tall window: TensorBoard draws only the cards inside the viewport.
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                           "--window-size=1400,12000", *extra, url], capture_output=True, text=True, timeout=120)


def rendered_text(url, tmp_path):
    """The page's visible text after its scripts ran."""
    dom = browser(url, tmp_path, "--dump-dom").stdout
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def screenshot(url, tmp_path, name):
    ARTIFACTS.mkdir(exist_ok=True)
    browser(url, tmp_path, f"--screenshot={ARTIFACTS / name}.png")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=20)
    assert proc.poll() is not None


def expect(url, tmp_path, name, *needles):
    text = rendered_text(url, tmp_path)
    missing = [n for n in needles if n not in text]
    if missing:
        screenshot(url, tmp_path, name)
    assert not missing, f"{missing} not on the page (screenshot: test-artifacts/{name}.png): {text[:2000]}"


def study_id_of(name, port):
    """The dashboard's id of the study `name`, once it lists it."""
    summaries = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies").read())["study_summaries"]
    return next((s["study_id"] for s in summaries if s["study_name"] == name), None)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    (tmp / "base.yaml").write_text(yaml.safe_dump({
        "data": {"name": "mnist", "limit": 500}, "model": {"kind": "vae", "hidden": 16, "latent_dim": 2},
        "train": {"epochs": 2, "batch_size": 128}, "log": {"n_images": 4}}))
    (tmp / "tune.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "study_name": "pages_study", "runs_dir": str(tmp / "runs"), "n_trials": 3,
        "sampler": {"name": "random"}, "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                                 "model.hidden": {"type": "categorical", "choices": [16, 24]}}}))
    assert cli("tune", str(tmp / "tune.yaml"), "--quiet")[0] == 0
    return tmp / "runs" / "pages_study"


def test_dashboard_shows_the_study_and_its_trials(study, tmp_path):
    port = free_port()
    proc = serve([sys.executable, "-m", "genmodels", "dashboard", str(study), "--port", str(port)],
                 f"http://127.0.0.1:{port}/api/studies")
    try:
        expect(f"http://127.0.0.1:{port}/dashboard/studies/1", tmp_path, "dashboard", "pages_study", "trial #2",
               "optim.lr")
    finally:
        stop(proc)


def test_dashboard_on_postgresql_while_workers_write(tmp_path, postgres_url):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "data": {"name": "mnist", "limit": 2000}, "model": {"kind": "vae", "hidden": 16, "latent_dim": 2},
        "train": {"epochs": 1000, "batch_size": 32}, "log": {"n_images": 4}}))  # still running when the page is read
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "study_name": "live_study", "runs_dir": str(tmp_path / "runs"), "n_trials": 4,
        "sampler": {"name": "random"}, "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}))
    workers = subprocess.Popen([sys.executable, "-m", "genmodels", "tune", str(tmp_path / "tune.yaml"), "--quiet",
                                "--workers", "2", "--storage", postgres_url],
                               env={**os.environ, "GENMODELS_DATA": data_root()})
    port = free_port()
    proc = serve([sys.executable, "-m", "genmodels", "dashboard", "--storage", postgres_url, "--port", str(port)],
                 f"http://127.0.0.1:{port}/api/studies")
    try:
        deadline = time.monotonic() + 120
        while (study_id := study_id_of("live_study", port)) is None:  # the database may hold other tests' studies
            assert time.monotonic() < deadline
            time.sleep(0.5)
        expect(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials", tmp_path, "dashboard-live", "live_study",
               "Trial 0 Running", "optim.lr")
    finally:
        stop(proc)
        workers.terminate()
        workers.wait(timeout=60)


def test_tensorboard_shows_scalars_images_and_hparams(tmp_path):
    cfg = tiny_config(tmp_path, "name=seen", "train.epochs=2")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert cli("train", str(path), "--quiet")[0] == 0
    port = free_port()
    tensorboard = [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "runs"), "--host", "127.0.0.1",
                   "--port", str(port)]
    proc = serve(tensorboard, f"http://127.0.0.1:{port}/data/runs")
    try:
        base = f"http://127.0.0.1:{port}/?darkMode=false"
        # Cards are titled "<group> /<name>"; a drawn scalar card shows its run and last value.
        # TensorBoard opens the first two groups; the others (samples, hparams) stay folded.
        expect(f"{base}#timeseries", tmp_path, "tensorboard", "heldout /neg_elbo", "epoch_train /loss",
               "Run Smoothed Value Step", "samples 2 cards", "hparams 4 cards")
        # Folded cards and the HParams dashboard (drawn inside shadow DOM, which a DOM dump does
        # not show) are read from what the page loads from the server: the sample images...
        tags = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/images/tags").read())
        assert set(tags["seen"]) >= {"samples/fixed_noise", "samples/reconstructions"}, tags
        # ...and the run's HParams session with its columns and metric.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/experiment",
                                         data=b'{"experimentName": ""}', headers={"Content-Type": "application/json"})
        experiment = urllib.request.urlopen(request, timeout=30).read().decode()
        assert "optim.lr" in experiment and "hparams/heldout_neg_elbo" in experiment
    finally:
        stop(proc)
