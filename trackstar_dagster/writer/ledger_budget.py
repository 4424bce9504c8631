"""Token budgets shared across runs and machines: one GCRA schedule per (token fingerprint, kind) in the
ledger's database, the ``SlotSource`` the client's ``SharedLimiter`` draws from.

One row holds the schedule's theoretical arrival time (``tat``, epoch seconds). Reserving ``n`` slots is
one atomic upsert: ``tat = max(tat, now + lead) + n * interval``, returning the new ``tat`` and the ``now``
it was computed from, so the caller knows where its slots lie relative to the moment it asked. ``now`` is
the database's clock on PostgreSQL (machines' clocks do not matter); on SQLite, one machine, it is this
process's wall clock read at the same instant as its monotonic clock, which makes the conversion exact.

The row stores a fingerprint of the token, never the token. Its writes need no durability (a schedule
lost in a crash is only a schedule): PostgreSQL commits them without waiting for the WAL flush, SQLite
with ``synchronous=NORMAL`` on connections of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from ..base.errors import ConfigError
from .ledger_db import sqlite_pragmas
from .ledger_url import normalise_url

__all__ = ["LedgerBudget", "budget_table"]

#: its own metadata: the ledger's ``create_all`` leaves this table alone, ``LedgerBudget`` creates it on first use
metadata = sa.MetaData()

budget_table = sa.Table(
    "trackstar_budgets",
    metadata,
    # fingerprint of the token (base.redaction), "@", fingerprint of the API's URL: never the token
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # write | read
    sa.Column("tat", sa.Float(precision=53), nullable=False),  # next free slot, epoch seconds
    sa.Column("reserved_at", sa.Float(precision=53), nullable=False),  # the "now" of the last reservation
)

# One statement, atomic on its own (autocommit): SQLite's ``now`` is the caller's wall clock (one machine).
_SQLITE = """
INSERT INTO trackstar_budgets (token, kind, tat, reserved_at) VALUES (:token, :kind, :now + :lead + :span, :now)
ON CONFLICT (token, kind) DO UPDATE
SET tat = max(trackstar_budgets.tat, excluded.reserved_at + :lead) + :span, reserved_at = excluded.reserved_at
RETURNING tat, reserved_at
"""

# statement_timestamp(): the database's clock, one value for the whole statement, read when it arrives.
_POSTGRESQL = """
INSERT INTO trackstar_budgets (token, kind, tat, reserved_at)
VALUES (%(token)s, %(kind)s, extract(epoch from statement_timestamp()) + %(lead)s + %(span)s,
        extract(epoch from statement_timestamp()))
ON CONFLICT (token, kind) DO UPDATE
SET tat = greatest(trackstar_budgets.tat, excluded.reserved_at + %(lead)s) + %(span)s,
    reserved_at = excluded.reserved_at
