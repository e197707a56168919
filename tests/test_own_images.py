"""A GAN on a folder of one's own images, with no labels and no weights on disk: train, eval and
tune with default settings, every FID named with the label-free extractor it came from."""

import json

import numpy as np
import optuna
import yaml
from PIL import Image

from genmodels.data import DataConfig, load_data

from conftest import REPO, cli, data_root


def unlabelled_folder(folder, n=600):
    """MNIST training images as PNGs in one flat folder: the toolkit cannot see their labels."""
    folder.mkdir(parents=True)
    for i, image in enumerate(load_data(DataConfig(name="mnist", root=data_root(), limit=n)).train.images):
        Image.fromarray(np.asarray(image[0])).save(folder / f"{i:04d}.png")
    return folder


def test_train_eval_and_tune_a_gan_on_a_folder(tmp_path):
    folder = unlabelled_folder(tmp_path / "my_images")
    base = {"name": "mine", "data": {"name": "imagefolder", "path": str(folder)},
            "model": {"kind": "gan", "arch": "dcgan", "n_layers": 2, "hidden": 8, "latent_dim": 8},
            "train": {"epochs": 2, "batch_size": 64}, "eval": {"fid_samples": 100},
            "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4}}
    (tmp_path / "gan.yaml").write_text(yaml.safe_dump(base))
    code, out, err = cli("train", str(tmp_path / "gan.yaml"))
    assert code == 0, err
    assert "features: contrastive-imagefolder-" in out, out
    assert "training the label-free feature extractor" in err
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    assert metrics["features"].startswith("contrastive-imagefolder-") and metrics["heldout"]["fid"] > 0
    code, out, err = cli("eval", str(tmp_path / "runs" / "mine"), "--split", "test")
    assert code == 0 and f"features: {metrics['features']}" in out, err

    tune = {"base": "gan.yaml", "study_name": "mine_study", "n_trials": 2, "runs_dir": str(tmp_path / "runs"),
            "objectives": ["fid"],
            "storage": f"sqlite:///{tmp_path / 'study.db'}",
            "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "none"}}  # with pruning the second trial may stop at its first report
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune))
    code, out, err = cli("tune", str(tmp_path / "tune.yaml"))
    assert code == 0, err
    study = optuna.load_study(study_name="mine_study", storage=tune["storage"])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(t.value > 0 for t in done)
    assert all(t.user_attrs.get("features") == metrics["features"] for t in done), [t.user_attrs for t in done]
    assert f"features: {metrics['features']}" in out  # the best trial's line
    assert f"- features: {metrics['features']}" in (tmp_path / "runs" / "mine_study" / "summary.md").read_text()


def test_the_shipped_own_images_config_names_only_the_folder():
    tune = yaml.safe_load((REPO / "experiments" / "tune_gan_own_images.yaml").read_text())
    base = yaml.safe_load((REPO / "experiments" / tune["base"]).read_text())
    assert base["data"] == {"name": "imagefolder", "path": "my_images"}
    assert "features" not in base.get("eval", {})  # the default: label-free
