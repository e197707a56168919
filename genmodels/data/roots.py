"""Where dataset files are looked for: the config's root, $GENMODELS_DATA, then the user cache."""

from __future__ import annotations

import os
from pathlib import Path


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

