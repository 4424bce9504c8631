"""The ledger's table and the rows that go in and out of it.

One row per (namespace, connection, action, key id); ``LedgerEntry`` is a row read back, ``Intent``,
``Outcome`` and ``Held`` are what the writer hands the ``Ledger`` to store, each building the row it
becomes. The table's shape is the on-disk format: a column added here must be added in a way every
existing SQLite file and PostgreSQL database accepts (``metadata.create_all`` does not alter tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..base.keys import key_id

STATUSES = ("new", "intent", "created", "updated", "failed", "rejected")
OUTCOME_STATUSES = ("created", "updated", "failed", "rejected")
ENCODING = 2  # body encoding of this release (1: the first release's tags)
LEGACY_NAMESPACE = ""  # rows copied from the first release's table
CHUNK = 500  # keys per statement; far below SQLite's variable limit
TEXT_MAX = 255

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
COLUMNS = [c.name for c in ledger_table.columns]
PK = ("namespace", "connection", "action", "key")
LEGACY_TABLE = "trackstar_write_ledger"  # the first release's table


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
        return self.status in ("created", "updated") or (
            self.outcome_unknown and self.status in ("intent", "failed")
        )


@dataclass(frozen=True)
class Intent:
    """About to send: ``operation`` is ``create`` or ``update``."""

    connection: str
    action: str
    key: str
    body_hash: str
    idempotency_key: str
    operation: str = "create"

    def row(self, namespace: str, owner: str | None, now: datetime) -> dict[str, Any]:
        """The ``intent`` row (outcome unknown until an outcome replaces it), under ``owner``'s claim."""
        return {
            **identity(namespace, self.connection, self.action, key_id(self.key), self.key),
            "body_hash": self.body_hash,
            "encoding": ENCODING,
            "status": "intent",
            "operation": self.operation,
            "idempotency_key": self.idempotency_key,
            "outcome_unknown": True,
            "attempts": 1,
            "last_attempt_at": now,
            "updated_at": now,
            "claim_owner": owner,
        }


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

    def row(self, namespace: str, now: datetime) -> dict[str, Any]:
        """The outcome's row: a success carries the body Trackstar now holds (``written_hash``)."""
        success = self.status in ("created", "updated")
        return {
            **identity(namespace, self.connection, self.action, key_id(self.key), self.key),
            "body_hash": self.body_hash,
            "written_hash": self.body_hash if success else None,
            "encoding": ENCODING,
            "trackstar_id": clean(self.trackstar_id, TEXT_MAX),
            "status": self.status,
            "outcome_unknown": bool(self.outcome_unknown) and not success,
            "attempts": 0,
            "http_status": self.http_status,
            "request_id": clean(self.request_id, TEXT_MAX),
            "last_error": clean(self.error),
            "updated_at": now,
        }


@dataclass(frozen=True)
class Held:
    """A record found in Trackstar by its tag (a ledger rebuild): ``written_hash`` None when not verified."""

    connection: str
    action: str
    key_id: str
    trackstar_id: str
    written_hash: str | None = None
    key_text: str | None = None

    def row(self, namespace: str, now: datetime) -> dict[str, Any]:
        """A ``created`` row of a record found in Trackstar."""
        return {
            **identity(namespace, self.connection, self.action, self.key_id, self.key_text),
            "body_hash": self.written_hash,
            "written_hash": self.written_hash,
            "encoding": ENCODING,
            "trackstar_id": clean(self.trackstar_id, TEXT_MAX),
            "status": "created",
            "outcome_unknown": False,
            "attempts": 0,
            "updated_at": now,
            "last_error": "found in Trackstar by its tag (ledger rebuilt)",
        }


def identity(namespace: str, connection: str, action: str, key: str, key_text: str | None) -> dict[str, Any]:
    """The columns that say which record a row is (its primary key, the key's text, generation 0 for a new
    row: an upsert keeps the stored generation), the same for every kind of row."""
    return {
        "namespace": namespace,
        "connection": connection,
        "action": action,
        "key": key,
        "key_text": clean(key_text),
        "generation": 0,
    }


def clean(text: str | None, limit: int | None = None) -> str | None:
    """Text any backend stores: no NUL (PostgreSQL refuses it), bounded where the column is."""
    if text is None:
        return None
    text = str(text).replace("\x00", "\\x00")
    return text[:limit] if limit else text


def insert(dialect: str) -> Any:
    """An ``INSERT`` into the ledger table that can be an upsert (``on_conflict_do_update/nothing``): the
    SQLite and PostgreSQL dialects both have one, with the same API."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(ledger_table)
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert(ledger_table)
