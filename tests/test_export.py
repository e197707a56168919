"""`genmodels export`: a dataset's split as PNG files, labels left out, into a new folder only."""

import numpy as np
import pytest
from PIL import Image

from genmodels.data import DataConfig, load_imagefolder, raw_splits

from conftest import cli, data_root


def test_a_split_becomes_a_folder_the_image_folder_reader_reads_back(tmp_path):
    code, out, err = cli("export", "mnist:train", str(tmp_path / "digits"), "--quiet")
    assert code == 0, err
    images = raw_splits(DataConfig(name="mnist", root=data_root()))["train"].images
    files = sorted((tmp_path / "digits").iterdir())
    assert len(files) == len(images) and f"wrote {len(images):,} images" in out
    assert np.array_equal(np.asarray(Image.open(files[7])), images[7, 0].numpy())
    back = load_imagefolder(tmp_path / "digits", 28, 1, quiet=True)
    assert (back.images == images).all() and (back.labels == 0).all()  # one flat folder: no labels


@pytest.mark.parametrize("args, message", [
    (["mnist:heldout", "{new}"], "mnist:heldout: expected a dataset's split, <name>:train or <name>:test"),
    (["imagenet:train", "{new}"], "imagenet:train: expected a dataset's split"),
    (["mnist:test", "{full}"], "exists and is not an empty folder; export into a new one"),
])
def test_mistakes_are_one_line_and_touch_nothing(tmp_path, args, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.png").write_bytes(b"not mine to overwrite")
    args = [a.format(new=tmp_path / "new", full=full) for a in args]
    code, _, err = cli("export", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "new").exists() and [p.name for p in full.iterdir()] == ["mine.png"]
