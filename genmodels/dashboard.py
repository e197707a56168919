"""`genmodels dashboard`: optuna-dashboard on a study's storage, served on 127.0.0.1.

It reads the storage as workers write it, so a running study can be watched live, whether it
lives in a study folder's SQLite file or on a PostgreSQL server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna_dashboard

from genmodels.errors import UserError
from genmodels.runtime import signals_interrupt
from genmodels.storage import open_storage


def storage_of(study_dir: str | None, url: str | None) -> str:
    """The storage URL a study folder's study.db gives, or the one named."""
    if url:
        return url
    if study_dir is None:
        raise UserError("dashboard: give a study folder (runs/<study>) or --storage URL")
    db = Path(study_dir) / "study.db"
    if not db.is_file():
        raise UserError(f"{study_dir}: no study.db (a study folder holds one; a study on a database server needs "
                        f"--storage URL)")
    return f"sqlite:///{db}"


def serve(url: str, port: int, host: str = "127.0.0.1") -> None:
    """Serve until Ctrl-C or SIGTERM."""
    storage = open_storage(url)
    print(f"study dashboard: http://{host}:{port}/dashboard  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        with signals_interrupt():
            optuna_dashboard.run_server(storage, host=host, port=port)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot serve there ({exc.strerror})") from None
