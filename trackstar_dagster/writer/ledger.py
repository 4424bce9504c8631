"""The write ledger: what was sent to Trackstar, and who is sending what right now.

One row per (namespace, connection, action, key id). The namespace is the sync's name, so two syncs on one
token never share a row; the key id is ``keys.key_id`` (the key, or a hash of a long one), so every backend
holds every key. What a row guards:

* **Claims** (``claim_owner``, ``claim_expires`` on the database's clock), so two runs (processes, hosts)
  never both send one key: the ``ClaimBook`` (``ledger_claims``), which the ``Ledger`` holds.
* **Intents**: committed (conditionally on still holding the claim) before a request leaves. An ``intent``
  row found later means the outcome is unknown: the record is looked up in Trackstar before it is re-sent.
* **Outcomes**: created/updated (with the Trackstar id and the body hash it holds), failed, rejected. A
  rejection advances ``generation``, so the fixed body gets a fresh create ``Idempotency-Key``.

Durability: intents are one commit per batch, before any request of the batch leaves; outcomes are
committed in batches by the writer, which flushes every queued outcome before it returns or raises.

Upgrades: the first release's table (``trackstar_write_ledger``) is copied into this one on open, under the
empty namespace and ``encoding`` 1 (its bodies carried the first release's tags); the writer moves such rows
into its own namespace and re-hashes them when it meets their keys, so nothing already written is re-sent
(the statements are in ``ledger_upgrade``). The table and its rows are in ``ledger_table``, the engine and
the database's clock in ``ledger_db``, where the ledger lives by default in ``ledger_url``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ..base.keys import key_id
from . import ledger_upgrade as upgrade
from .ledger_claims import ClaimBook
from .ledger_db import LedgerDatabase
from .ledger_table import (
    CHUNK,
    COLUMNS,
    ENCODING,
    LEGACY_NAMESPACE,
    LEGACY_TABLE,
    OUTCOME_STATUSES,
    PK,
    STATUSES,
    Held,
    Intent,
    LedgerEntry,
    Outcome,
    insert,
    ledger_table,
    metadata,
)
from .ledger_url import LEDGER_URL_ENV, default_ledger_url

__all__ = [  # the ledger's public names, wherever they are defined
    "ENCODING",
    "LEDGER_URL_ENV",
    "LEGACY_NAMESPACE",
    "LEGACY_TABLE",
    "STATUSES",
    "Held",
    "Intent",
    "Ledger",
    "LedgerEntry",
    "Outcome",
    "default_ledger_url",
    "ledger_table",
    "wait_db_clock",
]


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """Durable record of writes and claims, on any SQLAlchemy 2 URL (a SQLite file by default, PostgreSQL
    for many hosts). Thread-safe; several processes may share one SQLite file (WAL, busy timeout,
    ``BEGIN IMMEDIATE``) or one PostgreSQL database (row-level upserts)."""

    def __init__(self, url: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 60.0) -> None:
        self.db = LedgerDatabase(url, busy_timeout_s=busy_timeout_s)
        self.url, self.dialect, self.engine = self.db.url, self.db.dialect, self.db.engine
        self.claim_book = ClaimBook(self.db)
        metadata.create_all(self.engine)
        self._migrate_first_release()

    def __repr__(self) -> str:
        return f"Ledger({self.db.safe_url()!r})"

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the database's clock -------------------------------------------------------------------------

    def db_time(self) -> float:
        """Epoch seconds on the database's clock (claims expire by it, whatever the hosts' clocks say)."""
        return self.db.time()

    # -- upgrade from the first release (statements in ledger_upgrade) ------------------------------

    def _migrate_first_release(self) -> None:
        """Copy the first release's table into this one (empty namespace, encoding 1), then drop it."""
        if not upgrade.has_first_release_table(self.engine):
            return
        old = upgrade.first_release_table(self.engine)
        with self.db.lock, self.engine.begin() as conn:
            upgrade.copy_first_release(conn, old, self.dialect)

    def adopt_legacy(self, namespace: str, connection: str, action: str, kids: Sequence[str]) -> int:
        """Move first-release rows of these key ids into ``namespace`` (a row the namespace already has wins).
        One cheap query when the connection has no first-release rows left, the usual case."""
        if namespace == LEGACY_NAMESPACE or not kids:
            return 0
        with self.engine.connect() as conn:
            if not upgrade.has_legacy_rows(conn, connection, action):
                return 0
        with self.db.lock, self.engine.begin() as conn:
            return upgrade.adopt_legacy_rows(conn, self.dialect, namespace, connection, action, kids)

    def migrate_hashes(self, namespace: str, connection: str, action: str, hashes: dict[str, str]) -> None:
        """Key id -> this release's hash of the body Trackstar holds (proven equal to an older encoding's)."""
        if not hashes:
            return
        with self.db.lock, self.engine.begin() as conn:
            upgrade.migrate_hashes(conn, namespace, connection, action, hashes)

    # -- reads ----------------------------------------------------------------------------------------

    def load(
        self,
        ids: Iterable[tuple[str, str, str]],
        namespace: str = LEGACY_NAMESPACE,
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
                for i in range(0, len(names), CHUNK):
                    rows = conn.execute(
                        sa.select(t).where(
                            t.c.namespace == namespace,
                            t.c.connection == connection,
                            t.c.action == action,
                            t.c.key.in_(names[i : i + CHUNK]),
                        )
                    )
                    for row in rows:
                        entry = LedgerEntry(**row._mapping)
                        out[(connection, action, kids[entry.key])] = entry
        return out

    def classify(
        self, records: Sequence[tuple[str, str, str, str]], namespace: str = LEGACY_NAMESPACE
    ) -> list[str]:
        """Read only (a dry run): per (connection, action, key, body hash), what a real run would find:
        ``unchanged`` (Trackstar holds this body, or a held record of unknown body), ``changed`` (it holds
        another; first-release encodings count as changed here), ``new`` (nothing held: it would be sent)."""
        found = self.load(((c, a, k) for c, a, k, _ in records), namespace)
        out = []
        for connection, action, key, body_hash in records:
            e = found.get((connection, action, key))
            if e is None or not e.trackstar_id or e.status not in ("created", "updated", "failed", "intent"):
                out.append("new")
            else:
                out.append("unchanged" if e.written_hash in (None, body_hash) else "changed")
        return out

    def get(
        self, connection: str, action: str, key: str, namespace: str = LEGACY_NAMESPACE
    ) -> LedgerEntry | None:
        return self.load([(connection, action, key)], namespace).get((connection, action, key))

    def has_history(self, namespace: str, connection: str, action: str) -> bool:
        """True when this sync ever sent (or learnt of) a record of this connection and action."""
        t = ledger_table
        query = (
            sa.select(t.c.key)
            .where(
                t.c.namespace.in_([namespace, LEGACY_NAMESPACE]),
                t.c.connection == connection,
                t.c.action == action,
                t.c.status != "new",
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def entries(
        self, connection: str | None = None, action: str | None = None, namespace: str | None = None
    ) -> pd.DataFrame:
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
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(*(t.c[c] for c in PK)))]
        return pd.DataFrame(rows, columns=COLUMNS)

    def claims(self, namespace: str | None = None) -> pd.DataFrame:
        """Live and expired claims, with seconds left on the database's clock (negative: expired)."""
        return self.claim_book.listing(namespace)

    # -- claims ---------------------------------------------------------------------------------------

    def claim(
        self,
        namespace: str,
        connection: str,
        action: str,
        keys: Sequence[str],
        *,
        owner: str,
        run: str | None,
        ttl_s: float,
    ) -> dict[str, LedgerEntry]:
        """Claim keys atomically; returns key -> entry for those now ours (``ClaimBook.claim``)."""
        return self.claim_book.claim(namespace, connection, action, keys, owner=owner, run=run, ttl_s=ttl_s)

    def renew(self, owner: str, ttl_s: float) -> int:
        """Extend every claim ``owner`` still holds; returns how many."""
        return self.claim_book.renew(owner, ttl_s)

    def release(self, owner: str) -> int:
        """Give back every claim ``owner`` holds (claims-only rows of keys never sent are deleted)."""
        return self.claim_book.release(owner)

    def holder(
        self, namespace: str, connection: str, action: str, key: str
    ) -> tuple[str | None, float | None]:
        """(who holds the claim, seconds left on the database's clock) of one key."""
        return self.claim_book.holder(namespace, connection, action, key)

    # -- writes ---------------------------------------------------------------------------------------

    def record_intents(
        self,
        intents: Sequence[Intent],
        *,
        namespace: str = LEGACY_NAMESPACE,
        owner: str | None = None,
        ttl_s: float = 60.0,
    ) -> set[str]:
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
        rows = [i.row(namespace, owner, now) for i in intents]
        ins = insert(self.dialect)
        if owner is not None:
            ins = ins.values(claim_expires=self.db.now() + ttl_s)
        set_ = {
            c: ins.excluded[c]
            for c in (
                "body_hash",
                "status",
                "operation",
                "idempotency_key",
                "outcome_unknown",
                "last_attempt_at",
                "updated_at",
            )
        }
        set_["attempts"] = t.c.attempts + 1
        where = None
        if owner is not None:
            set_["claim_expires"] = self.db.now() + ttl_s
            where = t.c.claim_owner == owner
        stmt = ins.on_conflict_do_update(index_elements=list(PK), set_=set_, where=where).returning(t.c.key)
        written: set[str] = set()
        with self.db.lock, self.engine.begin() as conn:
            for i in range(0, len(rows), CHUNK):
                written.update(by_id[r[0]] for r in conn.execute(stmt, rows[i : i + CHUNK]))
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
            groups["ok" if o.status in ("created", "updated") else o.status].append(o.row(namespace, now))
        common = ("status", "outcome_unknown", "http_status", "request_id", "last_error", "updated_at")
        with self.db.lock, self.engine.begin() as conn:
            for name, rows in groups.items():
                if not rows:
                    continue
                ins = insert(self.dialect)
                cols = (
                    (*common, "trackstar_id", "written_hash", "body_hash", "encoding")
                    if name == "ok"
                    else common
                )
                set_: dict[str, Any] = {c: ins.excluded[c] for c in cols}
                if name == "rejected":
                    set_["generation"] = t.c.generation + 1
                stmt = ins.on_conflict_do_update(index_elements=list(PK), set_=set_)
                for i in range(0, len(rows), CHUNK):
                    conn.execute(stmt, rows[i : i + CHUNK])

    def record_held(self, namespace: str, held: Sequence[Held]) -> int:
        """Records found in Trackstar by their tag (a rebuild): ``created`` rows; a row that already knows
        its Trackstar id is left alone. Returns how many rows were written."""
        if not held:
            return 0
        t = ledger_table
        now = _now()
        rows = [h.row(namespace, now) for h in held]
        ins = insert(self.dialect)
        cols = ("trackstar_id", "written_hash", "status", "outcome_unknown", "updated_at", "last_error")
        stmt = ins.on_conflict_do_update(
            index_elements=list(PK), set_={c: ins.excluded[c] for c in cols}, where=t.c.trackstar_id.is_(None)
        ).returning(t.c.key)
        n = 0
        with self.db.lock, self.engine.begin() as conn:
            for i in range(0, len(rows), CHUNK):
                n += len(conn.execute(stmt, rows[i : i + CHUNK]).all())
        return n

    def forget(
        self,
        connection: str,
        action: str | None = None,
        keys: Iterable[str] | None = None,
        namespace: str | None = None,
    ) -> int:
        """Delete rows (e.g. after records were deleted in Trackstar on purpose). Returns the count."""
        t = ledger_table
        where = [t.c.connection == connection]
        if action is not None:
            where.append(t.c.action == action)
        if namespace is not None:
            where.append(t.c.namespace == namespace)
        total = 0
        with self.db.lock, self.engine.begin() as conn:
            if keys is None:
                return conn.execute(sa.delete(t).where(*where)).rowcount
            ids = [key_id(k) for k in keys]
            for i in range(0, len(ids), CHUNK):
                total += conn.execute(sa.delete(t).where(*where, t.c.key.in_(ids[i : i + CHUNK]))).rowcount
        return total


def wait_db_clock(ledger: Ledger, seconds: float) -> None:
    """Sleep until the database's clock moved ``seconds`` on (tests of claim expiry)."""
    start = ledger.db_time()
    while ledger.db_time() - start < seconds:
        time.sleep(0.05)
