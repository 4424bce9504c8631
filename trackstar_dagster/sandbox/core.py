"""The sandbox's state and what can be done to it, apart from HTTP: one ``Sandbox`` object the routes share.

It holds the catalog and write-info documents (shipped, or from a data directory), the connections, the
record store, the rate limits and the faults, and answers the lookups every route group needs (catalog
entries, a connection's view of its write-info document and the JSON Schema validator built from it, the
auth headers). The admin operations (``configure``, ``set_write_info``, ``records``, ``reset``) live here
too, so ``server.SandboxHandle`` can call them directly in-thread and the admin routes over HTTP.

Everything is touched from the event loop thread only; ``server.SandboxHandle`` marshals its calls there.
The route groups (``catalog_routes``, ``admin_routes``, ``data_routes``) are collaborators holding this
object, and ``app.create_app`` assembles them.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from trackstar_dagster.base.redaction import fingerprint
from trackstar_dagster.sandbox.faults import FaultConfig, FaultInjector
from trackstar_dagster.sandbox.judge import FORMAT_CHECKER, check_write_info, doc_with_enums
from trackstar_dagster.sandbox.progression import DEFAULT_STEPS, StatusProgression, iso
from trackstar_dagster.sandbox.ratelimits import RateLimits
from trackstar_dagster.sandbox.responses import error
from trackstar_dagster.sandbox.state import (
    SANDBOX_INTEGRATION,
    Connection,
    ConnectionSpec,
    Store,
    canonical_integration,
)
from trackstar_dagster.schema.openapi import normalise_schema

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_CONNECTIONS: dict[str, str] = {
    "sandbox-token-wms": SANDBOX_INTEGRATION,
    "sandbox-token-shiphero": "shiphero",
    "sandbox-token-shipbob": "shipbob",
}
#: "not given" for ``configure``'s rates, where ``None`` means "unlimited"
_UNSET: Any = object()


def load_data(data_dir: str | Path | None = None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict]]:
    """(catalog per integration type, write-info doc per integration name) from a data directory."""
    root = Path(data_dir) if data_dir else DATA_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"sandbox data directory not found: {root}")
    catalogs: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(root.glob("catalog-*.json")):
        obj = json.loads(f.read_text(encoding="utf-8"))
        catalogs[f.stem[len("catalog-") :]] = obj["data"] if isinstance(obj, dict) else list(obj)
    docs = {
        f.stem: json.loads(f.read_text(encoding="utf-8"))
        for f in sorted((root / "write-info").glob("*.json"))
    }
    return catalogs, docs


@dataclass
class SandboxSettings:
    """Everything ``run_sandbox`` and the CLI can set."""

    api_key: str = DEFAULT_API_KEY
    connections: dict[str, ConnectionSpec | str] | None = None
    latency: float = 0.0
    jitter: float = 0.0
    write_rate: float | None = 50.0
    read_rate: float | None = 10.0
    catalog_limit: bool = False
    faults: FaultConfig | dict[str, Any] | None = None
    state_file: str | Path | None = None
    data_dir: str | Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: orders move one status along ``status_steps`` every this many seconds of Trackstar's clock (0/None: off)
    seconds_per_step: float | None = None
    status_steps: tuple[str, ...] | list[str] = DEFAULT_STEPS


class Sandbox:
    """The whole sandbox's state: data, connections, store, limits, faults, and the lookups on them."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        s = settings or SandboxSettings()
        self.settings = s
        self.api_key = s.api_key
        self.catalogs, self._shipped_docs = load_data(s.data_dir)
        self.docs = copy.deepcopy(self._shipped_docs)
        self.doc_version: dict[str, int] = dict.fromkeys(self.docs, 0)
        conns = DEFAULT_CONNECTIONS if s.connections is None else s.connections
        self.connections: dict[str, Connection] = {t: Connection.build(t, spec) for t, spec in conns.items()}
        self.store = Store(s.state_file)
        self.limits = RateLimits(s.write_rate, s.read_rate)
        self.catalog_limit = s.catalog_limit
        faults = s.faults if isinstance(s.faults, FaultConfig) else FaultConfig(**(s.faults or {}))
        if s.latency or s.jitter:
            faults = faults.model_copy(update={"latency": s.latency, "jitter": s.jitter})
        self.faults = FaultInjector(faults)
        # derived from self.docs, keyed by doc_version so a replaced document is never served stale
        self._doc_cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._public_docs: dict[tuple[str, int], dict[str, Any]] = {}
        self._validators: dict[tuple[str, str, int], Draft202012Validator] = {}
        self.uvicorn_server: Any = None  # set by server.py: needed to drop connections
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the app's lifespan
        self.stopping: asyncio.Event | None = None  # set when the server stops: wakes "hang" faults
        self.progression = StatusProgression(tuple(s.status_steps), s.seconds_per_step)
        self.clock_offset = 0.0  # seconds Trackstar's clock is ahead of this machine's (advance_clock)

    # -- Trackstar's clock and orders that move on it (progression.py) -------------------------------
    def now(self) -> datetime:
        """Trackstar's clock: this machine's, moved on by ``advance_clock``."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def now_iso(self) -> str:
        return iso(self.now())

    def advance_clock(self, seconds: float) -> str:
        """Move Trackstar's clock on (orders step through their statuses without a test sleeping)."""
        if seconds < 0:
            raise ValueError("the sandbox's clock only moves forward")
        self.clock_offset += float(seconds)
        return self.now_iso()

    def set_progression(self, seconds_per_step: float | None, steps: list[str] | None = None) -> None:
        """Turn the status progression on (seconds per step), off (0/None), or give it another path. Orders
        keep the status they reached (stored as they read now), and move on from there."""
        for (cid, resource), bucket in list(self.store.records.items()):
            if resource == "orders":
                for record in list(bucket.values()):
                    if (moved := self.view(resource, record)) is not record:
                        self.store.put(cid, resource, moved)
        steps_now = tuple(steps or self.progression.steps)
        self.progression = StatusProgression(steps_now, seconds_per_step, since=self.now())

    def view(self, resource: str, record: dict[str, Any]) -> dict[str, Any]:
        """A stored record as it reads now (an order's status moved on by the progression)."""
        return self.progression.view(record, self.now()) if resource == "orders" else record

    # -- lookups -------------------------------------------------------------------------------------
    def catalog_entry(self, integration_type: str, name: str) -> dict[str, Any] | None:
        """The catalog entry of an integration (``sandbox`` is ``wms_sandbox``), None when unknown."""
        canon = canonical_integration(name)
        for entry in self.catalogs.get(integration_type, []):
            if entry.get("integration_name") == canon:
                return entry
        return None

    def any_catalog_entry(self, name: str) -> dict[str, Any] | None:
        """The catalog entry of an integration, whatever its type."""
        for itype in self.catalogs:
            entry = self.catalog_entry(itype, name)
            if entry:
                return entry
        return None

    def display_name(self, name: str) -> str:
        """The name Trackstar's messages use (``ShipBob``), else the integration name itself."""
        entry = self.any_catalog_entry(name) or {}
        return entry.get("display_name") or name

    def connection_doc(self, conn: Connection) -> dict[str, Any] | None:
        """The write-info document as this connection sees it (its warehouses and return causes in the enums)."""
        canon = conn.canonical_name
        if canon not in self.docs:
            return None
        key = (conn.token, self.doc_version[canon])
        if key not in self._doc_cache:
            self._doc_cache[key] = doc_with_enums(self.docs[canon], conn)
        return self._doc_cache[key]

    def public_doc(self, canon: str) -> dict[str, Any]:
        """The write-info document as read without an access token (placeholder enums)."""
        key = (canon, self.doc_version[canon])
        doc = self._public_docs.get(key)
        if doc is None:
            doc = self._public_docs[key] = doc_with_enums(self.docs[canon], None)
        return doc

    def validator(self, conn: Connection, action: str) -> Draft202012Validator:
        """The JSON Schema validator of ``action``'s body for this connection (built once per document version)."""
        canon = conn.canonical_name
        key = (conn.token, action, self.doc_version[canon])
        v = self._validators.get(key)
        if v is None:
            doc = self.connection_doc(conn)
            assert doc is not None, (
                "validator() is only asked for an action found in the connection's document"
            )
            v = self._validators[key] = Draft202012Validator(
                normalise_schema(doc, action), format_checker=FORMAT_CHECKER
            )
        return v

    def available_actions(self, conn: Connection) -> list[str]:
        """The catalog's actions of the connection's integration, less those disabled for it."""
        entry = self.catalog_entry(conn.integration_type, conn.integration_name) or {}
        return [a for a in entry.get("available_actions", []) if a not in conn.disabled_actions]

    def connection_info(self, conn: Connection) -> dict[str, Any]:
        """A connection as ``GET /connections`` shows it (never its token)."""
        return {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "integration_type": conn.integration_type,
            "integration_display_name": self.display_name(conn.integration_name),
            "customer_id": conn.customer_id,
            "created_at": conn.created_at,
            "last_used": conn.last_used,
            "times_used": conn.times_used,
            "available_actions": self.available_actions(conn),
            "webhooks_disabled": False,
            "sync_schedules": [],
            "errors": [],
            "historical_sync_completed": {},
        }

    # -- auth ----------------------------------------------------------------------------------------
    def check_key(self, request: Request) -> JSONResponse | None:
        """None when the request carries the API key, else the 401 to answer (constant-time comparison)."""
        key = request.headers.get("x-trackstar-api-key")
        if not key:
            return error(401, "Missing API key: send the x-trackstar-api-key header.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return error(401, "Invalid API key.")
        return None

    def token_connection(self, request: Request) -> Connection | JSONResponse:
        """The connection of the request's access token, else the 401 to answer."""
        token = request.headers.get("x-trackstar-access-token")
        if not token:
            return error(401, "Missing access token: send the x-trackstar-access-token header.")
        conn = self.connections.get(token)
        if conn is None:
            return error(401, "Invalid access token.")
        return conn

    # -- admin operations (event loop thread) --------------------------------------------------------
    def configure(
        self,
        latency: float | None = None,
        jitter: float | None = None,
        write_rate: float | None = _UNSET,
        read_rate: float | None = _UNSET,
        faults: FaultConfig | dict[str, Any] | None = None,
        catalog_limit: bool | None = None,
        rates: dict[str, float | None] | None = None,
    ) -> dict[str, Any]:
        """Change behaviour while running. A FaultConfig replaces the faults (latency/jitter kept unless it sets
        them); a dict updates only the fields it names."""
        if isinstance(faults, FaultConfig):
            current = self.faults.config
            keep = {k: getattr(current, k) for k in ("latency", "jitter") if k not in faults.model_fields_set}
            self.faults.configure(faults.model_copy(update=keep))
        elif isinstance(faults, dict):
            self.faults.configure(None, **faults)
        if latency is not None or jitter is not None:
            self.faults.configure(None, latency=latency, jitter=jitter)
        rates = dict(rates or {})
        if write_rate is not _UNSET:
            rates["write"] = write_rate
        if read_rate is not _UNSET:
            rates["read"] = read_rate
        for kind, rate in rates.items():
            self.limits.set_rate(kind, rate)
        if catalog_limit is not None:
            self.catalog_limit = catalog_limit
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """The current faults, rates and catalog limit (what ``configure`` answers)."""
        return {
            "faults": self.faults.config.model_dump(),
            "write_rate": self.limits.rates.get("write"),
            "read_rate": self.limits.rates.get("read"),
            "catalog_limit": self.catalog_limit,
        }

    def set_write_info(self, name: str, doc: dict[str, Any]) -> None:
        """Schema drift: replace an integration's write-info document while running. ``ValueError`` (the
        document kept) unless writes can be judged with it (``judge.check_write_info``)."""
        check_write_info(doc)
        canon = canonical_integration(name)
        self.docs[canon] = copy.deepcopy(doc)
        self.doc_version[canon] = self.doc_version.get(canon, 0) + 1
        self._forget_derived()

    def records(self, resource: str = "orders", token: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored records of a resource, of one token's connection or of all."""
        if token is None:
            found = self.store.all_for_resource(resource)
        else:
            conn = self.connections.get(token)
            found = self.store.list(conn.connection_id, resource) if conn else []
        return copy.deepcopy([self.view(resource, r) for r in found])

    def arrivals(self, token: str, kind: str = "write") -> list[tuple[float, bool]]:
        """(epoch seconds, admitted) of every ``kind`` request of one access token since the last reset."""
        return self.limits.arrival_log(fingerprint(token), kind)

    def reset(self) -> None:
        """Forget records, idempotency keys, rate windows and arrivals; restore the shipped write-info docs."""
        self.store.clear()
        self.limits.reset()
        self.clock_offset = 0.0
        self.faults.configure(self.faults.config)
        for name in list(self.docs):
            if name in self._shipped_docs:
                self.docs[name] = copy.deepcopy(self._shipped_docs[name])
                self.doc_version[name] += 1
        self._forget_derived()

    def _forget_derived(self) -> None:
        """Drop what was derived from the documents (the versions already keep stale entries unused)."""
        self._doc_cache.clear()
        self._public_docs.clear()
        self._validators.clear()
