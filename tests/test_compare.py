"""`genmodels fid A B` between folders, dataset splits and runs, checked against pytorch-fid."""

import json

import numpy as np
import pytest
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance

from genmodels.data import DataConfig, load_data, load_imagefolder
from genmodels.experiment import build
from genmodels.metrics.contrastive import load_contrastive
from genmodels.metrics.features import extract, load_classifier

from conftest import cli, data_root, tiny_config


def fid_json(*args):
    code, out, err = cli("fid", *args, "--json", "--quiet")
    assert code == 0, err
    return json.loads(out)


def test_split_against_split_agrees_with_pytorch_fid():
    report = fid_json("mnist:heldout", "mnist:test")
    splits = load_data(DataConfig(name="mnist", root=data_root()))
    extractor = load_classifier("mnist", data_root(), quiet=True)
    a, b = (extract(extractor, s.images).numpy() for s in (splits.heldout, splits.test))
    reference = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert report["features"] == extractor.name and report["images"] == [len(a), len(b)]
    assert abs(report["metrics"]["fid"] - reference) / reference < 1e-6
    assert 0 < report["metrics"]["fid_se"] < report["metrics"]["fid"]


def export(images, folder):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image[0])).save(folder / f"{i:04d}.png")
    return folder


def test_a_folder_s_floor_and_a_folder_against_a_split(tmp_path):
    test = load_data(DataConfig(name="mnist", root=data_root())).test.images
    folder = export(test[:400], tmp_path / "digits")
    floor = fid_json(str(folder), str(folder), "--feature-dataset", "mnist")
    assert floor["floor"] and floor["images"] == [200, 200] and floor["features"].startswith("classifier-mnist")
    noise = export(np.random.default_rng(0).integers(0, 256, (200, 1, 28, 28), dtype=np.uint8), tmp_path / "noise")
    against = fid_json("mnist:test", str(noise), "--metrics", "kid", "precision")
    assert not against["floor"] and against["metrics"]["fid"] > 20 * floor["metrics"]["fid"]
    assert {"kid", "kid_se", "precision", "precision_se", "recall", "recall_se"} <= set(against["metrics"])
    code, out, _ = cli("fid", str(folder), "mnist:test", "--quiet")
    assert code == 0 and f"features: {floor['features']}" in out and "+-" in out


def test_two_unlabelled_folders_in_label_free_features_agree_with_pytorch_fid(tmp_path):
    train = load_data(DataConfig(name="mnist", root=data_root())).train.images
    mine = export(train[:300], tmp_path / "mine")
    theirs = export(train[300:500].flip(-1), tmp_path / "theirs")  # mirrored digits
    report = fid_json(str(mine), str(theirs))
    extractor = load_contrastive(DataConfig(name="imagefolder", path=str(mine)), quiet=True)
    assert report["features"] == extractor.name and report["features"].startswith("contrastive-imagefolder-")
    a = extract(extractor, load_imagefolder(mine, 28, 1).images).numpy()
    b = extract(extractor, load_imagefolder(theirs, 28, 1).images).numpy()
    reference = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert abs(report["metrics"]["fid"] - reference) / reference < 1e-6
    floor = fid_json(str(mine), str(mine))
    assert floor["features"] == extractor.name and floor["metrics"]["fid"] < report["metrics"]["fid"]


def test_a_run_s_samples(tmp_path):
    trainer = build(tiny_config(tmp_path, "name=vae"), quiet=True)
    trainer.fit()
    report = fid_json(str(trainer.run_dir), "mnist:test", "--samples", "300")
    assert report["images"] == [300, 10_000]  # a: the run's samples, b: the test split
    assert report["metrics"]["fid"] > 0


@pytest.mark.parametrize("args, message", [
    (["{a}", "{b}", "--features", "classifier"], "--feature-dataset: the classifier extractor is trained on a "
                                                 "labelled dataset"),
    (["{a}", "{b}", "--feature-dataset", "imagenet"], "--feature-dataset: expected a dataset (mnist, fashion-mnist"),
    (["mnist:valid", "mnist:test"], "mnist:valid: expected a split of mnist: mnist:train, mnist:heldout, mnist:test"),
    (["{missing}", "mnist:test"], "expected an image folder, a run folder, a .pt checkpoint or a dataset split"),
    (["mnist:test", "mnist:test", "--metrics", "fad"], "--metrics: unknown metric 'fad'"),
])
def test_mistakes_are_one_line(tmp_path, args, message):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    args = [x.format(a=a, b=b, missing=tmp_path / "missing") for x in args]
    code, out, err = cli("fid", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
