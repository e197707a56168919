import gzip
import shutil
from pathlib import Path

import pytest
import torch

from genmodels.data import heldout_split, load_raw, load_splits, read_idx, read_idx_split
from genmodels.errors import DataError


def write_idx(path: Path, tensor: torch.Tensor, magic: bytes | None = None, gz: bool = False) -> Path:
    header = magic or bytes([0, 0, 0x08, tensor.ndim])
    header += b"".join(d.to_bytes(4, "big") for d in tensor.shape)
    payload = header + tensor.numpy().tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    path = write_idx(tmp_path / ("x.gz" if gz else "x"), images, gz=gz)
    assert torch.equal(read_idx(path), images)


def test_truncated_file_names_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", torch.zeros(4, 28, 28, dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: IDX size mismatch.*3152 bytes, file has 3142"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_header_dims_are_refused_before_allocating(tmp_path, gz):
    path = write_idx(tmp_path / ("big.gz" if gz else "big"), torch.zeros(2, 3, dtype=torch.uint8), gz=gz)
    data = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    data[4:12] = (2**31).to_bytes(4, "big") + (2**31).to_bytes(4, "big")  # 4 EiB of "pixels"
    (gzip.open if gz else open)(path, "wb").write(bytes(data))
    with pytest.raises(DataError, match=r"IDX size mismatch: header says dims \[2147483648, 2147483648\]"):
        read_idx(path)


def test_truncated_gzip_names_file(tmp_path):
    path = write_idx(tmp_path / "t.gz", torch.zeros(4, 28, 28, dtype=torch.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t\.gz: cannot read IDX file"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "bad", torch.zeros(2, 3, dtype=torch.uint8), magic=b"\x12\x34\x08\x02")
    with pytest.raises(DataError, match=r"bad: bad IDX magic number 0x12340802"):
        read_idx(path)


def test_label_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "images", torch.zeros(5, 4, 4, dtype=torch.uint8))
    labels = write_idx(tmp_path / "labels", torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"labels: 4 labels for 5 images in images"):
        read_idx_split(images, labels)


def test_shared_mnist_files(data_dir):
    raw = load_raw("mnist", data_dir, download=False)
    assert raw["train"].images.shape == (5000, 1, 28, 28)
    assert raw["test"].images.shape == (10000, 1, 28, 28)
    assert raw["train"].images.dtype == torch.uint8
    assert set(raw["train"].labels.tolist()) == set(range(10))


def test_torchvision_layout(tmp_path, data_dir, monkeypatch):
    """<root>/MNIST/raw/ with unzipped files, as torchvision leaves them, is read too."""
    monkeypatch.delenv("GENMODELS_DATA", raising=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in (Path(data_dir) / "mnist").glob("*.gz"):
        with gzip.open(src) as fin, open(raw / src.name[:-3], "wb") as fout:
            shutil.copyfileobj(fin, fout)
    assert len(load_raw("mnist", tmp_path, download=False)["test"]) == 10000


def test_missing_data_lists_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("GENMODELS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError) as err:
        load_raw("fashion-mnist", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "fashion-mnist") in msg
    assert str(tmp_path / "home" / ".cache" / "genmodels" / "data" / "FashionMNIST" / "raw") in msg
    assert "GENMODELS_DATA" in msg and "\n" not in msg


def test_heldout_split_is_seeded_and_disjoint():
    a_train, a_held = heldout_split(1000, 0.1, seed=3)
    b_train, b_held = heldout_split(1000, 0.1, seed=3)
    c_train, c_held = heldout_split(1000, 0.1, seed=4)
    assert torch.equal(a_held, b_held) and torch.equal(a_train, b_train)
    assert not torch.equal(a_held, c_held)
    assert len(a_held) == 100 and len(a_train) == 900
    assert set(a_train.tolist()).isdisjoint(a_held.tolist())
    assert sorted(a_train.tolist() + a_held.tolist()) == list(range(1000))


def test_splits_do_not_overlap(data_dir):
    splits = load_splits("mnist", data_dir, heldout_fraction=0.1, seed=0, download=False)
    assert (len(splits.train), len(splits.heldout), len(splits.test)) == (4500, 500, 10000)

    def rows(split):
        return {bytes(img.numpy().tobytes()) for img in split.images}

    train, heldout, test = rows(splits.train), rows(splits.heldout), rows(splits.test)
    assert train.isdisjoint(heldout)
    assert train.isdisjoint(test) and heldout.isdisjoint(test)
    again = load_splits("mnist", data_dir, heldout_fraction=0.1, seed=0, download=False)
    assert torch.equal(again.heldout.images, splits.heldout.images)
