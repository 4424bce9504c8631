"""Dagster resource holding the Trackstar API key and the connections (access tokens) a project writes to.

Keys and tokens should come from ``EnvVar`` so Dagster shows the variable's name, never its value; the
resource's repr masks them anyway.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import Config, ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient
from trackstar_dagster.errors import ConfigError
from trackstar_dagster.ratelimit import fingerprint
from trackstar_dagster.schema.store import SchemaStore
from trackstar_dagster.writer.ledger import Ledger

__all__ = ["ResolvedConnection", "TrackstarConnection", "TrackstarResource"]

_MASK = "**********"

# Process-wide: access token fingerprint -> (integration_type, integration_name), so runs in one process
# look each token up once. Keyed by fingerprints, never by the secrets.
_LOOKUPS: dict[tuple[str, str, str], tuple[str, str]] = {}
_LOOKUPS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection with its integration known; ``access_token`` is kept out of the repr."""

    name: str
    access_token: str = field(repr=False)
    integration_type: str
    integration_name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.integration_type}/{self.integration_name})"


class TrackstarConnection(Config):
    """One customer's WMS (or cart, carrier) account, as Trackstar sees it: a named access token."""

    name: str = Field(description="Your name for this connection, used by mappings and asset keys.")
    access_token: str = Field(description="The connection's access token. Use EnvVar('...').")
    integration_type: str = Field(default="wms", description="wms, cart, carrier, freight.")
    integration_name: str | None = Field(
        default=None,
        description="Trackstar's integration name (e.g. 'shipbob'); looked up via GET /connections when empty.",
    )

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (_MASK if key == "access_token" else value)


class TrackstarResource(ConfigurableResource):
    """Trackstar API access for Dagster assets: the API key, the connections, and client settings."""

    api_key: str = Field(description="Trackstar API key. Use EnvVar('TRACKSTAR_API_KEY').")
    base_url: str = Field(default=PRODUCTION_URL, description="API base URL (the local sandbox in tests).")
    connections: list[TrackstarConnection] = Field(default=[], description="The connections to read/write.")
    timeout: float = Field(default=30.0, description="Seconds per request (read/write/pool).")
    connect_timeout: float = Field(default=5.0, description="Seconds to open a connection.")
    max_retries: int = Field(default=5, description="Retries of a read (writes retry only 429/refused).")
    backoff_max: float = Field(default=30.0, description="Cap in seconds of the exponential backoff.")
    write_rate: float = Field(default=50.0, description="Writes per second per access token; 0 = off.")
    read_rate: float = Field(default=10.0, description="Reads per second per access token; 0 = off.")
    catalog_interval: float = Field(
        default=60.0, description="Seconds between catalog calls per API key (Trackstar allows 1/min)."
    )
    state_dir: str | None = Field(
        default=None,
        description="Where write-info snapshots (and the default ledger) live; default $DAGSTER_HOME/trackstar.",
    )
    ledger_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the write ledger (e.g. PostgreSQL when runs span machines); "
        "default a SQLite file in state_dir.",
    )

    _client: TrackstarClient | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (_MASK if key == "api_key" else value)

    # -- lifecycle -------------------------------------------------------------------------------------

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the client's connections at the end of the run (per process)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- API -------------------------------------------------------------------------------------------

    def get_client(self) -> TrackstarClient:
        """The resource's client (one per resource instance; rate limits are shared process-wide anyway)."""
        with self._lock:
            if self._client is None:
                if not self.api_key:
                    raise ConfigError("TrackstarResource.api_key is empty (is TRACKSTAR_API_KEY set?)")
                self._client = TrackstarClient(
                    self.api_key,
                    self.base_url,
                    timeout=self.timeout,
                    connect_timeout=self.connect_timeout,
                    max_retries=self.max_retries,
                    backoff_max=self.backoff_max,
                    read_rate=self.read_rate,
                    write_rate=self.write_rate,
                    catalog_interval=self.catalog_interval,
                )
            return self._client

    def schema_store(self) -> SchemaStore:
        """The write-info snapshots the write path validates against (kept by the write-info asset)."""
        return SchemaStore(Path(self.state_dir) / "write_info" if self.state_dir else None)

    def ledger(self) -> Ledger:
        """The durable record of what was written, so re-runs and backfills never write a record twice."""
        url = self.ledger_url
        if url is None and self.state_dir:
            url = f"sqlite:///{Path(self.state_dir) / 'ledger.sqlite'}"
        return Ledger(url)

    def connection_names(self) -> list[str]:
        return [c.name for c in self.connections]

    def _configured(self, name: str) -> TrackstarConnection:
        matches = [c for c in self.connections if c.name == name]
        if not matches:
            raise ConfigError(f"no Trackstar connection named {name!r}; configured: {self.connection_names()}")
        if len(matches) > 1:
            raise ConfigError(f"Trackstar connection name {name!r} is configured more than once")
        return matches[0]

    def connection(self, name: str) -> ResolvedConnection:
        """The named connection with its integration; looked up (once per process) when not configured."""
        conf = self._configured(name)
        if not conf.access_token:
            raise ConfigError(f"Trackstar connection {name!r} has an empty access_token (is its EnvVar set?)")
        if conf.integration_name:
            return ResolvedConnection(name, conf.access_token, conf.integration_type, conf.integration_name)
        key = (self.base_url, fingerprint(self.api_key), fingerprint(conf.access_token))
        with _LOOKUPS_LOCK:
            cached = _LOOKUPS.get(key)
        if cached is None:
            found = self.get_client().get_connection(conf.access_token)
            integration_name = found.get("integration_name")
            if not integration_name:
                raise ConfigError(f"Trackstar did not name the integration of connection {name!r}")
            cached = (str(found.get("integration_type") or conf.integration_type), str(integration_name))
            with _LOOKUPS_LOCK:
                _LOOKUPS[key] = cached
        return ResolvedConnection(name, conf.access_token, cached[0], cached[1])

    def resolved_connections(self) -> list[ResolvedConnection]:
        """Every configured connection, resolved (names must be unique)."""
        names = self.connection_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"Trackstar connection names configured more than once: {duplicates}")
        return [self.connection(n) for n in names]
