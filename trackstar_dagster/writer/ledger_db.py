"""The ledger's database: the engine on a SQLAlchemy 2 URL (SQLite or PostgreSQL), set up for several
writers at once, and the database's clock, by which claims expire.

SQLite: WAL for concurrent readers, FULL sync (durable intents), a busy timeout, and an explicit
``BEGIN IMMEDIATE`` to avoid lock-upgrade deadlocks between processes. PostgreSQL: a pool that pings.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from ..base.errors import ConfigError
from .ledger_url import normalise_url


def sqlite_pragmas(dbapi_conn: Any, *, memory: bool, synchronous: str, busy_timeout_s: float) -> None:
    """A SQLite connection's settings for many processes on one file: WAL (readers do not block the writer),
    the fsync policy asked, and a busy timeout instead of an immediate "database is locked"."""
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")  # first: the next pragma may wait
    if not memory:
        # locked: another process is switching it, and WAL is kept in the file
        with contextlib.suppress(sqlite3.OperationalError):
            cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.close()


class LedgerDatabase:
    """The engine, its dialect (``sqlite`` or ``postgresql``) and the lock that serialises this process's
    writing transactions; what the ``Ledger`` and its ``ClaimBook`` share."""

    def __init__(self, url: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 60.0) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"ledger database {self.dialect!r} is not supported; use SQLite or PostgreSQL")
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        memory = False
        if self.dialect == "sqlite":
            database = parsed.database or ""
            memory = database in ("", ":memory:")
            if not memory:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_s}
            if memory:
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            self.setup_sqlite(memory, busy_timeout_s)

    def setup_sqlite(self, memory: bool, busy_timeout_s: float) -> None:
        """WAL for concurrent readers, FULL sync (durable intents), explicit BEGIN IMMEDIATE to avoid
        lock-upgrade deadlocks between processes."""

        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            sqlite_pragmas(dbapi_conn, memory=memory, synchronous="FULL", busy_timeout_s=busy_timeout_s)

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def safe_url(self) -> str:
        """The URL without its password (for reprs and logs)."""
        return make_url(self.url).render_as_string(hide_password=True)

    def now(self) -> Any:
        """Epoch seconds on the database's clock (claims expire by it, whatever the hosts' clocks say)."""
        if self.dialect == "sqlite":
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
        return sa.literal_column("extract(epoch from clock_timestamp())", sa.Float)

    def time(self) -> float:
        """The database clock's epoch seconds, read now."""
        with self.engine.connect() as conn:
            return float(conn.execute(sa.select(self.now())).scalar_one())

    def dispose(self) -> None:
        self.engine.dispose()