RETURNING tat, reserved_at
"""


class LedgerBudget:
    """The shared schedules in the ledger's database (a ``SlotSource``). Thread-safe.

    Reservations go through one driver connection of its own, in autocommit, under a lock: a reservation is
    one statement, and SQLAlchemy's per-transaction work would cost more than the statement itself (it is
    paid every 10 writes). A connection that fails is dropped and made again on the next reservation.

    ``lead``: how far ahead of ``now`` a reservation on an idle schedule starts, so its first slot is still
    ahead when the answer arrives. ``timeout``: seconds to connect (or to wait for SQLite's lock) before a
    reservation fails, and the client with it (fail closed).
    """

    def __init__(
        self, url: str | os.PathLike[str] | None = None, *, lead: float = 0.02, timeout: float = 10.0
    ) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"ledger database {self.dialect!r} is not supported; use SQLite or PostgreSQL")
        self.name = f"ledger budget at {parsed.render_as_string(hide_password=True)}"
        self.lead = float(lead)
        self.timeout = float(timeout)
        self.engine = _engine(self.url, self.dialect, timeout)
        self._sql = _SQLITE if self.dialect == "sqlite" else _POSTGRESQL
        self._lock = threading.Lock()
        self._fairy: Any = None  # the pool's handle on it
        self._conn: Any = None  # the driver's connection (sqlite3 or psycopg), made on first use

    def __repr__(self) -> str:
        return f"LedgerBudget({self.name!r})"

    def _connection(self) -> Any:
        """The driver connection (autocommit), with the table created on first use (not in the constructor:
        a resource builds this before any run)."""
        if self._conn is None:
            database = make_url(self.url).database or ""
            if (
                self.dialect == "sqlite"
                and database not in ("", ":memory:")
                and not database.startswith("file:")
            ):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._create_table()
            fairy = self.engine.raw_connection()
            conn: Any = fairy.driver_connection
            if self.dialect == "postgresql":
                conn.autocommit = True
                conn.execute("SET synchronous_commit TO OFF")  # a schedule lost in a crash is only a schedule
            self._fairy, self._conn = fairy, conn
        return self._conn

    def _create_table(self) -> None:
        """Create the table unless it exists; another process creating it at the same moment is no error."""
        try:
            metadata.create_all(self.engine)
        except sa.exc.DBAPIError:
            if not sa.inspect(self.engine).has_table(budget_table.name):
                raise

    def _drop(self) -> None:
        """Forget a connection that failed (the next reservation makes a new one)."""
        with contextlib.suppress(Exception):
            self._fairy.invalidate()
        self._fairy = self._conn = None

    def reserve(self, token: str, kind: str, count: int, interval: float) -> list[float]:
        """Reserve ``count`` slots ``interval`` apart; their times on this process's monotonic clock."""
        slots, now, mono = self.reserve_on_db_clock(token, kind, count, interval)
        return [mono + (slot - now) for slot in slots]

    def reserve_on_db_clock(
        self, token: str, kind: str, count: int, interval: float
    ) -> tuple[list[float], float, float]:
        """``reserve``'s slots on the schedule's own clock (the database's), with the ``now`` they were
        reserved at and this process's monotonic time read just before asking. The schedule is exact on that
        clock; the conversion to this process's clock is off by the time the statement took to arrive (a few
        ms on a busy machine), which the shared window's margin (``SHARED_WINDOW_S``) absorbs."""
        span = count * interval
        params: dict[str, Any] = {"token": token, "kind": kind, "lead": self.lead, "span": span}
        with self._lock:
            try:
                cur = self._connection().cursor()
                mono = time.monotonic()
                params["now"] = time.time()  # SQLite's clock; read at the same instant as ``mono``
                cur.execute(self._sql, params)
                tat, now = cur.fetchall()[0]  # all rows: SQLite commits when the statement is done
                cur.close()
            except BaseException:
                self._drop()
                raise
        first = float(tat) - span
        return [first + i * interval for i in range(count)], float(now), mono

    def listing(self) -> list[dict[str, Any]]:
        """Every schedule: token fingerprint, kind, seconds its next free slot lies ahead (negative: idle)."""
        self._create_table()
        t = budget_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.token, t.c.kind, t.c.tat)).all()
        now = time.time()  # on PostgreSQL, close enough for a listing
        return [{"token": r.token, "kind": r.kind, "seconds_ahead": float(r.tat) - now} for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._fairy.close()
                self._conn = None
        self.engine.dispose()


def _engine(url: str, dialect: str, timeout: float) -> Engine:
    """An engine for the budget's connection: SQLite in WAL without fsync per commit, in autocommit (each
    reservation is one statement); PostgreSQL with a connect timeout, so a database that is down fails a
    reservation instead of hanging it."""
    if dialect == "postgresql":
        return sa.create_engine(url, connect_args={"connect_timeout": max(1, round(timeout))})
    database = make_url(url).database or ""
    memory = database in ("", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": timeout}}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # autocommit: a statement is its own transaction
        sqlite_pragmas(dbapi_conn, memory=memory, synchronous="NORMAL", busy_timeout_s=timeout)

    return engine
