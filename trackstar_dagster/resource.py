"""Dagster resource holding the Trackstar API key and the connections (access tokens) a project writes to.

Keys and tokens should come from ``EnvVar`` so Dagster shows and stores the variable's name, never its value:
a plain string lands in Dagster's run storage and UI, so putting one in definitions raises a
``PlainSecretWarning`` (once per field and process). The resource's repr masks the key, the tokens and the
ledger URL's password anyway.

A connection's integration is either configured (``integration_name``) or looked up by its
``connection_id`` (``GET /connections/{connection_id}``, the API key only). Looking it up by the token
(``GET /connections?access_token=...``) puts the token in a URL, where proxies and servers log it: only with
``lookup_integration_by_token=True``, and with a warning.

Hundreds of connections (one per customer account) need no line each: ``connections_from_env`` (a variable
prefix), ``connections_file`` and ``connections_function`` (an import path) declare them in bulk (see
``trackstar_dagster.connections``); only those names go in Dagster's config. They are read once per resource
(a run's process), lazily, on the first call that needs a connection, with the explicit ``connections``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import Config, ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, model_validator

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import (
    fingerprint,  # the one short hash of a secret
    mask_url_password,
    redacted_logger,
    url_has_password,
)
from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient
from trackstar_dagster.connections import DeclaredConnection, declare_all
from trackstar_dagster.schema.store import SchemaStore
from trackstar_dagster.writer.ledger import Ledger
from trackstar_dagster.writer.ledger_budget import LedgerBudget

__all__ = ["PlainSecretWarning", "ResolvedConnection", "TrackstarConnection", "TrackstarResource"]

logger = redacted_logger(__name__)

_MASK = "**********"


class PlainSecretWarning(UserWarning):
    """A secret (API key, access token, a ledger URL with a password) was given to Dagster as a plain string.

    Dagster keeps a resource's plain config values in its run storage and shows them in the UI; an
    ``EnvVar`` is kept and shown by its variable's name, and read from the environment at run time.
    """


# (field path) -> warned already, so each field warns once per process
_PLAIN_SECRETS_WARNED: set[tuple[str, ...]] = set()
_PLAIN_SECRETS_LOCK = threading.Lock()

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
        description="Trackstar's integration name (e.g. 'shipbob'). Give it, or connection_id to look it up.",
    )
    connection_id: str | None = Field(
        default=None,
        description="Trackstar's id of the connection (dashboard, or /link/exchange's answer): its integration "
        "is looked up with GET /connections/{connection_id}, the API key only. Not needed with integration_name.",
    )

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (_MASK if key == "access_token" else value)


class TrackstarResource(ConfigurableResource):
    """Trackstar API access for Dagster assets: the API key, the connections, and client settings."""

    api_key: str = Field(description="Trackstar API key. Use EnvVar('TRACKSTAR_API_KEY').")
    base_url: str = Field(default=PRODUCTION_URL, description="API base URL (the local sandbox in tests).")
    connections: list[TrackstarConnection] = Field(default=[], description="The connections to read/write.")
    connections_from_env: str | None = Field(
        default=None,
        description="A prefix, e.g. 'TRACKSTAR_CONN_': every <prefix><NAME>_TOKEN with its <prefix><NAME>_INTEGRATION "
        "('shipbob' or 'wms/shipbob') or <prefix><NAME>_CONNECTION_ID is a connection named <name> (lower case), "
        "read at run time.",
    )
    connections_file: str | None = Field(
        default=None,
        description="Path of a YAML or JSON file listing connections ({name, access_token, integration_type, "
        "integration_name | connection_id}), read at run time; keep it mode 600.",
    )
    connections_function: str | None = Field(
        default=None,
        description="Import path 'package.module:function' of a function called at run time (no arguments) that "
        "returns (name, integration, token) tuples, dicts or connections (e.g. from a secrets manager).",
    )
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
        "default a SQLite file in state_dir. With a password in it, use EnvVar('...').",
    )
    shared_budgets: bool = Field(
        default=True,
        description="Keep write_rate and read_rate per access token across every run, process and machine "
        "sharing the ledger (a schedule per token in the ledger's database); off: each process keeps them "
        "on its own, and two runs on one token each take the whole rate.",
    )
    lookup_integration_by_token: bool = Field(
        default=False,
        description="Look up the integration of a connection with neither integration_name nor connection_id by "
        "its access token (GET /connections?access_token=...). Puts the token in a URL, where proxies' and "
        "servers' access logs keep it: prefer integration_name or connection_id.",
    )

    _client: TrackstarClient | None = PrivateAttr(default=None)
    _budget: LedgerBudget | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _declared: dict[str, DeclaredConnection] | None = PrivateAttr(default=None)
    _declared_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            if key == "api_key":
                yield key, _MASK
            elif key == "ledger_url" and isinstance(value, str) and not isinstance(value, EnvVar):
                yield key, mask_url_password(value)
            else:
                yield key, value

    # -- validation (when definitions load, and again when a run builds the resource) ------------------

    @model_validator(mode="after")
    def _every_connection_resolvable(self) -> TrackstarResource:
        if not self.lookup_integration_by_token:
            missing = [c.name for c in self.connections if not c.integration_name and not c.connection_id]
            if missing:
                raise ConfigError(_unresolvable_message(missing))
        return self

    def get_resource_definition(self) -> Any:
        """Dagster turns the resource into its definition here, from the values given in definitions (still
        ``EnvVar``s where they were; at run time the resource is rebuilt from resolved values without passing
        here): the place to tell about secrets given as plain strings."""
        _warn_plain_secrets(self)
        return super().get_resource_definition()

    # -- lifecycle -------------------------------------------------------------------------------------

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the client at the end of the run (per process): the resource owns it, callers never close it."""
        self.close()

    def close(self) -> None:
        """Close the shared client's connections (outside a run, e.g. in a script); the next call makes a new one."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._budget is not None:
                self._budget.close()
                self._budget = None

    # -- API -------------------------------------------------------------------------------------------

    def get_client(self) -> TrackstarClient:
        """The resource's client, shared by every caller in this process (one connection pool); its rates per
        access token are shared with every process using the same ledger (``shared_budgets``). The resource
        owns it: use it, do not close it (``teardown_after_execution`` does, at the end of the run)."""
        with self._lock:
            if self._client is None:
                if not self.api_key:
                    raise ConfigError("TrackstarResource.api_key is empty (is TRACKSTAR_API_KEY set?)")
                if self.shared_budgets and self._budget is None:
                    self._budget = LedgerBudget(self._ledger_location())
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
                    slot_source=self._budget,
                )
            return self._client

    def schema_store(self) -> SchemaStore:
        """The write-info snapshots the write path validates against (kept by the write-info asset)."""
        return SchemaStore(Path(self.state_dir) / "write_info" if self.state_dir else None)

    def ledger(self) -> Ledger:
        """The durable record of what was written, so re-runs and backfills never write a record twice."""
        return Ledger(self._ledger_location())

    def _ledger_location(self) -> str | None:
        """The ledger's URL (None: the default location); the token budgets live in the same database."""
        if self.ledger_url is None and self.state_dir:
            return f"sqlite:///{Path(self.state_dir) / 'ledger.sqlite'}"
        return self.ledger_url

    def declared_connections(self) -> dict[str, DeclaredConnection]:
        """Every connection, by name: the explicit ``connections`` and the bulk sources, read once (lazily:
        definitions load without the tokens), every token registered for redaction as it is read."""
        with self._declared_lock:
            if self._declared is None:
                self._declared = declare_all(
                    self.connections,
                    env_prefix=self.connections_from_env,
                    file=self.connections_file,
                    function=self.connections_function,
                    need_integration=not self.lookup_integration_by_token,
                )
            return self._declared

    def connection_names(self) -> list[str]:
        """Every connection's name (the explicit ones first, then each source's, in order)."""
        return list(self.declared_connections())

    def _configured(self, name: str) -> DeclaredConnection:
        declared = self.declared_connections()
        if name not in declared:
            names = list(declared)
            shown = ", ".join(repr(n) for n in names[:20]) + (
                f" and {len(names) - 20} more" if len(names) > 20 else ""
            )
            raise ConfigError(f"no Trackstar connection named {name!r}; configured: {shown or 'none'}")
        return declared[name]

    def access_token(self, name: str) -> str:
        """The named connection's access token, without resolving its integration (a write needs only this)."""
        conf = self._configured(name)
        if not conf.access_token:
            raise ConfigError(
                f"Trackstar connection {name!r} ({conf.source}) has an empty access_token (is its EnvVar set?)"
            )
        return conf.access_token

    def connection(self, name: str) -> ResolvedConnection:
        """The named connection with its integration: configured, or looked up (once per process)."""
        conf = self._configured(name)
        self.access_token(name)
        if conf.integration_name:
            return ResolvedConnection(name, conf.access_token, conf.integration_type, conf.integration_name)
        lookup: Callable[[], dict[str, Any]]
        if conf.connection_id:
            connection_id = conf.connection_id
            key = (self.base_url, fingerprint(self.api_key), f"id:{connection_id}")

            def lookup() -> dict[str, Any]:
                return self.get_client().get_connection_by_id(connection_id)

        elif self.lookup_integration_by_token:
            key = (self.base_url, fingerprint(self.api_key), fingerprint(conf.access_token))

            def lookup() -> dict[str, Any]:
                logger.warning(
                    "Trackstar connection %r: looking its integration up by its access token "
                    "(lookup_integration_by_token=True) sends the token in a URL "
                    "(GET /connections?access_token=...), and URLs are kept in the access logs of proxies "
                    "and servers on the way. Set the connection's integration_name, or its connection_id, "
                    "and turn lookup_integration_by_token off.",
                    name,
                )
                return self.get_client().lookup_connection_by_token(conf.access_token)

        else:  # validation normally stops this when definitions load; never fall back to the token
            raise ConfigError(_unresolvable_message([name]))
        with _LOOKUPS_LOCK:
            cached = _LOOKUPS.get(key)
        if cached is None:
            found = lookup()
            integration_name = found.get("integration_name")
            if not integration_name:
                raise ConfigError(f"Trackstar did not name the integration of connection {name!r}")
            cached = (str(found.get("integration_type") or conf.integration_type), str(integration_name))
            with _LOOKUPS_LOCK:
                _LOOKUPS[key] = cached
        return ResolvedConnection(name, conf.access_token, cached[0], cached[1])

    def resolved_connections(self) -> list[ResolvedConnection]:
        """Every configured connection, resolved (names must be unique)."""
        return [self.connection(n) for n in self.connection_names()]


