"""The build plan: the mapping checked against the targets' schemas before any row is read.

Why a module of its own: every ``ConfigError`` a build can raise about the mapping itself (overlapping
paths, missing or doubled columns, unknown connections, actions a schema lacks, typo'd targets, an
ambiguous items array) is decided here, from the config, the frames' column names and the write-info
documents; the stages after it only read the ``Plan`` (schema groups, header and item paths).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.config import (
    MappingConfig,
    Target,
    constants_for,
    flatten_constants,
    routed_connections,
)
from trackstar_dagster.mapping.fieldspec import FieldSpec
from trackstar_dagster.schema.openapi import find_operation


@dataclass
class SchemaGroup:
    """Connections sharing one write-info document: one set of field specs and one validator."""

    integration_type: str
    integration_name: str
    doc: dict[str, Any]
    specs: dict[str, FieldSpec]
    required: list[str]
    complete: bool
    has_tags: bool
    unknown: frozenset[str] = frozenset()  # mapped paths this integration's schema lacks (dropped)


@dataclass
class Plan:
    """What the build writes, per connection: its schema group, and which mapped paths are header or item."""

    action: str
    groups: list[SchemaGroup]
    conn_group: dict[str, int]  # connection name -> index in ``groups``
    items_path: str | None
    item_paths: list[str]
    header_paths: list[str]

    @property
    def connections(self) -> list[str]:
        """The connections this build routes to, in order (``Records.rec_conn_id`` indexes them)."""
        return list(self.conn_group)

    def groups_lacking(self, path: str) -> list[int]:
        """The groups whose schema lacks ``path`` (its values are left out of their bodies)."""
        return [gi for gi, g in enumerate(self.groups) if path in g.unknown]

    def constants(self, config: MappingConfig, connection: str) -> dict[str, Any]:
        """A connection's constants as dotted leaves, less the paths its schema lacks."""
        return constants_for(config, connection, self.groups[self.conn_group[connection]].unknown)

    def tagged(self, config: MappingConfig, connection: str) -> bool:
        """Whether this connection's bodies carry the key tag (``key_tag`` on and ``trackstar_tags`` in its schema)."""
        return bool(config.key_tag and self.groups[self.conn_group[connection]].has_tags)


def check_paths(paths: list[str]) -> None:
    """A path and one of its own sub-paths cannot both be set (``ship_to_address`` and ``...city``)."""
    ps = set(paths)
    for p in ps:
        parts = p.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in ps:
                raise ConfigError(f"target paths {'.'.join(parts[:i])!r} and {p!r} overlap; map only one")


def _duplicated(frame: pd.DataFrame, wanted: list[str]) -> list[str]:
    """The columns of ``wanted`` that ``frame`` has more than once (``frame[c]`` would be a frame)."""
    names = Counter(str(c) for c in frame.columns)
    return [c for c in dict.fromkeys(wanted) if names[c] > 1]


#: For a build over some of a mapping's connections (one customer's run), the targets of the others, asked
#: for only when this build's schemas all lack a target field: a field only they have is theirs, not a typo.
#: ``None`` from it: the others cannot all be known (say, a write-info not fetched yet), so nothing is called
#: a typo (their own runs still are checked).
OtherTargets = Callable[[], Mapping[str, Target] | None]
#: (integration type, integration name, write-info document)
SchemaDoc = tuple[str, str, dict[str, Any]]


def make_plan(
    frame: pd.DataFrame,
    items: pd.DataFrame | None,
    config: MappingConfig,
    targets: Mapping[str, Target],
    others: OtherTargets | None = None,
) -> Plan:
    """Check the mapping against the frames' columns and the targets' schemas; ``ConfigError`` on any problem."""
    cfg = config
    action = cfg.action
    check_paths(list(cfg.fields) + list(flatten_constants(cfg.constants)))
    for consts in cfg.connection_constants.values():
        check_paths(list(cfg.fields) + list(flatten_constants(consts)))
    available = set(map(str, frame.columns)) | (set(map(str, items.columns)) if items is not None else set())
    missing = [c for c in cfg.source_columns() if c not in available]
    if items is not None:
        missing += [f"{c} (in items)" for c in cfg.key_columns if c not in set(map(str, items.columns))]
        missing += [c for c in cfg.key_columns if c not in set(map(str, frame.columns)) and c not in missing]
    if (
        cfg.connection_column
        and cfg.connection_column not in set(map(str, frame.columns))
        and cfg.connection_column not in missing
    ):
        missing.append(cfg.connection_column)
    if missing:
        raise ConfigError(f"mapped column(s) missing from the source table: {', '.join(missing)}")
    twice = _duplicated(frame, cfg.source_columns())
    if items is not None:
        twice += [f"{c} (in items)" for c in _duplicated(items, [*cfg.key_columns, *cfg.fields.values()])]
    if twice:
        raise ConfigError(
            f"the source table has duplicate column(s) the mapping reads: {', '.join(twice)}; "
            "rename or drop the copies"
        )
    routed = routed_connections(cfg, targets)
    unknown = [c for c in routed if c not in targets]
    unknown += [c for c in cfg.connection_constants if c not in targets and c not in unknown]
    if unknown:
        raise ConfigError(f"connection(s) {unknown} have no target (known: {sorted(targets)})")
    for name in routed:
        try:
            find_operation(targets[name].doc, action)
        except KeyError as exc:
            t = targets[name]
            raise ConfigError(f"{t.integration_name} (connection {name!r}) cannot {action}: {exc}") from exc
    groups: list[SchemaGroup] = []
    conn_group: dict[str, int] = {}
    seen: dict[tuple[str, str, str], int] = {}
    doc_ids: dict[int, str] = {}  # id(doc) -> its content's digest, each document hashed once
    written = target_paths(cfg)
    lacking: list[frozenset[str]] = []  # per group: the targets its schema lacks
    for name in routed:
        t = targets[name]
        # one group per distinct document, not per dict: hundreds of connections of one integration, each
        # with its own snapshot of the same document, are checked and validated once
        gk = (t.integration_type, t.integration_name, _doc_digest(t.doc, doc_ids))
        if gk not in seen:
            seen[gk] = len(groups)
            specs, required, complete = v.field_specs(
                t.doc, t.integration_type, t.integration_name, action, list(cfg.fields)
            )
            lacks = frozenset(
                v.unknown_paths(t.doc, t.integration_type, t.integration_name, action, list(written))
            )
            lacking.append(lacks)
            dropped = lacks if cfg.unknown_fields == "drop" else frozenset()
            groups.append(
                SchemaGroup(
                    t.integration_type,
                    t.integration_name,
                    t.doc,
                    specs,
                    required,
                    complete,
                    v.has_property(t.doc, action, "trackstar_tags"),
                    dropped,
                )
            )
        conn_group[name] = seen[gk]
    docs = [(g.integration_type, g.integration_name, g.doc) for g in groups]
    _check_targets(action, docs, written, lacking, others)
    ip = _items_path(cfg, action, groups)
    item_paths = [p for p in cfg.fields if ip and p.startswith(ip + ".")]
    header_paths = [p for p in cfg.fields if p not in item_paths]
    if ip and any(p == ip for p in cfg.fields):
        raise ConfigError(f"{ip!r} is the items path; map its fields ({ip}.sku, ...) instead")
    return Plan(action, groups, conn_group, ip, item_paths, header_paths)


