"""Datasets as uint8 tensors: the `data` config section, finding and validating IDX files, image
folders, and the seeded held-out split.

Each split is read once into a (N, C, H, W) uint8 tensor on the training device; the Trainer
slices batches out of it, so no Python runs per image.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import torch
from pydantic import Field

from genmodels.checkpoint import load_tensors, save_tensors
from genmodels.errors import DataError
from genmodels.schema import StrictModel


class DataConfig(StrictModel):
    name: Literal["mnist", "fashion-mnist", "imagefolder"] = Field("mnist", description="dataset")
    root: str | None = Field(None, description="folder holding <dataset>/*.gz; default $GENMODELS_DATA, "
                                                "then ~/.cache/genmodels/data")
    path: str | None = Field(None, description="imagefolder: a folder of PNG/JPEG images (class subfolders optional)")
    image_size: int | None = Field(None, ge=4, le=1024, description="imagefolder: resize to this side "
                                                                     "(default: the fine-tuning source's, else 28)")
    channels: Literal[1, 3] | None = Field(None, description="imagefolder: 1 grey or 3 RGB (default: the "
                                                               "fine-tuning source's, else 1)")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="imagefolder: share kept as its test split")
    classes: list[int] | None = Field(None, description="keep only these labels (every split)")
    limit: int | None = Field(None, ge=1, description="at most this many images per split (a seeded choice)")
    heldout_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of the training split held out "
                                                                      "for evaluation and tuning")
    # Fixes which images are held out, apart from the run seed: runs with different seeds are
    # scored on the same held-out images, and the FID classifier is trained without them.
    split_seed: int = Field(0, ge=0, lt=2**63, description="seed of the held-out split (the same for every run seed)")
    download: bool = Field(True, description="try torchvision's download when no files are found")


# Dataset name -> (folder in our layout, torchvision class whose <root>/<Class>/raw/ we also read).
DATASETS = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST"),
}
SPLIT_FILES = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: torch.uint8}


@dataclass
class Split:
    """Images (N, C, H, W) uint8 and labels (N,) int64, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> "Split":
        index = index.to(self.images.device)
        return Split(take(self.images, index), self.labels[index])


def take(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """images[index] along the first dim, as whole-image row copies: on CPU 2-5x faster than
    advanced indexing of a 4-d tensor, which walks it element by element."""
    return images.flatten(1).index_select(0, index).view(len(index), *images.shape[1:])


@dataclass
class DataSplits:
    train: Split
    heldout: Split
    test: Split
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


# --- IDX files ----------------------------------------------------------------------------


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


# --- finding the files --------------------------------------------------------------------


def candidate_roots(root: str | Path | None = None) -> list[Path]:
    """Where data is looked for, in order: explicit root, $GENMODELS_DATA, ~/.cache/genmodels/data."""
    roots = []
    if root:
        roots.append(Path(root).expanduser())
    env = os.environ.get("GENMODELS_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.home() / ".cache" / "genmodels" / "data")
    return list(dict.fromkeys(roots))


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


# --- splits -------------------------------------------------------------------------------


def heldout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, heldout) of a seeded random split of range(n); heldout gets round(fraction*n)."""
    n_heldout = max(1, round(n * fraction))
    if n_heldout >= n:
        raise DataError(f"data.heldout_fraction={fraction} leaves no training images out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_heldout:].sort().values, perm[:n_heldout].sort().values


def load_splits(
    name: str,
    root: str | Path | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> DataSplits:
    """Train / held-out / test splits on `device`. Held-out is carved from train; test is untouched."""
    cfg = DataConfig(name=name, root=str(root) if root else None, heldout_fraction=heldout_fraction,
                     split_seed=seed, download=download)
    return load_data(cfg, device)


def raw_splits(cfg: DataConfig, image_shape: tuple[int, int, int] | None = None) -> dict[str, Split]:
    """The dataset's own train and test splits on the CPU, before held-out carving and selection."""
    if cfg.name == "imagefolder":
        if not cfg.path:
            raise DataError("data.path: an imagefolder dataset needs the folder of images")
        c, size = (image_shape[0], image_shape[1]) if image_shape else (1, 28)
        images = load_imagefolder(cfg.path, cfg.image_size or size, cfg.channels or c)
        rest, test = heldout_split(len(images), cfg.test_fraction, cfg.split_seed + 1)
        return {"train": images.subset(rest), "test": images.subset(test)}
    return load_raw(cfg.name, cfg.root, cfg.download)


def select(split: Split, classes: list[int] | None, limit: int | None, seed: int) -> Split:
    """Keep the images whose label is in `classes`, then at most `limit` of them (a seeded choice)."""
    if classes is not None:
        keep = torch.isin(split.labels, torch.tensor(classes, device=split.labels.device))
        split = split.subset(keep.nonzero().squeeze(1))
        if len(split) == 0:
            raise DataError(f"data.classes: no image has a label in {classes}")
    if limit is not None and len(split) > limit:
        chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:limit]
        split = split.subset(chosen.sort().values)
    return split


