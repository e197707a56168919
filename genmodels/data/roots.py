"""Where dataset files are looked for (the config's root, $GENMODELS_DATA, then the user cache), and
finding a dataset's files there or fetching them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

from genmodels.errors import DataError


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



def cache_root() -> Path:
    """Where the toolkit caches what it computes (decoded image folders, feature extractors):
    $GENMODELS_CACHE when set, else ~/.cache/genmodels."""
    root = os.environ.get("GENMODELS_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "genmodels"


def locate(dataset: str, root: str | Path | None, folders: Sequence[str], files: Sequence[str],
           download: Callable[[Path], None] | None) -> Path:
    """The first <candidate root>/<folder> holding every one of `files`. When none does and
    `download` is given, it fetches into the first candidate root and the folders are looked at
    again; a failed or cut download removes what it made. Else one line naming the files and where
    they go."""
    def find() -> Path | None:
        for base in candidate_roots(root):
            for folder in folders:
                if all((base / folder / f).is_file() for f in files):
                    return base / folder
        return None

    reason = "download is off"
    if (found := find()) is None and download is not None:
        target = candidate_roots(root)[0]
        made = next((p for p in [*reversed(target.parents), target] if not p.exists()), None)
        try:
            download(target)
            reason = "the download gave no such files"
        except Exception as exc:  # network, permissions, a checksum mismatch: all end the same way
            reason = f"download into {target} failed: {type(exc).__name__}: {exc}".splitlines()[0]
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
        found = find()
    if found is None:
        looked = ", ".join(str(b / f) for b in candidate_roots(root) for f in folders)
        raise DataError(f"dataset '{dataset}' not found (looked in {looked}; {reason}). Put {', '.join(files)} in "
                        f"<root>/{folders[0]}/ and pass --data-root <root> or set GENMODELS_DATA=<root>")
    return found


def fetch_archive(url: str, md5: str) -> Callable[[Path], None]:
    """A `download` for `locate`: torchvision's fetch of an archive, MD5-checked, then extracted."""
    def fetch(target: Path) -> None:
        from torchvision.datasets.utils import download_and_extract_archive  # only when downloading

        download_and_extract_archive(url, str(target), md5=md5, remove_finished=True)
    return fetch
