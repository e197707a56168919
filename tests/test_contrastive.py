"""The label-free extractor: its loss against the formula, views that follow the generator,
10-NN accuracy against a case done by hand, training that is deterministic and blind to labels,
a cache keyed by the images' content, and the default for data without the classifier."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.data import DataConfig, Split, load_data
from genmodels.errors import UserError
from genmodels.metrics.augment import random_view
from genmodels.metrics.contrastive import contrastive_name, load_contrastive, nt_xent, train_contrastive
from genmodels.metrics.features import check_extractor
from genmodels.metrics.knn import knn_accuracy
from genmodels.metrics.quality import EvalConfig

from conftest import data_root


def test_nt_xent_is_the_formula():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    u = z / z.norm(dim=1, keepdim=True)
    tau, b = 0.3, 3
    total = 0.0
    for i in range(6):
        twin = (i + b) % 6
        others = sum(math.exp(float(u[i] @ u[k]) / tau) for k in range(6) if k != i)
        total += -math.log(math.exp(float(u[i] @ u[twin]) / tau) / others)
    assert abs(nt_xent(z, tau).item() - total / 6) < 1e-5


@pytest.mark.parametrize("channels", [1, 3])
def test_views_follow_the_generator_and_differ(channels):
    x = torch.rand(8, channels, 32, 32)
    a = random_view(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, random_view(x, torch.Generator().manual_seed(1)))
    g = torch.Generator().manual_seed(2)
    first, second = random_view(x, g), random_view(x, g)
    assert (first - second).abs().mean() > 0.05  # two views of one image are not the same picture


def test_knn_accuracy_by_hand():
    gallery = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1], [-1, 0.01]])
    # k=1: the nearest by angle carries the label of each query
    assert knn_accuracy(gallery, labels, queries, torch.tensor([0, 1, 2]), k=1) == 1.0
    # k=3: the third query's neighbours are [-1,0] (2) and two of label 1: 2 is outvoted
    assert knn_accuracy(gallery, labels, queries, torch.tensor([0, 1, 2]), k=3) == pytest.approx(2 / 3)
    # scale does not matter: cosine
    assert knn_accuracy(gallery * 7, labels, queries * 0.1, torch.tensor([0, 1, 2]), k=1) == 1.0


def small_split(n=300, labels=None):
    images = load_data(DataConfig(name="mnist", root=data_root(), limit=n)).train.images
    return Split(images, labels if labels is not None else torch.zeros(len(images), dtype=torch.long))


def test_training_is_deterministic_and_never_reads_labels():
    split = small_split()
    a = train_contrastive(split, "a", epochs=1, batch_size=64, quiet=True).state_dict()
    shuffled = small_split(labels=torch.randperm(len(split)) % 10)
    b = train_contrastive(shuffled, "b", epochs=1, batch_size=64, quiet=True).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_contrastive(split, "c", epochs=1, batch_size=64, seed=1, quiet=True).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def folder_of(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image[0])).save(folder / f"{i:04d}.png")
    return folder


def test_cached_per_content_and_retrained_when_a_file_changes(tmp_path, capsys):
    folder = folder_of(small_split(200).images, tmp_path / "mine")
    data = DataConfig(name="imagefolder", path=str(folder))
    first = load_contrastive(data)
    err = capsys.readouterr().err
    assert "training the label-free feature extractor" in err and first.name.startswith("contrastive-imagefolder-")
    assert first.name == contrastive_name("imagefolder", load_data(data).train)
    assert "knn10_test_accuracy" not in first.info  # a flat folder has no labels to report with
    again = load_contrastive(data)
    assert "training" not in capsys.readouterr().err and again.name == first.name
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(first(x), again(x)) and first(x).shape == (5, first.dim)
    # the limit and class selections of a run do not change which images it learns from
    assert load_contrastive(data.model_copy(update={"limit": 50}), quiet=True).name == first.name
    Image.fromarray(np.full((28, 28), 255, dtype=np.uint8)).save(folder / "0003.png")
    assert load_contrastive(data, quiet=True).name != first.name


def test_other_sizes_and_channels_are_scored_after_resizing(tmp_path):
    folder = folder_of(small_split(100).images, tmp_path / "mine")
    extractor = load_contrastive(DataConfig(name="imagefolder", path=str(folder)), quiet=True)
    assert extractor(torch.rand(2, 3, 64, 64)).shape == (2, extractor.dim)


def test_auto_picks_by_dataset_and_classifier_needs_labels():
    assert EvalConfig().features == "auto"
    assert check_extractor("auto", "mnist") == "classifier"
    assert check_extractor("auto", "imagefolder") == "contrastive"
    assert check_extractor("auto", "cifar10") == "contrastive"
    with pytest.raises(UserError, match="eval.features: the classifier extractor is trained for"):
        check_extractor("classifier", "imagefolder")
