"""The sandbox's data: connections, stored records and idempotency keys.

Records live in memory (a dict per connection and resource, in insertion order). With a ``state_file`` every
change is also written to SQLite (WAL, ``synchronous=NORMAL``: no fsync per write) and loaded back at start,
so a demo's orders survive a restart. Reads are always served from memory: the store is never the
bottleneck at a few hundred writes per second. Everything here is called from the event loop thread only.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trackstar_dagster.base.redaction import fingerprint  # the one short hash of a secret

SANDBOX_ALIAS = "sandbox"
SANDBOX_INTEGRATION = "wms_sandbox"
IDEMPOTENCY_TTL_S = 24 * 3600.0

DEFAULT_RETURN_CAUSES: tuple[tuple[str, str], ...] = (
    ("DAMAGED", "Item arrived damaged"),
    ("WRONG_ITEM", "Wrong item sent"),
    ("NOT_NEEDED", "No longer needed"),
)


def canonical_integration(name: str) -> str:
    """``sandbox`` is an alias of ``wms_sandbox``; every other name is itself."""
    return SANDBOX_INTEGRATION if name == SANDBOX_ALIAS else name


def utc_now_iso() -> str:
    """Now as Trackstar writes timestamps: UTC, microseconds, a trailing ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ConnectionSpec:
    """How to set up one connection: its integration and the account-specific values write-info shows."""

    integration_name: str
    integration_type: str = "wms"
    connection_id: str | None = None
    warehouse_ids: tuple[str, ...] | list[str] | None = None
    disabled_actions: tuple[str, ...] | list[str] = ()
    return_causes: tuple[tuple[str, str], ...] | None = None  # (code, reason) pairs
    customer_id: str | None = None


@dataclass
class Connection:
    """A live connection (one access token)."""

    token: str
    integration_name: str  # as configured (may be the alias "sandbox")
    integration_type: str
    connection_id: str
    warehouse_ids: list[str]
    disabled_actions: frozenset[str]
    return_causes: list[tuple[str, str]]
    customer_id: str
    created_at: str = field(default_factory=utc_now_iso)
    times_used: int = 0
    last_used: str | None = None

    @property
    def canonical_name(self) -> str:
        """The integration's real name (``sandbox`` is ``wms_sandbox``)."""
        return canonical_integration(self.integration_name)

    @classmethod
    def build(cls, token: str, spec: ConnectionSpec | str | dict[str, Any]) -> Connection:
        """A live connection from a spec, filling in ids, warehouses and return causes derived from the token."""
        if isinstance(spec, str):
            spec = ConnectionSpec(spec)
        elif isinstance(spec, dict):
            spec = ConnectionSpec(**spec)
        canon = canonical_integration(spec.integration_name)
        return cls(
            token=token,
            integration_name=spec.integration_name,
            integration_type=spec.integration_type,
            connection_id=spec.connection_id or f"conn_{fingerprint(token)}",
            warehouse_ids=list(spec.warehouse_ids or (f"{canon}-wh-1", f"{canon}-wh-2")),
            disabled_actions=frozenset(spec.disabled_actions),
            return_causes=list(spec.return_causes or DEFAULT_RETURN_CAUSES),
            customer_id=spec.customer_id or f"customer_{fingerprint(token)[:8]}",
        )


@dataclass
class IdempotencyEntry:
    """One Idempotency-Key: in flight, or done with the response to replay."""

    request_hash: str
    in_flight: bool = True
    status: int = 0
    body: Any = None
    created: float = field(default_factory=time.time)


