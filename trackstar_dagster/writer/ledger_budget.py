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

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from ..base.errors import ConfigError
from .ledger_table import metadata
from .ledger_url import normalise_url

__all__ = ["LedgerBudget", "budget_table"]

budget_table = sa.Table(
    "trackstar_budgets",
    metadata,
    # fingerprint of the token (base.redaction), "@", fingerprint of the API's URL: never the token
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # write | read
    sa.Column("tat", sa.Float(precision=53), nullable=False),  # next free slot, epoch seconds
    sa.Column("reserved_at", sa.Float(precision=53), nullable=False),  # the "now" of the last reservation
)

_SQLITE = """
INSERT INTO trackstar_budgets (token, kind, tat, reserved_at) VALUES (:token, :kind, :now + :lead + :span, :now)
ON CONFLICT (token, kind) DO UPDATE
SET tat = max(trackstar_budgets.tat, excluded.reserved_at + :lead) + :span, reserved_at = excluded.reserved_at
RETURNING tat, reserved_at
"""

# statement_timestamp(): one value for the whole statement, read when the statement reaches the server.
_POSTGRESQL = """
INSERT INTO trackstar_budgets (token, kind, tat, reserved_at)
VALUES (:token, :kind, extract(epoch from statement_timestamp()) + :lead + :span,
        extract(epoch from statement_timestamp()))
ON CONFLICT (token, kind) DO UPDATE
SET tat = greatest(trackstar_budgets.tat, excluded.reserved_at + :lead) + :span,
    reserved_at = excluded.reserved_at
RETURNING tat, reserved_at
"""


class LedgerBudget:
    """The shared schedules in the ledger's database (a ``SlotSource``). Thread-safe; one engine of its own.

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
        self.engine = _engine(self.url, self.dialect, timeout)
        self._sql = sa.text(_SQLITE if self.dialect == "sqlite" else _POSTGRESQL)
        self._ready = False

    def __repr__(self) -> str:
        return f"LedgerBudget({self.name!r})"

    def _create(self) -> None:
        """The table, on first use (not in the constructor: a resource builds this before any run)."""
        if not self._ready:
            database = make_url(self.url).database or ""
            if (
                self.dialect == "sqlite"
                and database not in ("", ":memory:")
                and not database.startswith("file:")
            ):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            metadata.create_all(self.engine, tables=[budget_table])
            self._ready = True

    def reserve(self, token: str, kind: str, count: int, interval: float) -> list[float]:
        """Reserve ``count`` slots ``interval`` apart; their times on this process's monotonic clock."""
        self._create()
        span = count * interval
        params: dict[str, Any] = {"token": token, "kind": kind, "lead": self.lead, "span": span}
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            mono = time.monotonic()
            params["now"] = time.time()  # SQLite only; read at the same instant as ``mono``
            tat, now = conn.execute(self._sql, params).one()
        first = mono + (float(tat) - span - float(now))
        return [first + i * interval for i in range(count)]

    def listing(self) -> list[dict[str, Any]]:
        """Every schedule: token fingerprint, kind, seconds its next free slot lies ahead (negative: idle)."""
        self._create()
        t = budget_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.token, t.c.kind, t.c.tat)).all()
        now = time.time()  # on PostgreSQL, close enough for a listing
        return [{"token": r.token, "kind": r.kind, "seconds_ahead": float(r.tat) - now} for r in rows]

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str, dialect: str, timeout: float) -> Engine:
    """An engine for the budget's short statements: SQLite in WAL without fsync per commit, PostgreSQL
    with a connect timeout, so a database that is down fails a reservation instead of hanging it."""
    if dialect == "postgresql":
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, round(timeout))}
        )
    database = make_url(url).database or ""
    memory = database in ("", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": timeout}}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
