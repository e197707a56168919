"""The README's quick starts, run as a newcomer would: every shell command of every quick start,
verbatim and in order, in a fresh folder holding a copy of experiments/ with small settings
(fewer epochs, trials and images), the shared datasets as data root. Servers (dashboard,
TensorBoard) are started on a free port, must answer, and are stopped."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from conftest import REPO, data_root
from pgcluster import free_port

# Small settings per shipped config: the commands stay the README's.
SMALL = {
    "vae_mnist.yaml": {"train": {"epochs": 1}},
    "finetune_vae_fashion.yaml": {"train": {"epochs": 1}},
    "tune_dcgan_fashion.yaml": {"n_trials": 2, "set": [
        "train.max_images=1200", "train.eval_every_images=600", "eval.fid_samples=200", "eval.metrics=[kid, fid_inf]",
        "data.name=mnist", "data.limit=1000", "model.hidden=16"]},
    "tune_gan_own_images.yaml": {"n_trials": 2, "set": [
        "train.max_images=1200", "train.eval_every_images=600", "eval.fid_samples=200", "eval.metrics=[kid, fid_inf]",
        "data.limit=1000", "model.hidden=16"]},
}
# The one command that is not run verbatim: the own-images folder is made from MNIST's 5,000
# training images instead of Fashion-MNIST's 60,000 (its label-free extractor trains in seconds).
SMALL_COMMANDS = {"genmodels export fashion-mnist:train my_images": "genmodels export mnist:train my_images",
                  "genmodels fid runs/tune_gan_own_images/best-retrained fashion-mnist:test --feature-dataset "
                  "fashion-mnist": "genmodels fid runs/tune_gan_own_images/best-retrained mnist:test "
                                   "--feature-dataset mnist --samples 500"}
SERVERS = {"tensorboard": "/data/runs", "dashboard": "/api/studies"}


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Quick starts"):text.index("\n## ", text.index("## Quick starts") + 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def merge(into: dict, small: dict) -> dict:
    for key, value in small.items():
        into[key] = merge(dict(into.get(key) or {}), value) if isinstance(value, dict) else value
    return into


def test_the_quick_starts_name_the_five_tasks():
    commands = quick_start_commands()
    assert [c.split()[:2] for c in commands] == [
        ["genmodels", "train"], ["genmodels", "sample"], ["genmodels", "tune"], ["genmodels", "dashboard"],
        ["tensorboard", "--logdir"], ["genmodels", "finetune"], ["genmodels", "sample"],
        ["genmodels", "export"], ["genmodels", "tune"], ["genmodels", "fid"], ["genmodels", "fid"]]


def test_every_quick_start_command_runs(tmp_path):
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    for name, small in SMALL.items():
        path = tmp_path / "experiments" / name
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), small), sort_keys=False))
    bin_dir = Path(sys.executable).parent  # genmodels and tensorboard as the environment installs them
    env = {**os.environ, "GENMODELS_DATA": data_root(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for command in quick_start_commands():
        argv = shlex.split(SMALL_COMMANDS.get(command, command))
        server = next((path for word, path in SERVERS.items() if word in argv[:2]), None)
        if server is None:
            result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
            continue
        port = free_port()
        proc = subprocess.Popen([*argv, "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    assert urllib.request.urlopen(f"http://127.0.0.1:{port}{server}", timeout=5).status == 200
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, f"{command}: no server"
                    time.sleep(0.5)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # say which server ignored SIGTERM, and what it printed
                proc.kill()
                raise AssertionError(f"{command}: still running 30 s after SIGTERM; stderr:\n"
                                     f"{proc.communicate()[1][-3000:]}") from None
    assert (tmp_path / "vae_samples.png").stat().st_size > 0
    assert (tmp_path / "finetune_samples.png").stat().st_size > 0
    assert (tmp_path / "runs" / "tune_dcgan_fashion" / "best-retrained" / "metrics.json").is_file()
    retrained = tmp_path / "runs" / "tune_gan_own_images" / "best-retrained" / "metrics.json"
    assert json.loads(retrained.read_text())["features"].startswith("contrastive-imagefolder-")
