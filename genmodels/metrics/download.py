"""Fetching a weights file once: streamed to a temporary file beside its destination, its SHA-256
checked before a byte of it is used, then moved into place in one rename. A wrong hash, a cut
download or a refused connection is one line, and nothing is left behind."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from genmodels.errors import UserError


def fetch(url: str, path: Path, sha256_prefix: str, timeout: float = 60.0) -> Path:
    """Download `url` to `path` unless it is there, checking that the file's SHA-256 starts with
    `sha256_prefix` (the digest part of a torch hub file name: what its publisher states)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        digest, size = hashlib.sha256(), 0
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            expected = response.headers.get("Content-Length")
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected is not None and size != int(expected):
            raise UserError(f"{url}: the download was cut short ({size:,} of {int(expected):,} bytes); nothing kept")
        if not digest.hexdigest().startswith(sha256_prefix):
            raise UserError(f"{url}: SHA-256 {digest.hexdigest()[:16]}... is not the published {sha256_prefix}...; "
                            f"nothing kept")
        os.replace(partial, path)  # whole, checked, in one step
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        what = "cut short" if isinstance(exc, http.client.IncompleteRead) else "failed"
        raise UserError(f"{url}: the download {what} ({type(exc).__name__}: {reason}); nothing kept") from None
    finally:
        partial.unlink(missing_ok=True)
    return path
