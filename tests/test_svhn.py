"""SVHN from tiny .mat files in the real layout (X: 32 x 32 x 3 x N, y: 1..10 with 10 for zero)."""

import numpy as np
import pytest
from scipy.io import savemat

from genmodels.data import DataConfig, load_data
from genmodels.data.svhn import load_svhn
from genmodels.errors import DataError


def test_svhn_mat_files(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    rng, expected = np.random.default_rng(0), {}
    for split, n in (("train", 8), ("test", 3)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = rng.integers(0, 10, n)
        savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10,
                                                                                                  digits)[:, None]})
        expected[split] = images, digits
    raw = load_svhn(tmp_path, download=False)
    for split, (images, digits) in expected.items():
        assert np.array_equal(raw[split].images.numpy(), images) and np.array_equal(raw[split].labels.numpy(), digits)
    splits = load_data(DataConfig(name="svhn", root=str(tmp_path), download=False, heldout_fraction=0.25))
    assert splits.image_shape == (3, 32, 32) and len(splits.test) == 3


def test_a_foreign_mat_file_is_one_line(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    savemat(folder / "train_32x32.mat", {"X": np.zeros((28, 28, 1, 2), dtype=np.uint8), "y": np.ones((2, 1))})
    (folder / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    expected = r"train_32x32.mat: expected 'X' of uint8 \(32, 32, 3, N\), got \(28, 28, 1, 2\)"
    with pytest.raises(DataError, match=expected):
        load_svhn(tmp_path, download=False)
