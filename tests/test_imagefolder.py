"""A folder of one's own images as it comes: nested, mixed sizes and modes, a bad file or a bomb
among them, the cache kept out of the folder and rebuilt when a file changes."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.data import DataConfig, load_data, load_imagefolder
from genmodels.data.imagefolder import cache_dir
from genmodels.errors import DataError

from conftest import cli


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def png_header_only(path, width, height):
    """A PNG whose header claims width x height and whose pixels are a few bytes: what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def mixed_folder(root):
    """Nested folders, grey and colour, landscape and portrait, PNG and JPEG."""
    rng = np.random.default_rng(0)
    save(root / "a" / "wide.png", np.concatenate([np.zeros((20, 10)), np.full((20, 20), 255), np.zeros((20, 10))],
                                                 axis=1).astype(np.uint8))  # 40 x 20, white centre, black sides
    save(root / "a" / "deep" / "tall.jpg", rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))
    save(root / "b" / "grey.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    save(root / "b" / "colour.png", rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    return root


def test_nested_mixed_sizes_and_modes(tmp_path):
    folder = mixed_folder(tmp_path / "mine")
    grey = load_imagefolder(folder, 16, 1)
    # files in path order: a/deep/tall.jpg, a/wide.png, b/colour.png, b/grey.png; labels by folder
    assert grey.images.shape == (4, 1, 16, 16) and grey.labels.tolist() == [1, 0, 2, 2]
    rgb = load_imagefolder(folder, 16, 3)
    assert rgb.images.shape == (4, 3, 16, 16)
    # crop keeps the centre square of the wide image: all white; stretch keeps its black sides
    wide = grey.images[1, 0].float()
    assert wide.min() > 200
    stretched = load_imagefolder(folder, 16, 1, fit="stretch").images[1, 0].float()
    assert stretched[:, 0].max() < 60 and stretched[:, 8].min() > 200


def test_bad_files_are_skipped_and_counted_or_refused(tmp_path, capsys):
    folder = mixed_folder(tmp_path / "mine")
    (folder / "b" / "junk.png").write_bytes(b"not an image at all")
    whole = (folder / "b" / "colour.png").read_bytes()
    (folder / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])  # a truncated download
    split = load_imagefolder(folder, 16, 1)
    assert len(split) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 2 of 6 files" in err[0] and "data.bad_files: error" in err[0]
    with pytest.raises(DataError, match=r"cut.png: cannot decode image .* \(data.bad_files: skip leaves"):
        load_imagefolder(folder, 20, 1, bad_files="error")


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path, capsys):
    folder = mixed_folder(tmp_path / "mine")
    png_header_only(folder / "bomb.png", 20_000, 20_000)
    with pytest.raises(DataError, match=r"bomb.png: refused, a decompression bomb \(Image size \(400000000 pixels\)"):
        load_imagefolder(folder, 16, 1, bad_files="error")
    assert len(load_imagefolder(folder, 16, 1)) == 4  # skipped, and said so
    assert "bomb.png: refused" in capsys.readouterr().err


def test_the_cache_lives_outside_the_folder_and_follows_its_content(tmp_path):
    folder = mixed_folder(tmp_path / "own")
    before = {p.name for p in folder.rglob("*")}
    first = load_imagefolder(folder, 16, 1)
    assert {p.name for p in folder.rglob("*")} == before  # nothing written into the user's folder
    caches = set(cache_dir().glob("own-16x16x1-crop-*.pt"))
    assert len(caches) == 1
    assert torch.equal(load_imagefolder(folder, 16, 1).images, first.images)  # read back, same tensor
    save(folder / "b" / "grey.png", np.zeros((16, 16), dtype=np.uint8))  # one file changes
    changed = load_imagefolder(folder, 16, 1)
    assert len(set(cache_dir().glob("own-16x16x1-crop-*.pt")) - caches) == 1
    assert changed.images[3].max() == 0 and torch.equal(changed.images[2], first.images[2])


def test_a_folder_trains_through_the_cli(tmp_path):
    folder = mixed_folder(tmp_path / "mine")
    for i in range(12):
        save(folder / "c" / f"{i}.png", np.random.default_rng(i).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    splits = load_data(DataConfig(name="imagefolder", path=str(folder), image_size=16, channels=3))
    assert len(splits.train) + len(splits.heldout) + len(splits.test) == 16
    code, out, err = cli("train", "--quiet", "--set", "data.name=imagefolder", f"data.path={folder}",
                         "data.image_size=16", "data.channels=3", "model.hidden=16", "model.latent_dim=2",
                         "train.epochs=1", "train.batch_size=4", f"log.runs_dir={tmp_path / 'runs'}", "log.n_images=4",
                         "--", str(write_base(tmp_path)))
    assert code == 0, err


def write_base(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("name: mine\nmodel:\n  kind: vae\n")
    return path
