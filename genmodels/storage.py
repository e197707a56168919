"""Opening a study's Optuna storage: SQLite in the study folder, or a database server
(PostgreSQL) shared by workers on many machines.

Checked when opened, so an unreachable server, bad credentials or a missing driver is one line
before any trial runs; heartbeats let another worker fail and retry the trial of a dead one.
"""

from __future__ import annotations

import contextlib
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url

from genmodels.errors import UserError
from genmodels.files import exclusive

HEARTBEAT_INTERVAL = 5  # seconds between a running trial's heartbeats
GRACE_PERIOD = 30  # a trial silent this long belongs to a dead worker
MAX_RETRY = 3  # retries of one trial after its worker died
# Key of the PostgreSQL advisory lock held while Optuna creates its tables (any 64-bit number
# that other applications on the same database are unlikely to use).
SCHEMA_LOCK = zlib.crc32(b"genmodels optuna schema")


def safe_url(url: str) -> str:
    """The URL without its password, for messages and reports."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':')[0]}:***@{tail}" if ":" in userinfo else url


def _driver_error(url: str, name: str | None) -> UserError:
    return UserError(f"--storage {safe_url(url)}: the database driver is not installed ({name}); "
                     f"for PostgreSQL: pip install 'genmodels[postgres]'")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's RDB storage with heartbeats and stale-trial retries, connected now."""
    try:  # the URL and its driver first: a missing driver is named, not hidden in Optuna's message
        dialect = make_url(url).get_dialect()
        dialect.import_dbapi()
    except ModuleNotFoundError as exc:
        raise _driver_error(url, exc.name) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise UserError(f"--storage {safe_url(url)}: not a database URL ({str(exc).splitlines()[0]})") from None
    if url.startswith("sqlite"):
        # Several worker processes share one SQLite file: wait for its lock instead of failing.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        with warnings.catch_warnings(), _schema_lock(url, dialect.name, engine_kwargs), _sqlite_lock(url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD, engine_kwargs=engine_kwargs,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except ModuleNotFoundError as exc:
        raise _driver_error(url, exc.name) from None
    except Exception as exc:  # sqlalchemy's errors for a bad URL, a refused connection, a wrong password
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--storage {safe_url(url)}: cannot open the study storage ({reason[:300]})") from None


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    """Held while Optuna creates its tables in a SQLite file that several worker processes open
    at once: each stamps the schema version on a new file, and two first stamps collide."""
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:" or not Path(database).parent.is_dir():
        yield
        return
    with exclusive(f"{database}.lock"):
        yield


class _schema_lock:
    """Held while Optuna creates its tables on a PostgreSQL server: workers (and a dashboard)
    that open an empty database at the same moment would otherwise race to create the same
    tables, and one of them fails or waits on the other's catalog rows."""

    def __init__(self, url: str, dialect: str, engine_kwargs: dict[str, Any]):
        self.engine = sqlalchemy.create_engine(url, **engine_kwargs) if dialect == "postgresql" else None
        self.connection: sqlalchemy.Connection | None = None

    def __enter__(self) -> None:
        if self.engine is not None:
            self.connection = self.engine.connect()
            self.connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.close()  # ends the session, which releases its advisory lock
        if self.engine is not None:
            self.engine.dispose()
