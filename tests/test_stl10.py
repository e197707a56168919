"""STL-10 from tiny files in its raw binary layout (column-major 3 x 96 x 96 images, labels 1..10)."""

import numpy as np
import pytest

from genmodels.data import DataConfig, load_data
from genmodels.data.stl10 import load_stl10
from genmodels.errors import DataError


def write(folder, split, images, labels):
    np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")  # column-major
    (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")


def test_stl10_binary(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng, expected = np.random.default_rng(0), {}
    for split, n in (("train", 5), ("test", 2)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        write(folder, split, images, labels)
        expected[split] = images, labels
    raw = load_stl10(tmp_path, download=False)
    for split, (images, labels) in expected.items():
        assert np.array_equal(raw[split].images.numpy(), images) and np.array_equal(raw[split].labels.numpy(), labels)
    assert load_data(DataConfig(name="stl10", root=str(tmp_path), download=False)).image_shape == (3, 96, 96)


def test_sizes_that_do_not_add_up_are_one_line(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    write(folder, "train", np.zeros((2, 3, 96, 96), dtype=np.uint8), np.zeros(3, dtype=np.int64))
    write(folder, "test", np.zeros((1, 3, 96, 96), dtype=np.uint8), np.zeros(1, dtype=np.int64))
    with pytest.raises(DataError, match=r"train_X.bin: 55,296 bytes for 3 labels in train_y.bin"):
        load_stl10(tmp_path, download=False)