def load_data(cfg: DataConfig, device: torch.device | str = "cpu",
              image_shape: tuple[int, int, int] | None = None) -> DataSplits:
    """Train / held-out / test splits for a `data` config section, on `device`.

    The held-out split is carved from the full training split with data.split_seed before any
    `classes`/`limit` selection, so it is the same images the FID classifier never saw.
    """
    raw = raw_splits(cfg, image_shape)
    train_idx, heldout_idx = heldout_split(len(raw["train"]), cfg.heldout_fraction, cfg.split_seed)
    parts = {"train": raw["train"].subset(train_idx), "heldout": raw["train"].subset(heldout_idx), "test": raw["test"]}
    parts = {k: select(v, cfg.classes, cfg.limit, cfg.split_seed + i).to(device) for i, (k, v) in enumerate(parts.items())}
    return DataSplits(name=cfg.name, **parts)


def kfold_splits(cfg: DataConfig, k: int, device: torch.device | str = "cpu",
                 image_shape: tuple[int, int, int] | None = None) -> list[DataSplits]:
    """k train/held-out splits of the training split for cross-validation: fold i holds out the
    i-th of k seeded, disjoint, near-equal parts. The test split is the same in all of them."""
    raw = raw_splits(cfg, image_shape)
    train = select(raw["train"], cfg.classes, None, cfg.split_seed)
    n = len(train)
    if not 2 <= k <= n:
        raise DataError(f"cv_folds={k}: expected between 2 and {n} folds")
    folds = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).chunk(k)
    test = select(raw["test"], cfg.classes, cfg.limit, cfg.split_seed).to(device)
    out = []
    for i, fold in enumerate(folds):
        rest = torch.cat([f for j, f in enumerate(folds) if j != i])
        out.append(DataSplits(
            train=select(train.subset(rest.sort().values), None, cfg.limit, cfg.split_seed).to(device),
            heldout=select(train.subset(fold.sort().values), None, cfg.limit, cfg.split_seed).to(device),
            test=test, name=cfg.name))
    return out


# --- a folder of images -------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_imagefolder(path: str | Path, size: int, channels: int) -> Split:
    """Every PNG/JPEG under `path`, decoded once, resized to size x size with `channels`, cached
    beside the images as a uint8 tensor. Labels are the sorted subfolder names (0 if none)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data.path: no PNG or JPEG images in {folder}")
    stamp = hashlib.sha1("".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()[:12]
    cache = folder / f".genmodels-{size}x{size}x{channels}-{stamp}.pt"
    if cache.is_file():
        state = load_tensors(cache, {"images": torch.Tensor, "labels": torch.Tensor})
        return Split(state["images"], state["labels"])
    groups = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    images = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, p in enumerate(files):
        images[i] = _decode(p, size, channels)
    labels = torch.tensor([groups.index(p.parent.relative_to(folder).as_posix()) for p in files])
    try:
        save_tensors(cache, {"images": images, "labels": labels})
    except OSError:
        pass  # a read-only folder: decode again next time
    return Split(images, labels)


def _decode(path: Path, size: int, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            array = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    return array.view(size, size, channels).permute(2, 0, 1)