# ---------------------------------------------------------------------------------------------------------


def _unresolvable_message(names: list[str]) -> str:
    which = ", ".join(repr(n) for n in names)
    plural = "s" if len(names) > 1 else ""
    return (
        f"Trackstar connection{plural} {which}: the integration is unknown. Give each connection either "
        "integration_name (e.g. integration_name='shipbob', as the Trackstar dashboard shows it) or "
        "connection_id (its integration is then looked up with GET /connections/{connection_id}, "
        "the API key only). lookup_integration_by_token=True on the resource looks it up by the access token "
        "instead, which puts the token in a URL where access logs keep it: not recommended."
    )


def _is_plain(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not isinstance(value, EnvVar)


def _warn_plain_secrets(resource: TrackstarResource) -> None:
    """A ``PlainSecretWarning`` per secret field given as a plain string (once per field and process)."""
    found: list[tuple[tuple[str, ...], str]] = []
    if _is_plain(resource.api_key):
        found.append(
            (
                ("api_key",),
                "TrackstarResource.api_key is a plain string; use api_key=dg.EnvVar('TRACKSTAR_API_KEY').",
            )
        )
    for conn in resource.connections:
        if _is_plain(conn.access_token):
            found.append(
                (
                    ("connection", conn.name, "access_token"),
                    f"Trackstar connection {conn.name!r}: access_token is a plain string; use "
                    "access_token=dg.EnvVar('<VARIABLE>') (access_token_env in the component).",
                )
            )
    if _is_plain(resource.ledger_url) and url_has_password(resource.ledger_url):
        found.append(
            (
                ("ledger_url",),
                "TrackstarResource.ledger_url holds a password and is a plain string; "
                "use ledger_url=dg.EnvVar('<VARIABLE>').",
            )
        )
    for key, message in found:
        with _PLAIN_SECRETS_LOCK:
            if key in _PLAIN_SECRETS_WARNED:
                continue
            _PLAIN_SECRETS_WARNED.add(key)
        warnings.warn(
            f"{message} Dagster keeps plain config values in its run storage and shows them in the UI; "
            "an EnvVar is kept by its name and read from the environment at run time.",
            PlainSecretWarning,
            stacklevel=3,
        )
