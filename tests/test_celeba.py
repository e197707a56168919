"""CelebA from tiny files in its real layout: img_align_celeba/NNNNNN.jpg (178 x 218 JPEGs) and
list_eval_partition.txt, read through PIL, split by the partition file."""

import numpy as np
import pytest
from PIL import Image

from genmodels.data import DataConfig, load_data, raw_splits
from genmodels.errors import DataError

#: image -> partition part (0 train, 1 valid, 2 test), in an order unlike the file names'
PARTS = [0, 2, 1, 0, 2, 0, 1, 0]


def write_celeba(root, parts=PARTS, listed=None):
    """One face-shaped JPEG per image: a border of one grey level around a centre of the image's own
    colour, so a wrong crop or order shows up in the decoded pixels."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    colours = []
    for i, _ in enumerate(parts):
        colour = (30 * i % 256, 255 - 25 * i, 40 + 20 * i)
        array = np.full((218, 178, 3), 128, dtype=np.uint8)
        array[40:178, 20:158] = colour  # the 178 x 178 centre square minus 20 px each side
        Image.fromarray(array).save(folder / "img_align_celeba" / f"{i + 1:06d}.jpg", quality=95)
        colours.append(colour)
    names = listed if listed is not None else [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    return np.array(colours)


def test_celeba_splits_by_the_partition_file_at_the_chosen_size(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path / "cache"))
    colours = write_celeba(tmp_path)
    raw = raw_splits(DataConfig(name="celeba", root=str(tmp_path), download=False, image_size=16))
    test = np.array(PARTS) == 2
    for split, keep in (("train", ~test), ("test", test)):
        images = raw[split].images.numpy()
        assert images.shape == (keep.sum(), 3, 16, 16) and (raw[split].labels == 0).all()
        centre = images[:, :, 6:10, 6:10].reshape(len(images), 3, -1).mean(axis=2)
        assert np.abs(centre - colours[keep]).max() < 6, (split, centre, colours[keep])  # JPEG's error
        assert np.abs(images[:, :, 0, 8].astype(int) - 128).max() < 6  # the centre square's border stays
    splits = load_data(DataConfig(name="celeba", root=str(tmp_path), download=False, heldout_fraction=0.2))
    assert splits.image_shape == (3, 64, 64) and len(splits.train) + len(splits.heldout) == 6


def test_a_partition_that_does_not_match_the_images_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path / "cache"))
    write_celeba(tmp_path, listed=[f"{i + 1:06d}.jpg" for i in range(7)] + ["000099.jpg"])
    with pytest.raises(DataError, match=r"img_align_celeba: holds 8 images, list_eval_partition.txt lists 8 "
                                        r"\(missing 1, first 000099.jpg\)"):
        raw_splits(DataConfig(name="celeba", root=str(tmp_path), download=False))


def test_a_bad_partition_line_names_the_line(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt:2: expected '<image file> <0, 1 or 2>'"):
        raw_splits(DataConfig(name="celeba", root=str(tmp_path), download=False))


def test_offline_names_the_files_and_where_they_go(tmp_path, monkeypatch):
    monkeypatch.delenv("GENMODELS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"dataset 'celeba' not found .*download is off\). Put "
                                        r"list_eval_partition.txt, img_align_celeba/000001.jpg in <root>/celeba/"):
        raw_splits(DataConfig(name="celeba", root=str(tmp_path), download=False))
