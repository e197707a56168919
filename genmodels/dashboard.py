"""`genmodels dashboard`: optuna-dashboard on a study's storage, served on 127.0.0.1.

It reads the storage as workers write it, so a running study can be watched live, whether it
lives in a study folder's SQLite file or on a PostgreSQL server.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import optuna_dashboard

from genmodels.errors import Interrupted, UserError
from genmodels.runtime import signals_interrupt
from genmodels.tuning.storage import open_storage


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
    """Serve until Ctrl-C or SIGTERM.

    The server runs in a daemon thread and the main thread waits for a signal. Python runs signal
    handlers in the main thread, and wsgiref's request handling catches every exception raised in
    it (a bare `except:` that answers 500): a SIGTERM landing while a response was being finished
    was swallowed, and the server went on serving.
    """
    storage = open_storage(url)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            optuna_dashboard.run_server(storage, host=host, port=port)
        except BaseException as exc:  # handed to the main thread, which reports it
            failed.append(exc)

    server = threading.Thread(target=run, name="dashboard", daemon=True)
    print(f"study dashboard: http://{host}:{port}/dashboard  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        with signals_interrupt():
            server.start()
            server.join()  # a signal interrupts the wait (POSIX), its handler raising here
    except Interrupted:
        return  # stopping is what was asked; the daemon thread ends with the process
    if failed and isinstance(failed[0], OSError):
        raise UserError(f"--port {port}: cannot serve there ({failed[0].strerror})") from None
    if failed:
        raise failed[0]
