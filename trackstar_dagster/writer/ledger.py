"""The write ledger: what was already sent to Trackstar, so re-runs, retries and crashes never write twice.

One row per (connection, action, key). The writer records an ``intent`` before a request leaves and the
outcome after it; an ``intent`` row found by a later run means the process died in between (the outcome is
unknown) and the record must be looked up in Trackstar before it is sent again.

Durability versus speed: intents are committed in batches right before the batch is released to the
senders (one fsync per batch, not per record), outcomes are buffered and committed every fraction of a
second. A lost outcome is safe (its intent is still there and is reconciled); a lost intent would not be,
so no request is sent before its intent's commit returned.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from ..errors import ConfigError

#: Environment variable that overrides the default ledger location (any SQLAlchemy URL).
LEDGER_URL_ENV = "TRACKSTAR_DAGSTER_LEDGER_URL"

STATUSES = ("intent", "created", "updated", "failed", "rejected")
_CHUNK = 500  # keys per IN (...) query; far below SQLite's variable limit

metadata = sa.MetaData()
ledger_table = sa.Table(
    "trackstar_write_ledger",
    metadata,
    sa.Column("connection", sa.String(255), primary_key=True),
    sa.Column("action", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("body_hash", sa.String(128)),  # the body of the last attempt (intent)
    sa.Column("written_hash", sa.String(128)),  # the body Trackstar is known to hold
    sa.Column("trackstar_id", sa.String(255)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("operation", sa.String(16)),  # create | update: what the last attempt was
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("outcome_unknown", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("http_status", sa.Integer),
    sa.Column("request_id", sa.String(255)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as read back."""

    connection: str
    action: str
    key: str
    body_hash: str | None
    written_hash: str | None
    trackstar_id: str | None
    status: str
    operation: str | None
    idempotency_key: str | None
    outcome_unknown: bool
    attempts: int
    http_status: int | None
    request_id: str | None
    last_error: str | None
    last_attempt_at: datetime | None
    updated_at: datetime | None

    @property
    def needs_reconcile(self) -> bool:
        """True when a create may have taken effect without us knowing its id (unknown outcome, or a
        success whose answer carried no id): look it up before sending again."""
        if self.trackstar_id is not None:
            return False
        return self.status in ("created", "updated") or (self.outcome_unknown and self.status in ("intent", "failed"))


@dataclass(frozen=True)
class Intent:
    """About to send: ``operation`` is ``create`` or ``update``."""

    connection: str
    action: str
    key: str
    body_hash: str
    idempotency_key: str
    operation: str = "create"


@dataclass(frozen=True)
class Outcome:
    """What came back. ``status``: created, updated, failed or rejected."""

    connection: str
    action: str
    key: str
    status: str
    body_hash: str | None = None
    trackstar_id: str | None = None
    outcome_unknown: bool = False
    http_status: int | None = None
    request_id: str | None = None
    error: str | None = None


def default_ledger_url() -> str:
    """``$TRACKSTAR_DAGSTER_LEDGER_URL``, else ``$DAGSTER_HOME/trackstar/ledger.sqlite``, else the home dir.

    Never relative to the working directory: ``dagster dev``, the daemon and tests all start elsewhere.
    """
    env = os.environ.get(LEDGER_URL_ENV)
    if env:
        return env
    home = os.environ.get("DAGSTER_HOME")
    base = Path(home).expanduser() / "trackstar" if home else Path.home() / ".trackstar_dagster"
    return f"sqlite:///{(base / 'ledger.sqlite').resolve()}"


