"""A throw-away PostgreSQL cluster on 127.0.0.1 (Debian's postgresql package), for the storage tests
and benchmarks/scale_out.py: initdb into a temporary folder, start, yield a URL, stop, delete."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

PASSWORD = "tuning-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) if Path("/usr/lib/postgresql").is_dir() else []
    if not found:
        raise RuntimeError("PostgreSQL is not installed: .ci/run installs it (apt-get install postgresql)")
    return found[-1].parent


@contextlib.contextmanager
def postgres_cluster(max_connections: int = 200) -> Iterator[str]:
    """postgresql://... of a fresh cluster with password authentication. PostgreSQL refuses to run
    as root: as root it runs as the `postgres` user the package creates."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="genmodels-pg-"))
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    (root / "pw").write_text(PASSWORD + "\n")
    if user:
        for path in (root, root / "pw"):
            shutil.chown(path, "postgres")
    port = free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*user, *cmd], check=True, capture_output=True, text=True)

    run(str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "scram-sha-256",
        "--pwfile", str(root / "pw"), "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-w", "-l", str(root / "log"), "start", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections={max_connections} -c fsync=off")
    try:
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "studies"],
                       check=True, env={**os.environ, "PGPASSWORD": PASSWORD}, capture_output=True)
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/studies"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)
