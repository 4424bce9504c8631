"""Warehouse rows -> Trackstar write bodies: a declarative mapping, null dropping, validation and rejects.

``build_payloads`` is a dry run by itself (it never writes): every input record (one per key and connection)
ends up either in ``payloads`` (key, connection, action, body JSON, body hash) or in ``rejects`` (with the
field and the reason), never both, never neither.

How a body is made, and the decisions behind it:

- header fields come from the record's rows (the first non-null value); two different non-null values of one
  header field across the rows of a record reject the whole record, naming the field;
- items (``items_path``, ``line_items`` for orders) come one per row; an item whose fields are all empty is
  left out; a row that fails any check rejects its whole record (a record is never sent with an item missing);
- constants fill fields the mapping leaves empty: a mapped non-null value wins over a constant, and a
  connection's constants win over the general ones (constants are defaults, source data is the truth);
- null-like values never reach a body: values are cleaned per column (the one rule in ``nulls``), objects and
  lists left empty are left out, so every body equals ``drop_empty_body(body)``;
- every body carries ``key_tag(...)`` in ``trackstar_tags`` when the target schema has that field.

Speed: everything per column is vectorised (null masks, coercion, pandera checks); bodies are built by
pre-compiled per-shape builders over pre-extracted column arrays; one body per shape goes through
``body_validator`` (layer (a) covers every value-level rule, see ``validation``), all bodies of a failing shape.
"""

from __future__ import annotations

import gc
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trackstar_dagster import validation as v
from trackstar_dagster.coercion import (
    FieldSpec,
    canonical_codes,
    clean_strings,
    coerce_codes,
    coerce_column,
    obj_array,
    typed_series,
)
from trackstar_dagster.errors import ConfigError
from trackstar_dagster.nulls import drop_empty
from trackstar_dagster.previews import dry_run_report
from trackstar_dagster.schema.openapi import find_operation

__all__ = ["MappingConfig", "PayloadBatch", "Target", "build_payloads", "dry_run_report", "key_tag"]

TAG_PREFIX = "tsd"
TAG_MAX = 255
VALUE_MAX = 80
PAYLOAD_COLUMNS = ("key", "connection", "action", "body", "body_hash", "source_rows")
REJECT_COLUMNS = ("key", "connection", "source_rows", "field", "reason", "value")
_DUMPS_OPTS = orjson.OPT_SORT_KEYS


def key_tag(connection: str, action: str, key: str) -> str:
    """The ``trackstar_tags`` entry the writer finds a record by (``trackstar_tags[contains]=<tag>``).

    ``tsd:<action>:<key>``; keys that would make it long are hashed (``tsd:<action>:h:<sha256 40 hex>``).
    Tags are looked up through one connection's token, so the connection is not part of the text.
    """
    del connection  # lookups are scoped to the connection's access token already
    tag = f"{TAG_PREFIX}:{action}:{key}"
    if len(tag) > 120:
        tag = f"{TAG_PREFIX}:{action}:h:{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return tag


class MappingConfig(BaseModel):
    """How rows of a warehouse table become write bodies (loadable from YAML with ``from_yaml``)."""

    model_config = ConfigDict(extra="forbid")

    action: str = "create_order"
    key: str | list[str] = Field(description="column(s) identifying a record; one body per key")
    fields: dict[str, str] = Field(description="target dotted path -> source column")
    items_path: str | None = Field(default=None, description="the array filled one item per row")
    connection: str | None = None
    connection_column: str | None = None
    connection_values: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    connection_constants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    key_tag: bool = True
    unknown_fields: Literal["drop", "reject"] = Field(
        default="drop",
        description="A mapped field the target integration's schema lacks: left out of that connection's bodies "
        "(drop, listed in PayloadBatch.dropped_fields) or the record rejected (reject). One table can feed "
        "integrations with different schemas.",
    )

    @field_validator("connection_values", mode="before")
    @classmethod
    def _str_keys(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(val) for k, val in value.items()}
        return value

    @model_validator(mode="after")
    def _one_routing(self) -> MappingConfig:
        if (self.connection is None) == (self.connection_column is None):
            raise ValueError("set exactly one of `connection` or `connection_column`")
        if self.connection_column is not None and not self.connection_values:
            raise ValueError("`connection_column` needs `connection_values` (source value -> connection name)")
        if not self.key_columns:
            raise ValueError("`key` names no column")
        if not self.fields:
            raise ValueError("`fields` maps no column")
        for path in [*self.fields, *self.constants, *(p for c in self.connection_constants.values() for p in c)]:
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

    def connections(self) -> list[str]:
        return [self.connection] if self.connection else sorted(set(self.connection_values.values()))

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
    rejects: pd.DataFrame
    checks: list[v.CheckOutcome] = field(default_factory=list)
    records: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for profiling
    #: per connection, the mapped fields its integration's schema lacks, left out of its bodies
    dropped_fields: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rejected_records(self) -> int:
        if not len(self.rejects):
            return 0
        return int(self.rejects[["connection", "key", "source_rows"]].astype(str).drop_duplicates().shape[0])


# -- helpers ------------------------------------------------------------------------------------------------


