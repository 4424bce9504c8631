"""The mapping's declared shapes: ``MappingConfig`` in, ``PayloadBatch`` out, ``Target``; constants as leaves.

Why a module of its own: the public entry point (``build``) and every stage (``plan``, ``columns``,
``bodies``) need these small pieces; keeping them at the bottom lets imports flow one way, never back.
``trackstar_dagster.mapping`` re-exports every public name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trackstar_dagster.base import keys
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.nulls import drop_empty
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.coercion import coerce_codes
from trackstar_dagster.mapping.fieldspec import FieldSpec

#: ``connection_values: "*"``: the routing column holds connection names (the same as leaving it out)
OPEN_ROUTING = "*"

#: Trackstar's longest tag (``keys.key_tag`` stays well under it: long keys are hashed).
TAG_MAX = 255


class MappingConfig(BaseModel):
    """How rows of a warehouse table become write bodies (loadable from YAML with ``from_yaml``)."""

    model_config = ConfigDict(extra="forbid")

    action: str = "create_order"
    key: str | list[str] = Field(description="column(s) identifying a record; one body per key")
    fields: dict[str, str] = Field(description="target dotted path -> source column")
    items_path: str | None = Field(default=None, description="the array filled one item per row")
    connection: str | None = None
    connection_column: str | None = None
    connection_values: dict[str, str] = Field(
        default_factory=dict,
        description='source value -> connection name. Omitted (or "*") with ``connection_column``: the column '
        "holds the connection name itself (open routing, for hundreds of connections); a value naming no "
        "configured connection rejects its record.",
    )
    constants: dict[str, Any] = Field(default_factory=dict)
    connection_constants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    key_tag: bool = Field(
        default=True,
        description="Put ``key_tag(action, key, tag_namespace)`` in ``trackstar_tags`` (where the schema has it): "
        "the only proof that a record found in Trackstar is this one. Without it an unknown write outcome "
        "cannot be proven and a lost ledger cannot be rebuilt.",
    )
    tag_namespace: str | None = Field(
        default=None,
        description="The tag's namespace (the sync's name): ``tsd:<namespace>:<action>:<key id>``. None keeps "
        "the first release's ``tsd:<action>:<key>``.",
    )
    unknown_fields: Literal["drop", "reject"] = Field(
        default="drop",
        description="A mapped field or constant some connection's schema lacks: left out of that connection's "
        "bodies (drop, listed in PayloadBatch.dropped_fields) or the record rejected (reject). One table can feed "
        "integrations with different schemas. A target no connection's schema has is a typo: ConfigError.",
    )

    @field_validator("connection_values", mode="before")
    @classmethod
    def _str_keys(cls, value: Any) -> Any:
        if value is None or value == OPEN_ROUTING:
            return {}
        if isinstance(value, Mapping):
            return {str(k): str(val) for k, val in value.items()}
        return value

    @field_validator("tag_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return keys.check_namespace(value)

    @model_validator(mode="after")
    def _one_routing(self) -> MappingConfig:
        if (self.connection is None) == (self.connection_column is None):
            raise ValueError("set exactly one of `connection` or `connection_column`")
        if self.connection_column is None and self.connection_values:
            raise ValueError("`connection_values` needs `connection_column` (the column they route by)")
        if not self.key_columns:
            raise ValueError("`key` names no column")
        if not self.fields:
            raise ValueError("`fields` maps no column")
        for path in [
            *self.fields,
            *self.constants,
            *(p for c in self.connection_constants.values() for p in c),
        ]:
            if not path or any(not seg for seg in path.split(".")):
                raise ValueError(f"bad target path {path!r}")
        return self

    @property
    def key_columns(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    def source_columns(self) -> list[str]:
        """Every column the mapping reads (key, routing and mapped columns), each once."""
        cols = [*self.key_columns]
        if self.connection_column:
            cols.append(self.connection_column)
        cols += list(self.fields.values())
        return list(dict.fromkeys(cols))

    @property
    def open_routing(self) -> bool:
        """Whether ``connection_column`` holds connection names (no ``connection_values``)."""
        return self.connection_column is not None and not self.connection_values

    def connections(self) -> list[str]:
        """The connections the mapping names explicitly (none with open routing: see ``connections_for``)."""
        return [self.connection] if self.connection else sorted(set(self.connection_values.values()))

    def connections_for(self, frame: pd.DataFrame | None, available: Iterable[str]) -> list[str]:
        """The connections a build over ``frame`` needs targets for: those named explicitly, or with open
        routing those of ``available`` (the configured ones) that the rows name (all of them without a
        frame), plus every connection of ``connection_constants`` (one that is not configured is then an
        error, not silently unused).

        Rows naming no configured connection need no target: the build rejects them."""
        if not self.open_routing:
            return self.connections()
        column = cast(str, self.connection_column)
        named = set(self.connection_constants)
        if frame is None:
            named |= set(available)
        elif column in frame.columns and len(frame):
            _, distinct = coerce_codes(frame[column], FieldSpec(column, type="string"))
            values = [x for x in distinct.values.tolist() if isinstance(x, str)]
            named |= set(route_names(values, list(available)).values())
        return sorted(named)

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> MappingConfig:
        """Load from a YAML file path or YAML text; a bad config raises ``ConfigError``."""
        text = str(path_or_text)
        if isinstance(path_or_text, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
            try:
                text = Path(path_or_text).read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read mapping config {path_or_text}: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"mapping config is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("mapping config must be a YAML mapping")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"bad mapping config: {exc}") from exc


def route_names(values: Iterable[str], connections: Iterable[str]) -> dict[str, str]:
    """Open routing: each routing value that names a connection -> that connection. A value matches a name
    exactly, else case-insensitively when only one name matches (``ACME`` -> ``acme``: names read from
    environment variables are lower case)."""
    names = list(connections)
    exact = set(names)
    folded: dict[str, list[str]] = {}
    for name in names:
        folded.setdefault(name.casefold(), []).append(name)
    out: dict[str, str] = {}
    for value in values:
        if value in exact:
            out[value] = value
        elif len(found := folded.get(value.casefold(), [])) == 1:
            out[value] = found[0]
    return out


def routed_connections(config: MappingConfig, targets: Iterable[str]) -> list[str]:
    """The connections a build routes to: those named explicitly, or with open routing every target's."""
    return sorted(set(targets)) if config.open_routing else config.connections()


