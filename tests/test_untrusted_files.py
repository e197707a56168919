"""A crafted pickle wherever the toolkit loads weights never runs its payload: one line, exit 2."""

import os

import pytest
import torch
import yaml

from genmodels.data import load_imagefolder
from genmodels.data.imagefolder import cache_dir
from genmodels.metrics.features import PYTORCH_FID_WEIGHTS, TORCHVISION_WEIGHTS, cache_dirs, classifier_name

from conftest import cli, tiny_config
from test_finetune import make_images


class Payload:
    """Unpickling this calls os.system: what a malicious weights file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 2, "model": {"w": torch.zeros(1)}, "payload": Payload(marker), **extra}, path)


def refused(result, marker, path):
    code, out, err = result
    assert not marker.exists(), "the payload ran"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and "refused to unpickle" in lines[0], lines[0]


def write_config(tmp_path, cfg):
    data = cfg.to_dict()
    path = tmp_path / f"{cfg.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def trained(tmp_path):
    code, _, err = cli("train", str(write_config(tmp_path, tiny_config(tmp_path, "name=run"))), "--quiet")
    assert code == 0, err
    return tmp_path / "runs" / "run"


@pytest.mark.parametrize("command", ["eval", "sample", "resume"])
def test_run_checkpoint(tmp_path, trained, command):
    marker = tmp_path / "ran"
    for name in ("best.pt", "last.pt"):
        craft(trained / name, marker)
    if command == "resume":
        result = cli("train", str(tmp_path / "run.yaml"), "--resume", "--quiet", "--set", "train.epochs=2")
        path = trained / "last.pt"
    else:
        result = cli(command, str(trained), *(["-o", str(tmp_path / "s.png")] if command == "sample" else []))
        path = trained / "best.pt"
    refused(result, marker, path)


def test_finetuning_source(tmp_path):
    marker, source = tmp_path / "ran", tmp_path / "evil.pt"
    craft(source, marker)
    cfg = tiny_config(tmp_path, "name=ft", f"finetune.from={source}")
    refused(cli("finetune", str(write_config(tmp_path, cfg)), "--quiet"), marker, source)


def gan_run(tmp_path, *extra):
    cfg = tiny_config(tmp_path, "name=gan", "model.kind=gan", "model.arch=mlp", "model.hidden=16",
                      "model.latent_dim=4", "eval.fid_samples=50", "data.limit=200", *extra)
    return cli("train", str(write_config(tmp_path, cfg)), "--quiet")


def test_feature_classifier_cache(tmp_path):
    marker = tmp_path / "ran"
    path = cache_dirs(None, "mnist")[0] / f"{classifier_name('mnist')}.pt"
    saved = path.read_bytes() if path.is_file() else None
    craft(path, marker)
    try:
        refused(gan_run(tmp_path), marker, path)
    finally:
        path.unlink()
        if saved is not None:
            path.write_bytes(saved)


def test_real_feature_statistics_cache(tmp_path):
    folder = cache_dirs(None, "mnist")[0] / "stats"
    before = set(folder.glob("mnist-heldout-*.pt"))
    for path in before:  # a cache: other runs compute theirs again; this run must write its own
        path.unlink()
    assert gan_run(tmp_path)[0] == 0  # writes the held-out split's statistics
    marker = tmp_path / "ran"
    (stats,) = folder.glob("mnist-heldout-*.pt")
    craft(stats, marker, features=torch.zeros(2, 2))
    try:
        refused(gan_run(tmp_path, "name=gan2"), marker, stats)
    finally:
        stats.unlink()


@pytest.mark.parametrize("file", [PYTORCH_FID_WEIGHTS, TORCHVISION_WEIGHTS])
def test_inception_weights(tmp_path, monkeypatch, file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker, path = tmp_path / "ran", tmp_path / "torch" / "hub" / "checkpoints" / file
    craft(path, marker)
    refused(gan_run(tmp_path, "eval.features=inception"), marker, path)


def test_imagefolder_cache(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder, n=12)
    before = set(cache_dir().glob("*.pt"))  # other tests' folders have caches there too
    load_imagefolder(folder, 28, 1)
    (cache,) = set(cache_dir().glob("*.pt")) - before
    marker = tmp_path / "ran"
    craft(cache, marker)
    cfg = tiny_config(tmp_path, "name=img", "data.name=imagefolder", f"data.path={folder}", "train.batch_size=4")
    refused(cli("train", str(write_config(tmp_path, cfg)), "--quiet"), marker, cache)
