"""IDX files (MNIST, Fashion-MNIST): reading and validating them, finding them in our layout or
torchvision's, and torchvision's download when none are found."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import BinaryIO

import torch

from genmodels.data.roots import candidate_roots
from genmodels.data.tensors import Split
from genmodels.errors import DataError

# Dataset name -> (folder in our layout, torchvision class whose <root>/<Class>/raw/ we also read).
DATASETS = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST"),
}
SPLIT_FILES = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: torch.uint8}

def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (raw or gzipped) into a uint8 tensor, checking its header and size.

    The payload is read (or decompressed) straight into the tensor's memory: one pass, no copy.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4:
                raise DataError(f"{path}: not an IDX file (only {len(magic)} bytes)")
            zero, dtype_code, ndim = int.from_bytes(magic[:2], "big"), magic[2], magic[3]
            if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
                raise DataError(
                    f"{path}: bad IDX magic number 0x{magic.hex()} (expected 0x0000080N for unsigned bytes)"
                )
            header = 4 + 4 * ndim
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header ({4 + len(dims_raw)} bytes, expected {header})")
            dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            # Check the claimed size against what the file can hold before allocating it: a
            # damaged header must not ask for terabytes. deflate compresses at most ~1032:1.
            on_disk = path.stat().st_size
            most = on_disk if opener is open else on_disk * 1032 + 1024
            if header + _prod(dims) > most:
                has = f"file has {on_disk}" if opener is open else f"more than {on_disk} compressed bytes can hold"
                raise DataError(f"{path}: IDX size mismatch: header says dims {dims} = {header + _prod(dims)} "
                                f"bytes, {has}")
            payload = bytearray(_prod(dims))
            got = _read_into(f, memoryview(payload))
            extra = len(f.read()) if got == len(payload) else 0
    except (OSError, EOFError) as exc:  # gzip raises these on truncated or corrupt input
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    expected, size = header + len(payload), header + got + extra
    if size != expected:
        raise DataError(
            f"{path}: IDX size mismatch: header says dims {dims} = {expected} bytes, file has {size}"
        )
    if not payload:  # frombuffer refuses an empty buffer
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(payload, dtype=torch.uint8).reshape(dims)


def _read_into(f: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `f` (a read may return less than asked); the number of bytes read."""
    got = 0
    while got < len(buffer):
        n = f.readinto(buffer[got:])
        if not n:
            break
        got += n
    return got


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def read_idx_split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{images_path}: expected image dims (N, H, W) or (N, H, W, C), got {list(images.shape)}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected label dims (N,), got {list(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}"
        )
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    return Split(images, labels.long())


def _split_paths(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = SPLIT_FILES[split]
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for suffix in ("", ".gz"):
            path = folder / f"{prefix}-{kind}{suffix}"
            if path.is_file():
                found.append(path)
                break
        else:
            return None
    return found[0], found[1]


def _folders(root: Path, name: str) -> list[Path]:
    ours, tv_class = DATASETS[name]
    return [root / ours, root / tv_class / "raw"]


def find_dataset(name: str, root: str | Path | None = None) -> tuple[dict[str, tuple[Path, Path]], list[Path]]:
    """Return {'train': (images, labels), 'test': (...)} from the first folder holding both, and the folders tried."""
    if name not in DATASETS:
        raise DataError(f"data.name: unknown dataset '{name}' (expected one of {', '.join(DATASETS)})")
    tried = []
    for base in candidate_roots(root):
        for folder in _folders(base, name):
            tried.append(folder)
            paths = {split: _split_paths(folder, split) for split in SPLIT_FILES}
            if all(paths.values()):
                return paths, tried  # type: ignore[return-value]
    return {}, tried


def _download(name: str, root: Path) -> None:
    """Fetch with torchvision into <root>/<Class>/raw/, the layout find_dataset also reads. If
    it fails (or is interrupted), the folders it created are removed again: a mistyped root
    leaves nothing behind."""
    import torchvision.datasets as tvd  # only when downloading: it loads PIL and friends

    folder = root / DATASETS[name][1] / "raw"
    new = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    done = False
    try:
        cls = getattr(tvd, DATASETS[name][1])
        for train in (True, False):
            cls(str(root), train=train, download=True)
        done = True
    finally:
        if not done and new is not None:
            shutil.rmtree(new, ignore_errors=True)


def load_raw(name: str, root: str | Path | None = None, download: bool = True) -> dict[str, Split]:
    """The official train and test splits of `name` as uint8 tensors on the CPU."""
    paths, tried = find_dataset(name, root)
    if not paths and download:
        target = candidate_roots(root)[0]
        try:
            _download(name, target)
        except Exception as exc:  # network, permissions, corrupt download: all end the same way
            reason = f"download into {target} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        else:
            reason = ""
        paths, tried = find_dataset(name, root)
        if not paths:
            tried_text = ", ".join(str(p) for p in tried)
            raise DataError(
                f"dataset '{name}' not found (looked in {tried_text}; {reason or 'download gave no files'}). "
                f"Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                f"t10k-labels-idx1-ubyte.gz in <root>/{DATASETS[name][0]}/ and pass --data-root <root> "
                f"or set GENMODELS_DATA=<root>"
            )
    if not paths:
        tried_text = ", ".join(str(p) for p in tried)
        raise DataError(
            f"dataset '{name}' not found (looked in {tried_text}; download is off). Put the four IDX files "
            f"in <root>/{DATASETS[name][0]}/ and pass --data-root <root> or set GENMODELS_DATA=<root>"
        )
    return {split: read_idx_split(*pair) for split, pair in paths.items()}


