"""CIFAR-10/100 from tiny files in the real binary layout; a pickle planted where the Python
batches would be is never opened."""

import pickle

import numpy as np
import pytest

from genmodels.data import DataConfig, load_data
from genmodels.data.cifar import load_cifar10, load_cifar100
from genmodels.errors import DataError

from conftest import cli


class Payload:
    """Unpickling this creates `marker`: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def records(rng, n, label_bytes, classes):
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, classes, (n, label_bytes), dtype=np.uint8)
    return images, labels[:, -1], np.concatenate([labels, images.reshape(n, -1)], axis=1)


def write_cifar10(root, marker):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng, expected = np.random.default_rng(0), {"train": ([], []), "test": ([], [])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, labels, rows = records(rng, 4, 1, 10)
        rows.tofile(folder / f"{name}.bin")
        split = "test" if name == "test_batch" else "train"
        expected[split][0].append(images), expected[split][1].append(labels)
        (folder / name).write_bytes(pickle.dumps(Payload(marker)))  # the Python version's file name
    return {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in expected.items()}


def test_cifar10_binary_records_and_no_pickle(tmp_path):
    marker = tmp_path / "ran"
    expected = write_cifar10(tmp_path, marker)
    raw = load_cifar10(tmp_path, download=False)
    for split, (images, labels) in expected.items():
        assert np.array_equal(raw[split].images.numpy(), images) and np.array_equal(raw[split].labels.numpy(), labels)
    splits = load_data(DataConfig(name="cifar10", root=str(tmp_path), download=False, heldout_fraction=0.25))
    assert splits.image_shape == (3, 32, 32)
    assert (len(splits.train), len(splits.heldout), len(splits.test)) == (15, 5, 4)
    code, _, err = cli("train", "--quiet", "--set", "data.name=cifar10", f"data.root={tmp_path}", "data.download=false",
                       "model.arch=conv", "model.hidden=4", "model.latent_dim=2", "train.batch_size=5",
                       "train.epochs=1", f"log.runs_dir={tmp_path / 'runs'}", "log.n_images=4", "--",
                       str(base_config(tmp_path)))
    assert code == 0, err
    assert not marker.exists()


def base_config(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("name: colour\nmodel:\n  kind: vae\n")
    return path


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rng, expected = np.random.default_rng(1), {}
    for split in ("train", "test"):
        images, fine, rows = records(rng, 6, 2, 100)
        rows.tofile(folder / f"{split}.bin")
        expected[split] = images, fine
    raw = load_cifar100(tmp_path, download=False)
    for split, (images, fine) in expected.items():
        assert np.array_equal(raw[split].images.numpy(), images) and np.array_equal(raw[split].labels.numpy(), fine)


def test_damaged_or_missing_files_are_one_line(tmp_path):
    write_cifar10(tmp_path, tmp_path / "ran")
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(DataError, match=r"test_batch.bin: 3,000 bytes is not a whole number of 3073-byte records"):
        load_cifar10(tmp_path, download=False)
    with pytest.raises(DataError, match=r"dataset 'cifar100' not found \(looked in .*; download is off\)\. "
                                        r"Put train.bin, test.bin in <root>/cifar-100-binary/"):
        load_cifar100(tmp_path / "empty", download=False)