def _flatten_constants(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Constants as dotted leaves (objects flattened, lists kept whole), null-like ones dropped."""
    out: dict[str, Any] = {}
    for k, val in values.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(val, Mapping) and val:
            out.update(_flatten_constants(val, path))
        else:
            cleaned = drop_empty(val)
            if cleaned is not None:
                out[path] = cleaned
    return out


def _check_paths(paths: list[str]) -> None:
    """A path and one of its own sub-paths cannot both be set (``ship_to_address`` and ``...city``)."""
    ps = set(paths)
    for p in ps:
        parts = p.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in ps:
                raise ConfigError(f"target paths {'.'.join(parts[:i])!r} and {p!r} overlap; map only one")


_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f\u2028\u2029]')


def _json_text(text: str) -> str:
    """A string as JSON text; plain strings without an ``orjson`` call."""
    return f'"{text}"' if not _ESCAPE.search(text) else orjson.dumps(text).decode()


def _encode(uvals: np.ndarray) -> np.ndarray:
    """JSON text of each distinct value (None stays None), key-sorted for objects."""
    values = uvals.tolist()
    strs = values[:-1] if values and values[-1] is None else values
    if strs and all(type(x) is str for x in strs) and not _ESCAPE.search("|".join(strs)):
        return obj_array([*('"' + x + '"' for x in strs), *([None] if len(strs) < len(values) else [])])
    return obj_array([None if x is None else (_json_text(x) if type(x) is str
                                              else orjson.dumps(x, option=_DUMPS_OPTS).decode())
                      for x in uvals.tolist()])


def _groups_of(codes: np.ndarray, k: int) -> list[np.ndarray]:
    """Positions of each code 0..k-1 (codes from ``pd.factorize``), one argsort for all."""
    if not len(codes):
        return []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(k)]


def _fstring_literal(text: str) -> str:
    """``text`` as the literal part of a single-quoted Python f-string."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("{", "{{").replace("}", "}}")
    return out.replace("\n", "\\n").replace("\r", "\\r")


def _text_builder(arg_paths: list[str], consts: dict[str, Any], items_path: str | None = None,
                  tag: bool = False) -> Callable[..., str]:
    """A compiled function joining JSON pieces into one compact, key-sorted object.

    Positional arguments: the JSON text of each ``arg_paths`` leaf, then the items array text (when
    ``items_path``), then the tag's JSON string (when ``tag``). Constants fill paths no argument covers.
    """
    tree: dict[str, Any] = {}
    consts_g: dict[str, str] = {}

    def insert(path: str, leaf: tuple[str, str]) -> None:
        node = tree
        parts = path.split(".")
        for seg in parts[:-1]:
            nxt = node.setdefault(seg, {})
            if not isinstance(nxt, dict):
                return
            node = nxt
        node.setdefault(parts[-1], leaf)

    for i, p in enumerate(arg_paths):
        insert(p, ("expr", f"a{i}"))
    args = [f"a{i}" for i in range(len(arg_paths))]
    if items_path:
        insert(items_path, ("expr", "it"))
        args.append("it")
    for p, val in consts.items():
        insert(p, ("lit", orjson.dumps(val, option=_DUMPS_OPTS).decode()))
    if tag:
        args.append("tg")
        old = tree.get("trackstar_tags")
        if old is None:
            tree["trackstar_tags"] = ("expr", '"[" + tg + "]"')
        elif old[0] == "lit":
            text = old[1]
            inner = text[1:-1] if text.startswith("[") else None
            consts_g["TAGS0"] = f"[{inner}," if inner else "["
            tree["trackstar_tags"] = ("expr", 'TAGS0 + tg + "]"')
        else:
            tree["trackstar_tags"] = ("expr", f'({old[1]}[:-1] + "," + tg + "]" if {old[1]}.startswith("[") '
                                              f'else "[" + tg + "]")')
    pieces: list[str] = []

    def lit(text: str) -> None:
        if pieces and pieces[-1].startswith("L:"):
            pieces[-1] += text
        else:
            pieces.append("L:" + text)

    def render(node: dict[str, Any]) -> None:
        lit("{")
        for i, key in enumerate(sorted(node)):
            lit(("," if i else "") + _json_text(key) + ":")
            val = node[key]
            if isinstance(val, dict):
                render(val)
            elif val[0] == "lit":
                lit(val[1])
            else:
                pieces.append("E:" + val[1])
        lit("}")

    render(tree)
    # one f-string: literal JSON pieces escaped for a Python literal, argument pieces as {expressions}
    body = "".join(
        _fstring_literal(p[2:]) if p.startswith("L:") else "{" + p[2:] + "}" for p in pieces)
    code = f"lambda {', '.join(args)}: f'{body}'"
    return eval(code, consts_g)  # noqa: S307 - literal pieces are escaped, keys are JSON-encoded


def _truncate(value: Any) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = value if isinstance(value, str) else (
        orjson.dumps(value, default=str).decode() if isinstance(value, dict | list) else str(value))
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def _clean_values(series: pd.Series) -> np.ndarray:
    """Comparable, cleaned values of a header column (None = missing) for the conflict check."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        out = obj_array(np.asarray(series.cat.categories, dtype=object)[np.maximum(codes, 0)].tolist())
        out[codes < 0] = None
        return _clean_values(pd.Series(out, dtype=object))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        s = series.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(series.dt, "tz", None) else series
        raw = s.to_numpy(dtype="datetime64[us]")
        out = obj_array(raw.astype(np.int64).tolist())
        out[np.isnat(raw)] = None
        return out
    if pd.api.types.is_float_dtype(dtype):
        f = series.to_numpy(dtype=np.float64, na_value=np.nan)
        out = obj_array(f.tolist())
        out[np.isnan(f)] = None
        return out
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        null = series.isna().to_numpy(dtype=bool)
        out = obj_array(series.to_numpy(dtype=object, na_value=None).tolist())
        out[null] = None
        return out
    arr = series.to_numpy(dtype=object, na_value=None)
    present = ~np.equal(arr, None)
    out = np.full(len(arr), None, dtype=object)
    if present.any():
        out[present] = clean_strings(arr[present])
    return out


def _key_codes(frame: pd.DataFrame, columns: list[str],
               coder: Callable[[str, FieldSpec], tuple[np.ndarray, Any]] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, key text per code): keys as cleaned text, several columns joined by ``|``.

    A row whose key (or any key part) is null-like gets code -1.
    """
    parts = []
    for c in columns:
        spec = FieldSpec(c, type="string")
        codes, u = coder(c, spec) if coder else coerce_codes(frame[c], spec)
        canon = canonical_codes(u.values, u.distinct)
        parts.append((np.where(codes >= 0, np.append(canon, -1)[codes], -1), u.values, canon))
    if len(parts) == 1:
        codes, values, canon = parts[0]
        text = np.full(int(canon.max(initial=-1)) + 1, None, dtype=object)
        ok = canon >= 0
        text[canon[ok]] = values[ok]
        return codes, text
    missing = np.zeros(len(frame), dtype=bool)
    texts = []
    for codes, values, canon in parts:
        missing |= codes < 0
        t = np.full(int(canon.max(initial=-1)) + 2, None, dtype=object)
        ok = canon >= 0
        t[canon[ok]] = values[ok]
        texts.append(t[codes])
    joined = obj_array(["|".join(t) if not m else None
                        for t, m in zip(zip(*texts, strict=True), missing.tolist(), strict=True)])
    codes, uniques = pd.factorize(pd.Series(joined, dtype=object), use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


@dataclass
class _Group:
    """Connections sharing one write-info document: one set of field specs and one validator."""

    integration_type: str
    integration_name: str
    doc: dict[str, Any]
    specs: dict[str, FieldSpec]
    required: list[str]
    complete: bool
    has_tags: bool
    unknown: frozenset[str] = frozenset()  # mapped paths this integration's schema lacks (dropped)


class _Build:
    """One ``build_payloads`` call: sorted row/record index arrays, per-column values and the reject list."""

    def __init__(self, frame: pd.DataFrame, config: MappingConfig, targets: Mapping[str, Target],
                 items: pd.DataFrame | None, validate_bodies: str) -> None:
        self.config = config
        self.targets = targets
        self.validate_mode = validate_bodies
        self.action = config.action
        self.rej_rec: list[int] = []
        self.rej_field: list[str] = []
        self.rej_reason: list[str] = []
        self.rej_value: list[Any] = []
        self.failures: dict[str, list[pd.DataFrame]] = {}
        self.coerce_bad: set[tuple[int, str]] = set()  # (record, field) already refused by coercion
        self._codes_cache: dict[tuple[str, Any, Any], tuple[np.ndarray, Any]] = {}
        self._check_config(frame, items)
        self.work, self.src = self._join(frame, items)

    # -- config, before any row is read -----------------------------------------------------------------

    def _check_config(self, frame: pd.DataFrame, items: pd.DataFrame | None) -> None:
        cfg = self.config
        _check_paths(list(cfg.fields) + list(_flatten_constants(cfg.constants)))
        for consts in cfg.connection_constants.values():
            _check_paths(list(cfg.fields) + list(_flatten_constants(consts)))
        available = set(map(str, frame.columns)) | (set(map(str, items.columns)) if items is not None else set())
        missing = [c for c in cfg.source_columns() if c not in available]
        if items is not None:
            missing += [f"{c} (in items)" for c in cfg.key_columns if c not in set(map(str, items.columns))]
            missing += [c for c in cfg.key_columns if c not in set(map(str, frame.columns)) and c not in missing]
        if cfg.connection_column and cfg.connection_column not in set(map(str, frame.columns)):
            missing.append(cfg.connection_column) if cfg.connection_column not in missing else None
        if missing:
            raise ConfigError(f"mapped column(s) missing from the source table: {', '.join(missing)}")
        unknown = [c for c in cfg.connections() if c not in self.targets]
        unknown += [c for c in cfg.connection_constants if c not in self.targets and c not in unknown]
        if unknown:
            raise ConfigError(f"connection(s) {unknown} have no target (known: {sorted(self.targets)})")
        for name in cfg.connections():
            try:
                find_operation(self.targets[name].doc, self.action)
            except KeyError as exc:
                t = self.targets[name]
                raise ConfigError(f"{t.integration_name} (connection {name!r}) cannot {self.action}: {exc}") from exc
        self.groups: list[_Group] = []
        self.conn_group: dict[str, int] = {}
        seen: dict[tuple[str, str, int], int] = {}
        for name in cfg.connections():
            t = self.targets[name]
            gk = (t.integration_type, t.integration_name, id(t.doc))
            if gk not in seen:
                seen[gk] = len(self.groups)
                specs, required, complete = v.field_specs(t.doc, t.integration_type, t.integration_name,
                                                          self.action, list(cfg.fields))
                unknown = frozenset(v.unknown_paths(t.doc, t.integration_type, t.integration_name, self.action,
                                                    list(cfg.fields))) if cfg.unknown_fields == "drop" else frozenset()
                self.groups.append(_Group(t.integration_type, t.integration_name, t.doc, specs, required,
                                          complete, v.has_property(t.doc, self.action, "trackstar_tags"), unknown))
            self.conn_group[name] = seen[gk]
        self.items_path = self._items_path()
        ip = self.items_path
        self.item_paths = [p for p in cfg.fields if ip and p.startswith(ip + ".")]
        self.header_paths = [p for p in cfg.fields if p not in self.item_paths]
        if ip and any(p == ip for p in cfg.fields):
            raise ConfigError(f"{ip!r} is the items path; map its fields ({ip}.sku, ...) instead")

    def _items_path(self) -> str | None:
        cfg = self.config
        if cfg.items_path:
            if "." in cfg.items_path:
                raise ConfigError("items_path must be a top-level array field (e.g. line_items)")
            return cfg.items_path
        candidates = set()
        for p in cfg.fields:
            head = p.split(".", 1)[0]
            if "." not in p:
                continue
            for g in self.groups:
                frame = v.fields_for(g.doc, g.integration_type, g.integration_name, self.action)
                row = frame[frame["field"] == head]
                if len(row) and "array" in str(row["type"].iloc[0]):
                    candidates.add(head)
        if len(candidates) > 1:
            raise ConfigError(f"several array fields are mapped ({sorted(candidates)}); set `items_path`")
        return candidates.pop() if candidates else None

    def _join(self, frame: pd.DataFrame, items: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray]:
        cfg = self.config
        if items is None:
            return frame, np.arange(len(frame))
        keys = cfg.key_columns
        item_cols = [c for p, c in cfg.fields.items() if p in self.item_paths and c in items.columns]
        head_cols = [c for c in cfg.source_columns() if c in frame.columns and c not in item_cols]
        left = frame[head_cols].copy()
        left["__src"] = np.arange(len(frame))
        right = items[list(dict.fromkeys([*keys, *item_cols]))]
        right = right[~right[keys].isna().any(axis=1)]
        merged = left.merge(right, on=keys, how="left", sort=False)
        src = merged.pop("__src").to_numpy()
        return merged, src

    # -- the run ----------------------------------------------------------------------------------------

    def _lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 4)
        self._t = now

    def run(self) -> PayloadBatch:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()
        cfg = self.config
        work = self.work
        n = len(work)
        # keys and routing, on factorised codes
        k_codes, key_uniques = _key_codes(work, cfg.key_columns, self._cached_codes)
        conn_names = cfg.connections()
        if cfg.connection:
            conn_code = np.zeros(n, dtype=np.int64)
            raw_uniques = np.array([cfg.connection], dtype=object)
            raw_code = conn_code
        else:
            raw_code, ru = coerce_codes(work[cfg.connection_column], FieldSpec(cfg.connection_column,
                                                                               type="string"))
            raw_uniques = ru.values
            canon = canonical_codes(raw_uniques)
            raw_code = np.where(raw_code >= 0, np.append(canon, -1)[raw_code], -1)
            first_of = {}
            for i, c in enumerate(canon.tolist()):
                first_of.setdefault(c, i)
            raw_uniques = raw_uniques[[first_of[c] for c in sorted(first_of) if c >= 0]] if len(canon) else \
                raw_uniques[:0]
            cid = {name: i for i, name in enumerate(conn_names)}
            u_conn = np.array([cid.get(cfg.connection_values.get(x), -1) for x in raw_uniques.tolist()],
                              dtype=np.int64)
            conn_code = np.where(raw_code >= 0, np.append(u_conn, -1)[raw_code], -1)
        # records: one per (connection or raw routing value, key); rows with a null key are records alone
        route = np.where(conn_code >= 0, conn_code, len(conn_names) + raw_code.astype(np.int64) + 1)
        combo = route.astype(np.int64) * (len(key_uniques) + 1) + (k_codes.astype(np.int64) + 1)
        null_key = k_codes < 0
        combo[null_key] = -1 - np.flatnonzero(null_key)
        rec_of_row, _ = pd.factorize(combo)
        order = np.argsort(rec_of_row, kind="stable")
        self.rec_of_row = rec_of_row
        self.inv_order = np.empty(n, dtype=np.int64)
        self.inv_order[order] = np.arange(n)
        rec_sorted = rec_of_row[order]
        R = int(rec_sorted[-1]) + 1 if n else 0
        starts = np.flatnonzero(np.r_[True, rec_sorted[1:] != rec_sorted[:-1]]) if n else np.zeros(0, int)
        ends = np.r_[starts[1:], n] if n else np.zeros(0, int)
        first_row = order[starts]
        self.n, self.R, self.order, self.rec_sorted = n, R, order, rec_sorted
        self.starts, self.ends = starts, ends
        kc = k_codes[first_row]
        self.rec_key = np.append(key_uniques, None)[kc]
        cc = conn_code[first_row]
        self.rec_conn = np.append(np.asarray(conn_names, dtype=object), None)[cc]
        rc = raw_code[first_row]
        self.rec_raw_conn = np.append(raw_uniques, None)[rc]
        self.rec_group = np.append(np.array([self.conn_group[c] for c in conn_names], dtype=np.int64), -1)[cc]
        self.rec_conn_id = cc.astype(np.int64)
        self.src_sorted = self.src[order]
        alive = np.ones(R, dtype=bool)

        key_label = "+".join(cfg.key_columns)
        for r in np.flatnonzero(np.equal(self.rec_key, None)):
            self._reject(r, key_label, "record key is null or empty", None)
        for r in np.flatnonzero(np.equal(self.rec_conn, None) & ~np.equal(self.rec_key, None)):
            raw = self.rec_raw_conn[r]
            why = ("routing value is empty" if raw is None
                   else "routing value is not in connection_values (no connection for it)")
            self._reject(r, cfg.connection_column or "connection", f"{cfg.connection_column}: {why}", raw)
        alive &= ~np.equal(self.rec_key, None) & (self.rec_group >= 0)

        # header columns: conflict check on all rows, coercion on one representative row per record
        # per path: distinct values (ending with None) and a code per record (header) or sorted row (items)
        self.hu: dict[str, np.ndarray] = {}
        self.hc: dict[str, np.ndarray] = {}
        self.rec_kind: dict[str, str] = {}
        self._lap("keys and routing")
        for path in self.header_paths:
            self._header_column(path)
        # item columns: coercion on every row
        self.iu: dict[str, np.ndarray] = {}
        self.ic: dict[str, np.ndarray] = {}
        self.row_kind: dict[str, str] = {}
        self._lap("header columns")
        for path in self.item_paths:
            self._item_column(path)
        self._lap("item columns")
        self._apply_constants()
        # pandera, layer (a)
        self._pandera()
        self._lap("pandera")
        bad = np.zeros(R, dtype=bool)
        if self.rej_rec:
            bad[np.unique(np.asarray(self.rej_rec, dtype=np.int64))] = True
        good = np.flatnonzero(alive & ~bad)
        payloads = self._bodies(good)
        self._lap("bodies: hashes")
        return self._finish(payloads)

    # -- rejects ----------------------------------------------------------------------------------------

    def _reject(self, rec: int, fld: str, reason: str, value: Any, coerced: bool = False) -> None:
        if coerced:
            self.coerce_bad.add((int(rec), fld))
        self.rej_rec.append(int(rec))
        self.rej_field.append(fld)
        self.rej_reason.append(reason)
        self.rej_value.append(value)

    def _record_failures(self, check: str, recs: np.ndarray, fld: str, reason: str | list[str],
                         values: np.ndarray | list[Any]) -> None:
        """Reject records in bulk and keep the failure cases for the check outcome."""
        if not len(recs):
            return
        reasons = [reason] * len(recs) if isinstance(reason, str) else reason
        vals = list(values)
        for r, why, val in zip(recs.tolist(), reasons, vals, strict=True):
            self._reject(r, fld, why, val, coerced=check == "coercion")
        src = self.src_sorted[self.starts[recs]]
        self.failures.setdefault(check, []).append(pd.DataFrame({
            "check": reasons if not isinstance(reason, str) else [reason] * len(recs),
            "column": [fld] * len(recs),
            "failure_case": obj_array([_truncate(x) for x in vals]),
            "index": src,
        }))

    # -- columns ----------------------------------------------------------------------------------------

    def _spec_groups(self, path: str) -> list[tuple[FieldSpec, list[int]]]:
        """Distinct coercion specs (type, format) of a path across the groups, with the groups using each."""
        out: dict[tuple[Any, Any], tuple[FieldSpec, list[int]]] = {}
        for gi, g in enumerate(self.groups):
            spec = g.specs[path]
            k = (spec.type, spec.format)
            if k in out:
                out[k][1].append(gi)
            else:
                out[k] = (spec, [gi])
        return list(out.values())

    def _coerce_sorted(self, path: str) -> tuple[np.ndarray, str]:
        """Coerce a mapped column (per group spec) and return its values in sorted row order, rejecting bad rows."""
        col = self.config.fields[path]
        series = self.work[col]
        n = self.n
        out = np.full(n, None, dtype=object)
        kinds: set[str] = set()
        row_group = self.rec_group[self.rec_of_row] if len(self.groups) > 1 else None
        for spec, group_ids in self._spec_groups(path):
            if row_group is None:
                rows = None
                c = coerce_column(series, spec)
                out = c.values
            else:
                rows = np.flatnonzero(np.isin(row_group, group_ids))
                if not len(rows):
                    continue
                c = coerce_column(series.iloc[rows].reset_index(drop=True), spec)
                out[rows] = c.values
            if spec.type is not None:  # an untyped (or, dropped, unknown) field does not decide the kind
                kinds.add(c.kind)
            if c.bad.any():
                pos = np.flatnonzero(c.bad)
                at = pos if rows is None else rows[pos]
                self._row_failures("coercion", self.inv_order[at], path, [c.reasons[int(p)] for p in pos],
                                   series.iloc[at].tolist())
        return out[self.order], kinds.pop() if len(kinds) == 1 else "object"

    def _header_column(self, path: str) -> None:
        """A record's one value of a header field, and conflicts between its rows, on integer codes.

        Per record, the largest and smallest canonical code among its non-empty rows: equal means the rows
        agree (the record takes that value), different means a conflict.
        """
        col = self.config.fields[path]
        uvals, codes, kind, distinct = self._coerce_codes_sorted(path)
        canon = canonical_codes(uvals, distinct)
        row = np.append(canon, -1)[codes]
        unknown = self._unknown_rows(path)
        if unknown is not None:
            row = np.where(unknown, -1, row)
        R = self.R
        rec_codes = np.full(R, -1, dtype=np.int64)
        if self.n:
            mx = np.maximum.reduceat(row, self.starts)
            mn = np.minimum.reduceat(np.where(row < 0, np.iinfo(row.dtype).max, row), self.starts)
            conflict = np.flatnonzero((mx >= 0) & (mn != mx))
            if len(conflict):
                samples = []
                for r in conflict.tolist():
                    seen = list(dict.fromkeys(int(c) for c in codes[self.starts[r]:self.ends[r]] if c >= 0))
                    samples.append(" | ".join(str(_truncate(uvals[c])) for c in seen[:2]))
                self._record_failures("conflicting header values", conflict, path,
                                      f"{path}: rows of this record disagree (column {col})", samples)
            valid = canon >= 0
            first_u = np.full(int(canon.max(initial=-1)) + 1, -1, dtype=np.int64)
            first_u[canon[valid][::-1]] = np.flatnonzero(valid)[::-1]
            rec_codes = np.where(mx >= 0, first_u[np.maximum(mx, 0)] if len(first_u) else -1, -1)
        self.hu[path] = np.append(uvals, None)
        self.hc[path] = rec_codes
        self.rec_kind[path] = kind

    def _cached_codes(self, column: str, spec: FieldSpec) -> tuple[np.ndarray, Any]:
        """``coerce_codes`` once per (column, type, format): a key column is often mapped too."""
        k = (column, spec.type, spec.format)
        if k not in self._codes_cache:
            self._codes_cache[k] = coerce_codes(self.work[column], spec)
        codes, u = self._codes_cache[k]
        return codes, u.for_path(spec.path)

    def _coerce_codes_sorted(self, path: str) -> tuple[np.ndarray, np.ndarray, str, bool]:
        """(distinct coerced values, code per sorted row (-1 = none), kind); bad rows are rejected here."""
        if len(self.groups) > 1 and len(self._spec_groups(path)) > 1:
            vals, kind = self._coerce_sorted(path)
            codes = np.arange(self.n, dtype=np.intp)
            codes[np.equal(vals, None)] = -1
            # one value per row: equal values on several rows are not distinct, so let them be factorised
            return vals, codes, kind, False
        col = self.config.fields[path]
        series = self.work[col]
        spec = self._spec_groups(path)[0][0]
        codes, u = self._cached_codes(col, spec)
        if u.bad.any():
            bad_rows = np.flatnonzero((codes >= 0) & np.append(u.bad, False)[codes])
            self._row_failures("coercion", self.inv_order[bad_rows], path,
                               [u.reasons[int(codes[r])] for r in bad_rows.tolist()],
                               series.iloc[bad_rows].tolist())
        valid = np.append(~np.equal(u.values, None), False)
        codes = np.where(valid[codes], codes, -1)[self.order]
        return u.values, codes, u.kind, u.distinct

    def _unknown_rows(self, path: str) -> np.ndarray | None:
        """Sorted rows whose connection's schema lacks ``path`` (its value is left out), or None."""
        groups = [gi for gi, g in enumerate(self.groups) if path in g.unknown]
        if not groups:
            return None
        return np.isin(self.rec_group[self.rec_sorted], groups)

    def _item_column(self, path: str) -> None:
        uvals, codes, kind, _ = self._coerce_codes_sorted(path)
        unknown = self._unknown_rows(path)
        if unknown is not None:
            codes = np.where(unknown, -1, codes)
        self.iu[path] = np.append(uvals, None)
        self.ic[path] = codes
        self.row_kind[path] = kind

    def _row_failures(self, check: str, rows: np.ndarray, fld: str, reasons: list[str],
                      values: list[Any]) -> None:
        """Reject the records of failing sorted rows (one reject per record and reason)."""
        recs = self.rec_sorted[rows]
        src = self.src_sorted[rows]
        for r, why, val in zip(recs.tolist(), reasons, values, strict=True):
            self._reject(r, fld, why, val, coerced=check == "coercion")
        self.failures.setdefault(check, []).append(pd.DataFrame({
            "check": reasons, "column": [fld] * len(rows),
            "failure_case": obj_array([_truncate(x) for x in values]), "index": src,
        }))

    def _apply_constants(self) -> None:
        """Constants fill the mapped fields a record leaves empty (connection constants first), so the flat
        checks see what the body will hold."""
        cfg = self.config
        general = _flatten_constants(cfg.constants)
        conn_names = cfg.connections()
        for conn in conn_names:
            consts = {**general, **_flatten_constants(cfg.connection_constants.get(conn, {}))}
            cid = conn_names.index(conn)
            for path, value in consts.items():
                if path in self.hu:
                    uv, codes, conn_of = self.hu, self.hc, self.rec_conn_id
                elif path in self.iu:
                    uv, codes, conn_of = self.iu, self.ic, self.rec_conn_id[self.rec_sorted]
                else:
                    continue
                fill = (codes[path] < 0) & (conn_of == cid)
                if fill.any():
                    new = len(uv[path]) - 1
                    uv[path] = np.append(np.append(uv[path][:-1], obj_array([value])), None)
                    codes[path] = np.where(fill, new, codes[path])

    # -- layer (a): pandera -----------------------------------------------------------------------------

    def _pandera(self) -> None:
        """Layer (a): the static Base Schema model and each integration's schema, on typed flat frames."""
        multi = len(self.groups) > 1
        for gi, g in enumerate(self.groups):
            recs = np.flatnonzero((self.rec_group == gi) & ~np.equal(self.rec_key, None))
            if not len(recs):
                continue
            dyn_head = v.integration_schema({p: g.specs[p] for p in self.header_paths}, g.integration_name)
            dyn_item = v.integration_schema({p: g.specs[p] for p in self.item_paths}, g.integration_name)
            need_head = [p for p in self.header_paths if p in v.BASE_COLUMNS or p in dyn_head.columns]
            need_item = [p for p in self.item_paths if p in v.BASE_COLUMNS or p in dyn_item.columns]
            head = {"key": typed_series(self.rec_key[recs], "string")}
            for p in need_head:
                head[p] = typed_series(self.hu[p][self.hc[p][recs]], self.rec_kind[p])
            hframe = pd.DataFrame(head)
            hframe.index = recs
            rows = np.flatnonzero(np.isin(self.rec_sorted, recs)) if multi else np.arange(self.n)
            if self.item_paths:
                any_item = np.zeros(len(rows), dtype=bool)
                for p in self.item_paths:
                    any_item |= self.ic[p][rows] >= 0
                if not any_item.all():
                    rows = rows[any_item]
                    multi = True
            item = {p: typed_series(self.iu[p][self.ic[p][rows] if multi else self.ic[p]], self.row_kind[p])
                    for p in need_item}
            iframe = pd.DataFrame(item) if item else None
            if iframe is not None:
                iframe.index = rows
            for check, schema, frame, level in (
                ("base schema rows", v.BaseOrderRowsModel, hframe, "record"),
                ("base schema rows", v.BaseOrderRowsModel, iframe, "row"),
                (f"{g.integration_name} rows", dyn_head, hframe, "record"),
                (f"{g.integration_name} rows", dyn_item, iframe, "row"),
            ):
                if frame is None:
                    continue
                fc = v.run_schema(schema, frame)
                if len(fc):
                    self._pandera_failures(check, fc, level, g.integration_name, recs)

    def _pandera_failures(self, check: str, fc: pd.DataFrame, level: str, integration: str,
                          recs: np.ndarray) -> None:
        """Pandera failure cases -> rejects (one per record, field and reason) and check failure rows."""
        checks = fc["check"].astype(str).tolist()
        fields = [str(c) for c in fc["column"].tolist()]
        reason_of = {pair: v.check_reason(pair[0], pair[1], integration) for pair in set(zip(checks, fields, strict=True))}
        reasons = [reason_of[pair] for pair in zip(checks, fields, strict=True)]
        cases = fc["failure_case"].tolist()
        whole = pd.isna(fc["index"]).to_numpy(dtype=bool)
        pos = np.where(whole, 0, pd.to_numeric(fc["index"], errors="coerce").fillna(0).to_numpy()).astype(np.int64)
        recs_of = pos if level == "record" else self.rec_sorted[pos]
        src_index = self.src_sorted[self.starts[pos]] if level == "record" else self.src_sorted[pos]
        for i, (rec, fld, why, case, w) in enumerate(zip(recs_of.tolist(), fields, reasons, cases,
                                                         whole.tolist(), strict=True)):
            if w:  # a frame-level failure (e.g. a wrong column type): every record of the frame fails
                for r in recs.tolist():
                    self._reject(r, fld, why, None)
                src_index[i] = -1
            elif (rec, fld) not in self.coerce_bad:  # else refused already, with a better reason
                self._reject(rec, fld, why, case)
        self.failures.setdefault(check, []).append(pd.DataFrame({
            "check": reasons, "column": fields,
            "failure_case": obj_array([_truncate(x) for x in cases]), "index": src_index,
        }))

    # -- bodies -----------------------------------------------------------------------------------------

    def _bodies(self, good: np.ndarray) -> dict[str, Any]:
        """Bodies as compact, key-sorted JSON text, built by compiled templates per shape.

        Distinct values are JSON-encoded once (``orjson``); a template per (connection, present fields) joins
        the encoded pieces, so no per-record dict is built or serialised.
        """
        cfg = self.config
        ip = self.items_path
        general = _flatten_constants(cfg.constants)
        conn_names = cfg.connections()
        conn_consts = {c: {**general, **_flatten_constants(cfg.connection_constants.get(c, {}))}
                       for c in conn_names}
        head_consts = {c: {p: x for p, x in cc.items() if not (ip and p.startswith(ip + "."))}
                       for c, cc in conn_consts.items()}
        item_consts = {c: {p[len(ip) + 1:]: x for p, x in cc.items() if ip and p.startswith(ip + ".")}
                       for c, cc in conn_consts.items()}
        G = len(good)
        n = self.n
        g_conn = self.rec_conn_id[good]

        # items: one JSON object per row, a template per (connection constants, pattern)
        rows = _rows_of(good, self.starts, self.ends, n) if G else np.zeros(0, dtype=np.int64)
        ipaths = self.item_paths
        rel = [p[len(ip) + 1:] for p in ipaths] if ip else []
        i_codes = [self.ic[p][rows] for p in ipaths]
        i_enc = [_encode(self.iu[p]) for p in ipaths]
        i_pat = _patterns([c >= 0 for c in i_codes], len(rows))
        any_item_consts = any(item_consts.values())
        row_conn = self.rec_conn_id[self.rec_sorted[rows]] if any_item_consts else np.zeros(len(rows), np.int64)
        i_combo, i_uniques = pd.factorize(row_conn * (int(i_pat.max(initial=0)) + 1) + i_pat)
        item_txt = np.full(n, None, dtype=object)
        for sel in _groups_of(i_combo, len(i_uniques)):
            k0 = sel[0]
            present = [k for k in range(len(ipaths)) if i_codes[k][k0] >= 0]
            consts = item_consts[conn_names[row_conn[k0]]] if any_item_consts else {}
            if not present:
                continue  # a row with no item field filled is no item (e.g. an order without lines)
            build = _text_builder([rel[k] for k in present], consts)
            cols = [i_enc[k][i_codes[k][sel]] for k in present]
            item_txt[rows[sel]] = obj_array(list(map(build, *cols)) if cols else [build() for _ in sel])

        self._lap("bodies: items")
        # per record: the items array text and the key tag text
        items_list = item_txt.tolist()
        starts = self.starts[good].tolist()
        ends = self.ends[good].tolist()
        if ip:
            if len(rows) and np.equal(item_txt[rows], None).any():
                its = [[x for x in items_list[s:e] if x is not None] for s, e in zip(starts, ends, strict=True)]
                items_json = ["[" + ",".join(x) + "]" if x else None for x in its]
            else:
                items_json = ["[" + ",".join(items_list[s:e]) + "]" for s, e in zip(starts, ends, strict=True)]
        else:
            items_json = [None] * G
        items_arr = obj_array(items_json)
        tagging = np.array([self.groups[self.conn_group[c]].has_tags and cfg.key_tag for c in conn_names]
                           + [False], dtype=bool)[g_conn] if G else np.zeros(0, dtype=bool)
        prefix = f"{TAG_PREFIX}:{self.action}:"
        keys = self.rec_key[good].tolist()
        limit = 120 - len(prefix)
        if keys and not _ESCAPE.search(prefix + "|".join(keys)) and max(map(len, keys)) <= limit:
            quoted = '"' + prefix
            tags_arr = obj_array([quoted + k + '"' for k in keys])
            tags_arr[~tagging] = None
        else:
            tags_arr = obj_array([
                (_json_text(prefix + k) if len(k) <= limit else _json_text(key_tag("", self.action, k)))
                if t else None for k, t in zip(keys, tagging.tolist(), strict=True)])

        self._lap("bodies: item arrays and tags")
        # headers: a template per (connection, present fields, has items, has tag)
        hp = self.header_paths
        h_codes = [self.hc[p][good] for p in hp]
        h_enc = [_encode(self.hu[p]) for p in hp]
        self._lap("bodies: encode header values")
        h_pat = _patterns([c >= 0 for c in h_codes], G)
        flags = (~np.equal(items_arr, None)).astype(np.int64) * 2 + tagging.astype(np.int64)
        h_key = (g_conn * (int(h_pat.max(initial=0)) + 1) + h_pat) * 4 + flags
        h_combo, h_uniques = pd.factorize(h_key)
        bodies = np.full(G, None, dtype=object)
        for sel in _groups_of(h_combo, len(h_uniques)):
            k0 = sel[0]
            present = [k for k in range(len(hp)) if h_codes[k][k0] >= 0]
            has_items, has_tag = bool(flags[k0] & 2), bool(flags[k0] & 1)
            build = _text_builder([hp[k] for k in present], head_consts[conn_names[g_conn[k0]]],
                                  items_path=ip if has_items else None, tag=has_tag)
            cols = [h_enc[k][h_codes[k][sel]] for k in present]
            if has_items:
                cols.append(items_arr[sel])
            if has_tag:
                cols.append(tags_arr[sel])
            bodies[sel] = obj_array(list(map(build, *cols)) if cols else [build() for _ in sel])

        self._lap("bodies: headers")
        # shapes: header template x set of item templates, per record
        item_shape = np.zeros(G, dtype=np.int64)
        shapes_ok = True
        if ip and len(rows):
            pid = np.zeros(n, dtype=np.int64)
            pid[rows] = i_combo + 1
            if len(i_uniques) + 1 <= 62:
                per_rec = np.bitwise_or.reduceat(np.left_shift(np.int64(1), pid), self.starts)
                item_shape = per_rec[good]
            else:
                shapes_ok = False
        self._lap("bodies: shapes")
        body_list = bodies.tolist()
        sha = hashlib.sha256
        hashes = [sha(b.encode()).hexdigest() for b in body_list]
        return {"good": good, "bodies": body_list, "hashes": hashes, "h_combo": h_combo,
                "item_shape": item_shape, "shapes_ok": shapes_ok}

    def _validate_bodies(self, built: dict[str, Any]) -> np.ndarray:
        """Layer (b): one body per shape through ``body_validator``, every body of a failing shape."""
        good = built["good"]
        G = len(good)
        ok = np.ones(G, dtype=bool)
        if not G:
            return ok
        groups = self.rec_group[good]
        shape_ids, _ = pd.factorize(built["item_shape"])
        sig, _ = pd.factorize(built["h_combo"].astype(np.int64) * (int(shape_ids.max(initial=0)) + 1) + shape_ids)
        validators = [v.validator_for(g.doc, self.action) for g in self.groups]
        to_check: list[np.ndarray] = []
        full_groups = {gi for gi, g in enumerate(self.groups)
                       if not g.complete or not built["shapes_ok"] or self.validate_mode == "all"}
        if full_groups:
            to_check.append(np.flatnonzero(np.isin(groups, list(full_groups))))
        rest = np.flatnonzero(~np.isin(groups, list(full_groups))) if full_groups else np.arange(G)
        if len(rest):
            reps = rest[np.unique(sig[rest], return_index=True)[1]]
            failing = []
            for i in reps.tolist():
                body = orjson.loads(built["bodies"][i])
                if validators[groups[i]](body):
                    failing.append(sig[i])
            if failing:
                to_check.append(rest[np.isin(sig[rest], failing)])
        bodies = built["bodies"]
        problems_seen: list[pd.DataFrame] = []
        for idx in to_check:
            for i in idx.tolist():
                body = orjson.loads(bodies[i])
                problems = validators[groups[i]](body)
                if not problems:
                    continue
                ok[i] = False
                rec = int(good[i])
                for prob in problems:
                    fld = str(getattr(prob, "field", "") or "(body)")
                    msg = str(getattr(prob, "message", prob))
                    val = _value_at(body, fld)
                    self._reject(rec, fld, f"{fld}: {msg}", val)
                    problems_seen.append(pd.DataFrame({
                        "check": [f"{fld}: {msg}"], "column": [fld],
                        "failure_case": [_truncate(val)],
                        "index": [int(self.src_sorted[self.starts[rec]])]}))
        if problems_seen:
            self.failures.setdefault("bodies", []).extend(problems_seen)
        return ok

    # -- outputs ----------------------------------------------------------------------------------------

    def _finish(self, built: dict[str, Any]) -> PayloadBatch:
        ok = self._validate_bodies(built)
        self._lap("body validation")
        good = built["good"][ok]
        keep = np.flatnonzero(ok)
        src_list = self.src_sorted.tolist()
        starts, ends = self.starts, self.ends
        bodies, hashes = built["bodies"], built["hashes"]
        if len(keep) < len(bodies):
            bodies = [bodies[i] for i in keep.tolist()]
            hashes = [hashes[i] for i in keep.tolist()]
        self._lap("payloads: prepare")
        payloads = pd.DataFrame({
            "key": pd.Series(self.rec_key[good], dtype=object).astype("str"),
            "connection": pd.Series(self.rec_conn[good], dtype=object).astype("str"),
            "action": pd.Series(np.full(len(good), self.action, dtype=object)).astype("str"),
            "body": pd.Series(obj_array(bodies), dtype=object).astype("str"),
            "body_hash": pd.Series(obj_array(hashes), dtype=object).astype("str"),
            "source_rows": pd.Series([src_list[s:e] for s, e in zip(starts[good].tolist(), ends[good].tolist(),
                                                                      strict=True)], dtype=object),
        })
        self._lap("payloads frame")
        rejects = self._rejects_frame(src_list)
        checks = self._checks(len(good))
        self._lap("rejects and checks")
        dropped = {name: sorted(self.groups[gi].unknown) for name, gi in self.conn_group.items()
                   if self.groups[gi].unknown}
        return PayloadBatch(payloads=payloads, rejects=rejects, checks=checks, records=self.R,
                            timings=self.timings, dropped_fields=dropped)

    def _rejects_frame(self, src_list: list[int]) -> pd.DataFrame:
        if not self.rej_rec:
            return pd.DataFrame({
                "key": pd.Series([], dtype="str"), "connection": pd.Series([], dtype="str"),
                "source_rows": pd.Series([], dtype=object), "field": pd.Series([], dtype="str"),
                "reason": pd.Series([], dtype="str"), "value": pd.Series([], dtype="str")})
        frame = pd.DataFrame({"rec": self.rej_rec, "field": self.rej_field, "reason": self.rej_reason,
                              "value": [_truncate(x) for x in self.rej_value]})
        frame = frame.drop_duplicates(["rec", "field", "reason"]).sort_values("rec", kind="stable")
        recs = frame["rec"].to_numpy()
        conn = self.rec_conn[recs]
        return pd.DataFrame({
            "key": pd.Series(self.rec_key[recs], dtype="str"),
            "connection": pd.Series(conn, dtype="str"),
            "source_rows": pd.Series([src_list[s:e] for s, e in zip(self.starts[recs].tolist(),
                                                                    self.ends[recs].tolist(), strict=True)],
                                     dtype=object),
            "field": pd.Series(frame["field"].to_numpy(), dtype="str"),
            "reason": pd.Series(frame["reason"].to_numpy(), dtype="str"),
            "value": pd.Series(frame["value"].to_numpy(), dtype="str"),
        })

    def _checks(self, sent: int) -> list[v.CheckOutcome]:
        out = []
        descriptions = {
            "coercion": "every mapped value converts to its field's JSON type",
            "conflicting header values": "rows of one record agree on every header field",
            "base schema rows": "Base Schema rules on the flat rows (quantity >= 1, prices >= 0, key not null)",
            "bodies": "every finished body passes the integration's write-info schema",
        }
        names = ["coercion", "conflicting header values", "base schema rows",
                 *[f"{g.integration_name} rows" for g in self.groups], "bodies"]
        for name in dict.fromkeys(names):
            frames = self.failures.get(name, [])
            fc = pd.concat(frames, ignore_index=True) if frames else v.empty_failures()
            out.append(v.CheckOutcome(
                name=name.replace(" ", "_"), passed=not len(fc), severity="WARN",
                description=descriptions.get(name, f"{name.split(' ')[0]} write-info rules on the flat rows"),
                failures=v.failure_summary(fc), metadata={"failing_values": len(fc)}))
        routing = np.equal(self.rec_key, None) | (self.rec_group < 0)
        out.append(v.CheckOutcome(
            name="records_routed", passed=not routing.any(), severity="WARN",
            description="every record has a key and a connection",
            failures=v.failure_summary(pd.DataFrame({
                "check": ["null key" if k is None else "unrouted" for k in self.rec_key[routing].tolist()],
                "column": ["+".join(self.config.key_columns)] * int(routing.sum()),
                "failure_case": obj_array([_truncate(x) for x in self.rec_raw_conn[routing].tolist()]),
                "index": self.src_sorted[self.starts[routing]]})),
            metadata={"records": self.R, "sent": sent}))
        return out


def _patterns(masks: list[np.ndarray], n: int) -> np.ndarray:
    """A pattern id per row from boolean presence masks (bit k = field k present)."""
    if not masks:
        return np.zeros(n, dtype=np.int64)
    if len(masks) <= 62:
        out = np.zeros(n, dtype=np.int64)
        for k, m in enumerate(masks):
            out |= m.astype(np.int64) << k
        return out
    stacked = np.packbits(np.stack(masks, axis=1), axis=1)
    return pd.factorize(pd.Series([bytes(r) for r in stacked]))[0].astype(np.int64)


def _rows_of(recs: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """Sorted row positions of the given records, vectorised."""
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, starts[recs], 1)
    np.add.at(marks, ends[recs], -1)
    return np.flatnonzero(np.cumsum(marks[:-1]) > 0)


def _value_at(body: Any, dotted: str) -> Any:
    node = body
    for seg in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            return None
    return node


def build_payloads(frame: pd.DataFrame, config: MappingConfig, targets: Mapping[str, Target], *,
                   items: pd.DataFrame | None = None, validate_bodies: str = "shapes") -> PayloadBatch:
    """Map, clean and validate rows into write bodies (a dry run: nothing is sent).

    ``items``: an optional line-items table joined on the key columns (then ``frame`` has one row per record
    and ``source_rows`` are positions in ``frame``). ``validate_bodies``: ``"shapes"`` (one body per shape,
    every body of a failing shape) or ``"all"``. Mapped columns that are missing raise ``ConfigError`` before
    any row is read.
    """
    if validate_bodies not in ("shapes", "all"):
        raise ConfigError("validate_bodies must be 'shapes' or 'all'")
    # Millions of short-lived containers and no cycles: the cyclic GC would only rescan them, over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Build(frame, config, targets, items, validate_bodies).run()
    finally:
        if was_enabled:
            gc.enable()
