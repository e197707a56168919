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
#: queues a dead worker's trial again (its parameters and run folder), at most MAX_RETRY times
with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
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
    if dialect.name == "sqlite":
        # Several worker processes share one SQLite file: wait for its lock instead of failing.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        with warnings.catch_warnings(), _schema_lock(url, dialect.name, engine_kwargs):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD, engine_kwargs=engine_kwargs,
                heartbeat_stale_trial_callback=RETRY)
    except ModuleNotFoundError as exc:
        raise _driver_error(url, exc.name) from None
    except Exception as exc:  # sqlalchemy's errors for a bad URL, a refused connection, a wrong password
        text = str(getattr(exc, "orig", None) or exc).strip()
        reason = text.splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--storage {safe_url(url)}: cannot open the study storage ({reason[:300]})") from None


@contextlib.contextmanager
def _schema_lock(url: str, dialect: str, engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Held while Optuna creates its tables, so that workers (and a dashboard) opening an empty
    storage at the same moment do not race: on PostgreSQL two creators of the same tables fail
    or wait on each other's catalog rows (an advisory lock serialises them); in a new SQLite file
    two first stamps of the schema version collide (a lock file beside it)."""
    if dialect == "postgresql":
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        try:
            with engine.connect() as connection:  # closing the session releases its advisory lock
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
                yield
        finally:
            engine.dispose()
        return
    database = make_url(url).database if dialect == "sqlite" else None
    if not database or database == ":memory:" or not Path(database).parent.is_dir():
        yield
        return
    with exclusive(f"{database}.lock"):
        yield