@dataclass(frozen=True, eq=False)
class Target:
    """Where one connection's bodies go: its integration and that integration's write-info document."""

    connection: str
    integration_type: str
    integration_name: str
    doc: dict[str, Any]


@dataclass
class PayloadBatch:
    """What ``build_payloads`` returns: what would be sent, what was refused and why, and check outcomes."""

    payloads: pd.DataFrame
    #: one row per (record, field, reason): a record refused for three reasons has three rows. Count records
    #: with ``rejected_records``, rows with ``reject_rows`` (``reject_counts`` gives both, metadata-ready).
    rejects: pd.DataFrame
    checks: list[v.CheckOutcome] = field(default_factory=list)
    records: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for profiling
    #: per connection, the mapped fields and constants its integration's schema lacks, left out of its bodies
    dropped_fields: dict[str, list[str]] = field(default_factory=dict)
    #: connections whose bodies carry no key tag (``key_tag`` off, or no ``trackstar_tags`` in their schema):
    #: an unknown write outcome cannot be proven for them and a lost ledger cannot be rebuilt from Trackstar
    untagged_connections: list[str] = field(default_factory=list)

    @property
    def rejected_records(self) -> int:
        """Records refused (each counted once, whatever the number of its reasons): what the checks count."""
        if not len(self.rejects):
            return 0
        return int(self.rejects[["connection", "key", "source_rows"]].astype(str).drop_duplicates().shape[0])

    @property
    def reject_rows(self) -> int:
        """Rows of the rejects frame: one per (record, field, reason), so at least ``rejected_records``."""
        return len(self.rejects)

    @property
    def reject_counts(self) -> dict[str, int]:
        """``{"rejected_records": ..., "reject_rows": ...}``: both counts, named for asset metadata."""
        return {"rejected_records": self.rejected_records, "reject_rows": self.reject_rows}


def flatten_constants(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Constants as dotted leaves (objects flattened, lists kept whole), null-like ones dropped."""
    out: dict[str, Any] = {}
    for k, val in values.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(val, Mapping) and val:
            out.update(flatten_constants(val, path))
        else:
            cleaned = drop_empty(val)
            if cleaned is not None:
                out[path] = cleaned
    return out


def constants_for(
    config: MappingConfig, connection: str, unknown: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A connection's constants as dotted leaves: the general ones, its own on top, less the paths its schema
    lacks (``unknown``: set only with ``unknown_fields: drop``)."""
    consts = {
        **flatten_constants(config.constants),
        **flatten_constants(config.connection_constants.get(connection, {})),
    }
    return {p: x for p, x in consts.items() if p not in unknown} if unknown else consts