def _normalise_url(url: str | os.PathLike[str] | None) -> str:
    if url is None:
        return default_ledger_url()
    text = os.fspath(url)
    if "://" not in text:  # a plain file path
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"ledger path {text!r} is relative; give an absolute path or a SQLAlchemy URL")
        return f"sqlite:///{path}"
    parsed = make_url(text)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = parsed.database
        if not db.startswith("file:") and not Path(db).expanduser().is_absolute():
            raise ConfigError(
                f"ledger SQLite file {db!r} is relative to the working directory; use sqlite:////absolute/path"
            )
    return text


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """Durable record of writes, on any SQLAlchemy 2 URL (SQLite file by default, PostgreSQL for many hosts).

    Thread-safe; several processes may share one SQLite file (WAL, busy timeout, ``BEGIN IMMEDIATE``)
    or one PostgreSQL database (row upserts).
    """

    def __init__(self, url: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 60.0) -> None:
        self.url = _normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            memory = parsed.database in (None, "", ":memory:")
            if not memory:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_s}
            if memory:
                kwargs["poolclass"] = StaticPool
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            self._sqlite_setup(memory, busy_timeout_s)
        metadata.create_all(self.engine)

    def _sqlite_setup(self, memory: bool, busy_timeout_s: float) -> None:
        """WAL for concurrent readers, FULL sync (durable intents), explicit BEGIN IMMEDIATE to avoid
        lock-upgrade deadlocks between processes."""

        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def __repr__(self) -> str:
        return f"Ledger({make_url(self.url).render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------------------------------

    def load(self, ids: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], LedgerEntry]:
        """Entries for many (connection, action, key) at once (chunked IN queries)."""
        by_group: dict[tuple[str, str], list[str]] = {}
        for connection, action, key in ids:
            by_group.setdefault((connection, action), []).append(key)
        out: dict[tuple[str, str, str], LedgerEntry] = {}
        t = ledger_table
        with self.engine.connect() as conn:
            for (connection, action), keys in by_group.items():
                for i in range(0, len(keys), _CHUNK):
                    chunk = keys[i : i + _CHUNK]
                    rows = conn.execute(
                        sa.select(t).where(t.c.connection == connection, t.c.action == action, t.c.key.in_(chunk))
                    )
                    for row in rows:
                        entry = LedgerEntry(**row._mapping)
                        out[(entry.connection, entry.action, entry.key)] = entry
        return out

    def get(self, connection: str, action: str, key: str) -> LedgerEntry | None:
        return self.load([(connection, action, key)]).get((connection, action, key))

    def entries(self, connection: str | None = None, action: str | None = None) -> pd.DataFrame:
        """The ledger as a DataFrame (for inspection and tests)."""
        t = ledger_table
        query = sa.select(t)
        if connection is not None:
            query = query.where(t.c.connection == connection)
        if action is not None:
            query = query.where(t.c.action == action)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(t.c.connection, t.c.action, t.c.key))]
        return pd.DataFrame(rows, columns=[c.name for c in t.columns])

    # -- writes ---------------------------------------------------------------------------------------

    def _insert(self) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            return None
        return insert(ledger_table)

    def _upsert(self, rows: Sequence[dict[str, Any]], update_cols: Sequence[str], bump_attempts: bool) -> None:
        """Insert-or-update rows in one transaction (one commit, one fsync)."""
        if not rows:
            return
        t = ledger_table
        pk = ("connection", "action", "key")
        with self._lock, self.engine.begin() as conn:
            stmt = self._insert()
            if stmt is not None:
                set_: dict[str, Any] = {c: stmt.excluded[c] for c in update_cols}
                if bump_attempts:
                    set_["attempts"] = t.c.attempts + 1
                conn.execute(stmt.on_conflict_do_update(index_elements=list(pk), set_=set_), list(rows))
                return
            # Other databases: update, then insert what was not there.
            for row in rows:
                where = sa.and_(*(t.c[c] == row[c] for c in pk))
                values = {c: row[c] for c in update_cols}
                if bump_attempts:
                    values["attempts"] = t.c.attempts + 1
                if conn.execute(sa.update(t).where(where).values(**values)).rowcount == 0:
                    conn.execute(sa.insert(t).values(**row))

    def record_intents(self, intents: Sequence[Intent]) -> None:
        """Durably note that these requests are about to be sent (returns after the commit)."""
        now = _now()
        rows = [
            {
                "connection": i.connection,
                "action": i.action,
                "key": i.key,
                "body_hash": i.body_hash,
                "written_hash": None,
                "trackstar_id": None,
                "status": "intent",
                "operation": i.operation,
                "idempotency_key": i.idempotency_key,
                "outcome_unknown": True,
                "attempts": 1,
                "http_status": None,
                "request_id": None,
                "last_error": None,
                "last_attempt_at": now,
                "updated_at": now,
            }
            for i in intents
        ]
        cols = ("body_hash", "status", "operation", "idempotency_key", "outcome_unknown", "last_attempt_at", "updated_at")
        self._upsert(rows, cols, bump_attempts=True)

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Store results; successes set the Trackstar id and the written body, failures keep them."""
        if not outcomes:
            return
        now = _now()
        ok: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        for o in outcomes:
            if o.status not in STATUSES or o.status == "intent":
                raise ValueError(f"not an outcome status: {o.status!r}")
            success = o.status in ("created", "updated")
            row = {
                "connection": o.connection,
                "action": o.action,
                "key": o.key,
                "body_hash": o.body_hash,
                "written_hash": o.body_hash if success else None,
                "trackstar_id": o.trackstar_id,
                "status": o.status,
                "operation": None,
                "idempotency_key": None,
                "outcome_unknown": bool(o.outcome_unknown) and not success,
                "attempts": 0,
                "http_status": o.http_status,
                "request_id": o.request_id,
                "last_error": o.error,
                "last_attempt_at": None,
                "updated_at": now,
            }
            (ok if success else bad).append(row)
        common = ("status", "outcome_unknown", "http_status", "request_id", "last_error", "updated_at")
        if ok:
            self._upsert(ok, (*common, "trackstar_id", "written_hash", "body_hash"), bump_attempts=False)
        if bad:
            self._upsert(bad, common, bump_attempts=False)

    def forget(self, connection: str, action: str | None = None, keys: Iterable[str] | None = None) -> int:
        """Delete rows (e.g. after records were deleted in Trackstar on purpose). Returns the count."""
        t = ledger_table
        where = [t.c.connection == connection]
        if action is not None:
            where.append(t.c.action == action)
        total = 0
        with self._lock, self.engine.begin() as conn:
            if keys is None:
                return conn.execute(sa.delete(t).where(*where)).rowcount
            key_list = list(keys)
            for i in range(0, len(key_list), _CHUNK):
                chunk = key_list[i : i + _CHUNK]
                total += conn.execute(sa.delete(t).where(*where, t.c.key.in_(chunk))).rowcount
        return total
