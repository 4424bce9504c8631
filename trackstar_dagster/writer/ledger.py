"""The write ledger: what was sent to Trackstar, and who is sending what right now.

One row per (namespace, connection, action, key id). The namespace is the sync's name, so two syncs on one
token never share a row; the key id is ``keys.key_id`` (the key, or a hash of a long one), so every backend
holds every key. What a row guards:

* **Claims** (``claim_owner``, ``claim_expires`` on the database's clock): a writer claims its keys before
  it decides anything about them, atomically (``INSERT .. ON CONFLICT DO UPDATE .. WHERE`` the row is free,
  ours, or expired). A key claimed by a live writer elsewhere is not touched; an expired claim is taken over
  and the record looked up before it is sent again. Claims are renewed while held and released when the
  writer ends, so two runs (processes, hosts) never both send one key.
* **Intents**: committed (conditionally on still holding the claim) before a request leaves. An ``intent``
  row found later means the outcome is unknown: the record is looked up in Trackstar before it is re-sent.
* **Outcomes**: created/updated (with the Trackstar id and the body hash it holds), failed, rejected. A
  rejection advances ``generation``, so the fixed body gets a fresh create ``Idempotency-Key``.

Durability: intents are one commit per batch, before any request of the batch leaves; outcomes are
committed in batches by the writer, which flushes every queued outcome before it returns or raises.

Upgrades: the first release's table (``trackstar_write_ledger``) is copied into this one on open, under the
empty namespace and ``encoding`` 1 (its bodies carried the first release's tags); the writer moves such rows
into its own namespace and re-hashes them when it meets their keys, so nothing already written is re-sent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from ..base.errors import ConfigError
from ..base.keys import key_id

#: Environment variable that overrides the default ledger location (any SQLAlchemy URL).
LEDGER_URL_ENV = "TRACKSTAR_DAGSTER_LEDGER_URL"

STATUSES = ("new", "intent", "created", "updated", "failed", "rejected")
OUTCOME_STATUSES = ("created", "updated", "failed", "rejected")
ENCODING = 2  # body encoding of this release (1: the first release's tags)
LEGACY_NAMESPACE = ""  # rows copied from the first release's table
_CHUNK = 500  # keys per statement; far below SQLite's variable limit
_TEXT_MAX = 255

metadata = sa.MetaData()
ledger_table = sa.Table(
    "trackstar_ledger",
    metadata,
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("connection", sa.String(255), primary_key=True),
    sa.Column("action", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),  # keys.key_id(key)
    sa.Column("key_text", sa.Text),  # the full key, for people
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("body_hash", sa.String(128)),  # the body of the last attempt (intent)
    sa.Column("written_hash", sa.String(128)),  # the body Trackstar is known to hold (NULL: not verified)
    sa.Column("encoding", sa.Integer, nullable=False, default=ENCODING),
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
    sa.Column("claim_owner", sa.String(64)),
    sa.Column("claim_run", sa.String(255)),  # who holds it, for people (e.g. the Dagster run id)
    sa.Column("claim_expires", sa.Float),  # epoch seconds on the database's clock
)
_COLUMNS = [c.name for c in ledger_table.columns]
_PK = ("namespace", "connection", "action", "key")
LEGACY_TABLE = "trackstar_write_ledger"


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as read back (``key`` is the key id)."""

    namespace: str
    connection: str
    action: str
    key: str
    key_text: str | None
    generation: int
    body_hash: str | None
    written_hash: str | None
    encoding: int
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
    claim_owner: str | None
    claim_run: str | None
    claim_expires: float | None

    @property
    def needs_reconcile(self) -> bool:
        """A create may have taken effect without us knowing its id: look it up before sending again."""
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


@dataclass(frozen=True)
class Held:
    """A record found in Trackstar by its tag (a ledger rebuild): ``written_hash`` None when not verified."""

    connection: str
    action: str
    key_id: str
    trackstar_id: str
    written_hash: str | None = None
    key_text: str | None = None


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


def _clean(text: str | None, limit: int | None = None) -> str | None:
    """Text any backend stores: no NUL (PostgreSQL refuses it), bounded where the column is."""
    if text is None:
        return None
    text = str(text).replace("\x00", "\\x00")
    return text[:limit] if limit else text