def _doc_digest(doc: dict[str, Any], seen: dict[int, str]) -> str:
    """A digest of a write-info document's content (memoised by ``id`` in ``seen`` for one plan)."""
    key = id(doc)
    if key not in seen:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        seen[key] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return seen[key]


def target_paths(config: MappingConfig) -> dict[str, list[str]]:
    """Every target path the mapping writes (mapped fields, constants, connection constants) -> where it is
    set (``fields``, ``constants``, ``connection_constants.<connection>``)."""
    out: dict[str, list[str]] = {}
    for path in config.fields:
        out.setdefault(path, []).append("fields")
    for path in flatten_constants(config.constants):
        out.setdefault(path, []).append("constants")
    for conn, consts in config.connection_constants.items():
        for path in flatten_constants(consts):
            out.setdefault(path, []).append(f"connection_constants.{conn}")
    return out


def _check_targets(
    action: str,
    docs: list[SchemaDoc],
    targets: dict[str, list[str]],
    lacking: list[frozenset[str]],
    others: OtherTargets | None,
) -> None:
    """A target no connection's schema has is a typo: one ``ConfigError`` naming each, with the closest field
    any of the schemas has. (One only some lack is left out for those, or rejected: ``unknown_fields``.)
    In a build over some connections, the other connections' schemas count too (``others``)."""
    if not lacking:
        return
    typos = [p for p in targets if all(p in lacks for lacks in lacking)]
    if typos and others is not None:
        rest = others()
        if rest is None:
            return  # cannot tell a typo from another connection's field: their runs will
        digests: dict[int, str] = {}
        seen = {_doc_digest(doc, digests) for _, _, doc in docs}
        for t in rest.values():
            digest = _doc_digest(t.doc, digests)
            if digest in seen:
                continue
            seen.add(digest)
            docs = [*docs, (t.integration_type, t.integration_name, t.doc)]
            lacks = set(v.unknown_paths(t.doc, t.integration_type, t.integration_name, action, typos))
            typos = [p for p in typos if p in lacks]
    if not typos:
        return
    known: list[str] = []
    for integration_type, integration_name, doc in docs:
        known += v.fields_for(doc, integration_type, integration_name, action)["field"].tolist()
    known = list(dict.fromkeys(known))
    lines = []
    for p in typos:
        close = difflib.get_close_matches(p, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        lines.append(f"{p!r} (in {', '.join(targets[p])}{hint})")
    schemas = sorted({name for _, name, _ in docs})
    raise ConfigError(
        f"no connection's {action} schema ({', '.join(schemas)}) has the target field(s) " + ", ".join(lines)
    )


def _items_path(config: MappingConfig, action: str, groups: list[SchemaGroup]) -> str | None:
    """The array filled one item per row: ``items_path``, else the one array field the mapping reaches into."""
    if config.items_path:
        if "." in config.items_path:
            raise ConfigError("items_path must be a top-level array field (e.g. line_items)")
        return config.items_path
    candidates = set()
    for p in config.fields:
        head = p.split(".", 1)[0]
        if "." not in p:
            continue
        for g in groups:
            frame = v.fields_for(g.doc, g.integration_type, g.integration_name, action)
            row = frame[frame["field"] == head]
            if len(row) and "array" in str(row["type"].iloc[0]):
                candidates.add(head)
    if len(candidates) > 1:
        raise ConfigError(f"several array fields are mapped ({sorted(candidates)}); set `items_path`")
    return candidates.pop() if candidates else None
