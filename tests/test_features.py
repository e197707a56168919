import os
import time

import pytest
import torch

from genmodels.data import DataConfig, load_splits
from genmodels.errors import UserError
from genmodels.metrics.features import classifier_name, extract, load_classifier, load_extractor
from genmodels.metrics.frechet import fid_from_features

from conftest import data_root, run_cli


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("mnist", data_root(), quiet=True)


def test_classifier_accuracy_and_cache(classifier):
    assert classifier.info["test_accuracy"] >= 0.97
    assert classifier.info["train_images"] == 4500  # held-out (500) and test never seen
    path = os.path.join(os.environ["GENMODELS_CACHE"], "features", classifier_name("mnist") + ".pt")
    assert os.path.isfile(path) and os.path.isfile(path[:-3] + ".json")
    mtime = os.path.getmtime(path)
    start = time.perf_counter()
    again = load_classifier("mnist", data_root(), quiet=True, train_if_missing=False)
    assert time.perf_counter() - start < 5 and os.path.getmtime(path) == mtime
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(again(x), classifier(x))


def test_features_cli_reports_cached(classifier):
    result = run_cli("features", "train", "--dataset", "mnist", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"{classifier.name}: test accuracy {classifier.info['test_accuracy']:.4f}" in result.stdout


def test_fid_real_vs_real_far_below_noise(classifier):
    splits = load_splits("mnist", data_root(), 0.1, 0, download=False)
    heldout = extract(classifier, splits.heldout.images)
    test = extract(classifier, splits.test.images[:500])
    noise = extract(classifier, torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    real_real = fid_from_features(heldout, test)
    real_noise = fid_from_features(heldout, noise)
    assert real_real * 20 < real_noise, (real_real, real_noise)


def test_inception_without_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no weights there, and the fetch is refused (conftest)
    with pytest.raises(UserError, match=r"eval.features: 'inception' needs Inception-v3 weights, and fetching them "
                                        r"failed: .*Offline, copy pt_inception-2015-12-05-6726825d.pth to "):
        load_extractor("inception", DataConfig(name="mnist"))
    assert not any(tmp_path.rglob("*.pth*"))  # nothing left behind