class Ledger:
    """Durable record of writes and claims, on any SQLAlchemy 2 URL (a SQLite file by default, PostgreSQL
    for many hosts). Thread-safe; several processes may share one SQLite file (WAL, busy timeout,
    ``BEGIN IMMEDIATE``) or one PostgreSQL database (row-level upserts)."""

    def __init__(self, url: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 60.0) -> None:
        self.url = _normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"ledger database {self.dialect!r} is not supported; use SQLite or PostgreSQL")
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            memory = parsed.database in (None, "", ":memory:")
            if not memory:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_s}
            if memory:
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            self._sqlite_setup(memory, busy_timeout_s)
        metadata.create_all(self.engine)
        self._migrate_first_release()

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

    # -- the database's clock -------------------------------------------------------------------------

    def _db_now(self) -> Any:
        """Epoch seconds on the database's clock (claims expire by it, whatever the hosts' clocks say)."""
        if self.dialect == "sqlite":
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
        return sa.literal_column("extract(epoch from clock_timestamp())", sa.Float)

    def db_time(self) -> float:
        with self.engine.connect() as conn:
            return float(conn.execute(sa.select(self._db_now())).scalar_one())

    def _insert(self) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(ledger_table)

    # -- upgrade from the first release ---------------------------------------------------------------

    def _migrate_first_release(self) -> None:
        """Copy the first release's table into this one (empty namespace, encoding 1), then drop it."""
        if LEGACY_TABLE not in sa.inspect(self.engine).get_table_names():
            return
        old = sa.Table(LEGACY_TABLE, sa.MetaData(), autoload_with=self.engine)
        with self._lock, self.engine.begin() as conn:
            if LEGACY_TABLE not in sa.inspect(conn).get_table_names():
                return  # another process migrated it meanwhile
            rows = [dict(r._mapping) for r in conn.execute(sa.select(old))]
            moved = []
            for r in rows:
                moved.append({
                    "namespace": LEGACY_NAMESPACE, "connection": r["connection"], "action": r["action"],
                    "key": key_id(r["key"]), "key_text": _clean(r["key"]), "generation": 0,
                    "body_hash": r["body_hash"], "written_hash": r["written_hash"], "encoding": 1,
                    "trackstar_id": r["trackstar_id"], "status": r["status"], "operation": r["operation"],
                    "idempotency_key": r["idempotency_key"], "outcome_unknown": bool(r["outcome_unknown"]),
                    "attempts": r["attempts"] or 0, "http_status": r["http_status"], "request_id": r["request_id"],
                    "last_error": _clean(r["last_error"]), "last_attempt_at": r["last_attempt_at"],
                    "updated_at": r["updated_at"], "claim_owner": None, "claim_run": None, "claim_expires": None,
                })
            for i in range(0, len(moved), _CHUNK):
                conn.execute(self._insert().on_conflict_do_nothing(index_elements=list(_PK)), moved[i:i + _CHUNK])
            old.drop(conn)

    def adopt_legacy(self, namespace: str, connection: str, action: str, kids: Sequence[str]) -> int:
        """Move first-release rows of these key ids into ``namespace`` (a row the namespace already has wins).
        One cheap query when the connection has no first-release rows left, the usual case."""
        if namespace == LEGACY_NAMESPACE or not kids:
            return 0
        t = ledger_table
        moved = 0
        with self.engine.connect() as conn:
            if conn.execute(sa.select(t.c.key).where(t.c.namespace == LEGACY_NAMESPACE, t.c.connection == connection,
                                                     t.c.action == action).limit(1)).first() is None:
                return 0
        with self._lock, self.engine.begin() as conn:
            for i in range(0, len(kids), _CHUNK):
                chunk = list(kids[i:i + _CHUNK])
                where = (t.c.namespace == LEGACY_NAMESPACE, t.c.connection == connection, t.c.action == action,
                         t.c.key.in_(chunk))
                rows = [dict(r._mapping) for r in conn.execute(sa.select(t).where(*where))]
                if not rows:
                    continue
                for r in rows:
                    r["namespace"] = namespace
                conn.execute(self._insert().on_conflict_do_nothing(index_elements=list(_PK)), rows)
                moved += conn.execute(sa.delete(t).where(*where)).rowcount
        return moved

    def migrate_hashes(self, namespace: str, connection: str, action: str, hashes: dict[str, str]) -> None:
        """Key id -> this release's hash of the body Trackstar holds (proven equal to an older encoding's)."""
        if not hashes:
            return
        t = ledger_table
        stmt = (sa.update(t)
                .where(t.c.namespace == namespace, t.c.connection == connection, t.c.action == action,
                       t.c.key == sa.bindparam("k"))
                .values(written_hash=sa.bindparam("h"), body_hash=sa.bindparam("h"), encoding=ENCODING))
        with self._lock, self.engine.begin() as conn:
            conn.execute(stmt, [{"k": k, "h": h} for k, h in hashes.items()])

    # -- reads ----------------------------------------------------------------------------------------

    def load(self, ids: Iterable[tuple[str, str, str]], namespace: str = LEGACY_NAMESPACE,
             ) -> dict[tuple[str, str, str], LedgerEntry]:
        """Entries by (connection, action, key), keys as given (their ids are looked up)."""
        by_group: dict[tuple[str, str], dict[str, str]] = {}
        for connection, action, key in ids:
            by_group.setdefault((connection, action), {})[key_id(key)] = key
        out: dict[tuple[str, str, str], LedgerEntry] = {}
        t = ledger_table
        with self.engine.connect() as conn:
            for (connection, action), kids in by_group.items():
                names = list(kids)
                for i in range(0, len(names), _CHUNK):
                    rows = conn.execute(sa.select(t).where(
                        t.c.namespace == namespace, t.c.connection == connection, t.c.action == action,
                        t.c.key.in_(names[i:i + _CHUNK])))
                    for row in rows:
                        entry = LedgerEntry(**row._mapping)
                        out[(connection, action, kids[entry.key])] = entry
        return out

    def get(self, connection: str, action: str, key: str, namespace: str = LEGACY_NAMESPACE) -> LedgerEntry | None:
        return self.load([(connection, action, key)], namespace).get((connection, action, key))

    def has_history(self, namespace: str, connection: str, action: str) -> bool:
        """True when this sync ever sent (or learnt of) a record of this connection and action."""
        t = ledger_table
        query = sa.select(t.c.key).where(
            t.c.namespace.in_([namespace, LEGACY_NAMESPACE]), t.c.connection == connection, t.c.action == action,
            t.c.status != "new").limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def entries(self, connection: str | None = None, action: str | None = None,
                namespace: str | None = None) -> pd.DataFrame:
        """The ledger as a DataFrame (for inspection and tests); claims-only rows (``new``) left out."""
        t = ledger_table
        query = sa.select(t).where(t.c.status != "new")
        if connection is not None:
            query = query.where(t.c.connection == connection)
        if action is not None:
            query = query.where(t.c.action == action)
        if namespace is not None:
            query = query.where(t.c.namespace == namespace)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(*(t.c[c] for c in _PK)))]
        return pd.DataFrame(rows, columns=_COLUMNS)

    def claims(self, namespace: str | None = None) -> pd.DataFrame:
        """Live and expired claims, with seconds left on the database's clock (negative: expired)."""
        t = ledger_table
        query = sa.select(t.c.namespace, t.c.connection, t.c.action, t.c.key, t.c.claim_run,
                          (t.c.claim_expires - self._db_now()).label("seconds_left")).where(t.c.claim_owner.is_not(None))
        if namespace is not None:
            query = query.where(t.c.namespace == namespace)
        with self.engine.connect() as conn:
            return pd.DataFrame([dict(r._mapping) for r in conn.execute(query)])

    # -- claims ---------------------------------------------------------------------------------------

    def claim(self, namespace: str, connection: str, action: str, keys: Sequence[str], *, owner: str,
              run: str | None, ttl_s: float) -> dict[str, LedgerEntry]:
        """Claim keys atomically; returns key -> entry (fresh, under the claim) for those now ours.

        A key missing from the answer is claimed by a live writer elsewhere. An expired claim is taken over
        (its entry shows what the dead writer left: an ``intent`` means look the record up first).
        """
        t = ledger_table
        by_id = {key_id(k): k for k in keys}
        now = _now()
        out: dict[str, LedgerEntry] = {}
        ids = sorted(by_id)  # one order for every writer: no deadlock between two claiming the same keys
        with self._lock:
            for i in range(0, len(ids), _CHUNK):
                rows = [{"namespace": namespace, "connection": connection, "action": action, "key": kid,
                         "key_text": _clean(by_id[kid]), "generation": 0, "encoding": ENCODING, "status": "new",
                         "outcome_unknown": False, "attempts": 0, "updated_at": now, "claim_owner": owner,
                         "claim_run": _clean(run, _TEXT_MAX)} for kid in ids[i:i + _CHUNK]]
                ins = self._insert().values(claim_expires=self._db_now() + ttl_s)
                stmt = ins.on_conflict_do_update(
                    index_elements=list(_PK),
                    set_={"claim_owner": ins.excluded.claim_owner, "claim_run": ins.excluded.claim_run,
                          "claim_expires": self._db_now() + ttl_s},
                    where=sa.or_(t.c.claim_owner.is_(None), t.c.claim_owner == owner,
                                 t.c.claim_expires < self._db_now()),
                ).returning(*t.columns)
                with self.engine.begin() as conn:
                    for row in conn.execute(stmt, rows):
                        entry = LedgerEntry(**row._mapping)
                        out[by_id[entry.key]] = entry
        return out

    def renew(self, owner: str, ttl_s: float) -> int:
        """Extend every claim ``owner`` still holds; returns how many."""
        t = ledger_table
        with self._lock, self.engine.begin() as conn:
            return conn.execute(sa.update(t).where(t.c.claim_owner == owner)
                                .values(claim_expires=self._db_now() + ttl_s)).rowcount

    def release(self, owner: str) -> int:
        """Give back every claim ``owner`` holds (claims-only rows of keys never sent are deleted)."""
        t = ledger_table
        with self._lock, self.engine.begin() as conn:
            gone = conn.execute(sa.delete(t).where(t.c.claim_owner == owner, t.c.status == "new")).rowcount
            return gone + conn.execute(sa.update(t).where(t.c.claim_owner == owner)
                                       .values(claim_owner=None, claim_run=None, claim_expires=None)).rowcount

    def holder(self, namespace: str, connection: str, action: str, key: str) -> tuple[str | None, float | None]:
        """(who holds the claim, seconds left on the database's clock) of one key."""
        t = ledger_table
        query = sa.select(t.c.claim_run, t.c.claim_expires - self._db_now()).where(
            t.c.namespace == namespace, t.c.connection == connection, t.c.action == action, t.c.key == key_id(key),
            t.c.claim_owner.is_not(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], float(row[1])) if row else (None, None)

    # -- writes ---------------------------------------------------------------------------------------

    def record_intents(self, intents: Sequence[Intent], *, namespace: str = LEGACY_NAMESPACE,
                       owner: str | None = None, ttl_s: float = 60.0) -> set[str]:
        """Durably note that these requests are about to be sent (returns after the commit).

        With ``owner``, only keys whose claim ``owner`` still holds are written (and their claims renewed);
        returns the keys written: a key missing from it must not be sent.
        """
        if not intents:
            return set()
        t = ledger_table
        now = _now()
        by_id = {key_id(i.key): i.key for i in intents}
        intents = sorted(intents, key=lambda i: (i.connection, i.action, key_id(i.key)))
        rows = [{
            "namespace": namespace, "connection": i.connection, "action": i.action, "key": key_id(i.key),
            "key_text": _clean(i.key), "generation": 0, "body_hash": i.body_hash, "encoding": ENCODING,
            "status": "intent", "operation": i.operation, "idempotency_key": i.idempotency_key,
            "outcome_unknown": True, "attempts": 1, "last_attempt_at": now, "updated_at": now,
            "claim_owner": owner,
        } for i in intents]
        ins = self._insert()
        if owner is not None:
            ins = ins.values(claim_expires=self._db_now() + ttl_s)
        set_ = {c: ins.excluded[c] for c in ("body_hash", "status", "operation", "idempotency_key",
                                             "outcome_unknown", "last_attempt_at", "updated_at")}
        set_["attempts"] = t.c.attempts + 1
        where = None
        if owner is not None:
            set_["claim_expires"] = self._db_now() + ttl_s
            where = t.c.claim_owner == owner
        stmt = ins.on_conflict_do_update(index_elements=list(_PK), set_=set_, where=where).returning(t.c.key)
        written: set[str] = set()
        with self._lock, self.engine.begin() as conn:
            for i in range(0, len(rows), _CHUNK):
                written.update(by_id[r[0]] for r in conn.execute(stmt, rows[i:i + _CHUNK]))
        return written

    def record_outcomes(self, outcomes: Sequence[Outcome], *, namespace: str = LEGACY_NAMESPACE) -> None:
        """Store results (claims stay until the writer releases them all); successes set the Trackstar id and
        the written body, failures keep them, a rejection advances the generation (a fresh create key for the
        fixed body)."""
        if not outcomes:
            return
        t = ledger_table
        now = _now()
        groups: dict[str, list[dict[str, Any]]] = {"ok": [], "rejected": [], "failed": []}
        last = {(o.connection, o.action, key_id(o.key)): o for o in outcomes}  # one row per key per statement
        for _, o in sorted(last.items()):
            if o.status not in OUTCOME_STATUSES:
                raise ValueError(f"not an outcome status: {o.status!r}")
            success = o.status in ("created", "updated")
            groups["ok" if success else o.status].append({
                "namespace": namespace, "connection": o.connection, "action": o.action, "key": key_id(o.key),
                "key_text": _clean(o.key), "generation": 0, "body_hash": o.body_hash,
                "written_hash": o.body_hash if success else None, "encoding": ENCODING,
                "trackstar_id": _clean(o.trackstar_id, _TEXT_MAX), "status": o.status,
                "outcome_unknown": bool(o.outcome_unknown) and not success, "attempts": 0,
                "http_status": o.http_status, "request_id": _clean(o.request_id, _TEXT_MAX),
                "last_error": _clean(o.error), "updated_at": now,
            })
        common = ("status", "outcome_unknown", "http_status", "request_id", "last_error", "updated_at")
        with self._lock, self.engine.begin() as conn:
            for name, rows in groups.items():
                if not rows:
                    continue
                ins = self._insert()
                cols = (*common, "trackstar_id", "written_hash", "body_hash", "encoding") if name == "ok" else common
                set_: dict[str, Any] = {c: ins.excluded[c] for c in cols}
                if name == "rejected":
                    set_["generation"] = t.c.generation + 1
                stmt = ins.on_conflict_do_update(index_elements=list(_PK), set_=set_)
                for i in range(0, len(rows), _CHUNK):
                    conn.execute(stmt, rows[i:i + _CHUNK])

    def record_held(self, namespace: str, held: Sequence[Held]) -> int:
        """Records found in Trackstar by their tag (a rebuild): ``created`` rows; a row that already knows
        its Trackstar id is left alone. Returns how many rows were written."""
        if not held:
            return 0
        t = ledger_table
        now = _now()
        rows = [{
            "namespace": namespace, "connection": h.connection, "action": h.action, "key": h.key_id,
            "key_text": _clean(h.key_text), "generation": 0, "body_hash": h.written_hash,
            "written_hash": h.written_hash, "encoding": ENCODING, "trackstar_id": _clean(h.trackstar_id, _TEXT_MAX),
            "status": "created", "outcome_unknown": False, "attempts": 0, "updated_at": now,
            "last_error": "found in Trackstar by its tag (ledger rebuilt)",
        } for h in held]
        ins = self._insert()
        cols = ("trackstar_id", "written_hash", "status", "outcome_unknown", "updated_at", "last_error")
        stmt = ins.on_conflict_do_update(index_elements=list(_PK), set_={c: ins.excluded[c] for c in cols},
                                         where=t.c.trackstar_id.is_(None)).returning(t.c.key)
        n = 0
        with self._lock, self.engine.begin() as conn:
            for i in range(0, len(rows), _CHUNK):
                n += len(conn.execute(stmt, rows[i:i + _CHUNK]).all())
        return n

    def forget(self, connection: str, action: str | None = None, keys: Iterable[str] | None = None,
               namespace: str | None = None) -> int:
        """Delete rows (e.g. after records were deleted in Trackstar on purpose). Returns the count."""
        t = ledger_table
        where = [t.c.connection == connection]
        if action is not None:
            where.append(t.c.action == action)
        if namespace is not None:
            where.append(t.c.namespace == namespace)
        total = 0
        with self._lock, self.engine.begin() as conn:
            if keys is None:
                return conn.execute(sa.delete(t).where(*where)).rowcount
            ids = [key_id(k) for k in keys]
            for i in range(0, len(ids), _CHUNK):
                total += conn.execute(sa.delete(t).where(*where, t.c.key.in_(ids[i:i + _CHUNK]))).rowcount
        return total


def wait_db_clock(ledger: Ledger, seconds: float) -> None:
    """Sleep until the database's clock moved ``seconds`` on (tests of claim expiry)."""
    start = ledger.db_time()
    while ledger.db_time() - start < seconds:
        time.sleep(0.05)