class Store:
    """Records per (connection id, resource) plus idempotency entries, optionally mirrored to SQLite."""

    def __init__(self, state_file: str | Path | None = None) -> None:
        self.records: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.seq: dict[str, int] = {}  # record id -> insertion sequence (for stable pagination)
        self._next_seq = 0
        self.idempotency: dict[tuple[str, str], IdempotencyEntry] = {}
        self.db: sqlite3.Connection | None = None
        if state_file:
            self._open(Path(state_file))

    # -- SQLite mirror --------------------------------------------------------------------------------
    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, connection_id TEXT, resource TEXT,"
            " id TEXT UNIQUE, body TEXT)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency (scope TEXT, key TEXT, request_hash TEXT, status INTEGER,"
            " body TEXT, created REAL, PRIMARY KEY (scope, key))"
        )
        self.db = db
        for seq, cid, resource, rid, body in db.execute(
            "SELECT seq, connection_id, resource, id, body FROM records ORDER BY seq"
        ):
            self.records.setdefault((cid, resource), {})[rid] = json.loads(body)
            self.seq[rid] = seq
            self._next_seq = max(self._next_seq, seq)
        cutoff = time.time() - IDEMPOTENCY_TTL_S
        for scope, key, rh, status, body, created in db.execute("SELECT * FROM idempotency"):
            if created >= cutoff:
                self.idempotency[(scope, key)] = IdempotencyEntry(
                    rh, False, status, json.loads(body), created
                )

    def close(self) -> None:
        """Close the SQLite mirror (records stay in memory)."""
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- records --------------------------------------------------------------------------------------
    @staticmethod
    def new_id(resource: str) -> str:
        """A fresh record id with Trackstar's kind of prefix (``ord_...``)."""
        prefix = {
            "orders": "ord",
            "returns": "ret",
            "products": "prod",
            "inbound-shipments": "ibs",
            "kits": "kit",
        }
        return f"{prefix.get(resource, resource[:4])}_{uuid.uuid4().hex[:20]}"

    def put(self, connection_id: str, resource: str, record: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a record (by its ``id``); keeps the original insertion order on replace."""
        rid = record["id"]
        bucket = self.records.setdefault((connection_id, resource), {})
        if rid not in self.seq:
            self._next_seq += 1
            self.seq[rid] = self._next_seq
        bucket[rid] = record
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO records (seq, connection_id, resource, id, body) VALUES (?, ?, ?, ?, ?)",
                (self.seq[rid], connection_id, resource, rid, json.dumps(record)),
            )
        return record

    def get(self, connection_id: str, resource: str, record_id: str) -> dict[str, Any] | None:
        """One record of a connection, None when it has none by that id."""
        return self.records.get((connection_id, resource), {}).get(record_id)

    def list(self, connection_id: str, resource: str) -> list[dict[str, Any]]:
        """A connection's records of a resource, in insertion order (the store's, not copies)."""
        return list(self.records.get((connection_id, resource), {}).values())

    def all_for_resource(self, resource: str) -> builtins.list[dict[str, Any]]:  # ``list`` is a method here
        """Every connection's records of a resource, in insertion order."""
        out: list[dict[str, Any]] = []
        for (_, res), bucket in self.records.items():
            if res == resource:
                out.extend(bucket.values())
        return sorted(out, key=lambda r: self.seq.get(r["id"], 0))

    def clear(self, connection_id: str | None = None, scope: str | None = None) -> None:
        """Forget records (of one connection, or all) and idempotency keys (of one token scope, or all)."""
        for key in [k for k in self.records if connection_id is None or k[0] == connection_id]:
            for rid in self.records[key]:
                self.seq.pop(rid, None)
            del self.records[key]
        for key in [k for k in self.idempotency if connection_id is None or k[0] == scope]:
            del self.idempotency[key]
        if self.db is not None:
            if connection_id is None:
                self.db.execute("DELETE FROM records")
                self.db.execute("DELETE FROM idempotency")
            else:
                self.db.execute("DELETE FROM records WHERE connection_id = ?", (connection_id,))
                self.db.execute("DELETE FROM idempotency WHERE scope = ?", (scope,))

    # -- idempotency ----------------------------------------------------------------------------------
    def idem_get(self, scope: str, key: str) -> IdempotencyEntry | None:
        """The live entry of a key (one older than 24 h is forgotten and counts as none)."""
        entry = self.idempotency.get((scope, key))
        if entry is not None and not entry.in_flight and entry.created < time.time() - IDEMPOTENCY_TTL_S:
            self.idem_release(scope, key)
            return None
        return entry

    def idem_claim(self, scope: str, key: str, request_hash: str) -> IdempotencyEntry:
        """Mark a key in flight for this request (a second request with it meanwhile is a 409)."""
        entry = self.idempotency[(scope, key)] = IdempotencyEntry(request_hash)
        return entry

    def idem_complete(self, scope: str, key: str, status: int, body: Any) -> None:
        """Bind a key to the answer to replay, and persist it (a retry after a restart still replays)."""
        entry = self.idempotency.get((scope, key))
        if entry is None:
            return
        entry.in_flight, entry.status, entry.body = False, status, body
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                (scope, key, entry.request_hash, status, json.dumps(body), entry.created),
            )

    def idem_release(self, scope: str, key: str) -> None:
        """Forget a key: the request failed, so a retry with it is performed afresh."""
        self.idempotency.pop((scope, key), None)
        if self.db is not None:
            self.db.execute("DELETE FROM idempotency WHERE scope = ? AND key = ?", (scope, key))
