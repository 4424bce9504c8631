"""The build engine behind ``build_payloads``: config checks, the join, keys and routing, then the stages.

Why a module of its own: ``mapping`` is the public surface (types and one entry point); this is the one
place that runs a build, in order: check the config against the targets, join items, factorise keys and
routing into records, run the column stages (``payload_columns``), build and validate bodies
(``payload_bodies``), and assemble the ``PayloadBatch`` (rejects and checks from ``payload_rejects``).
"""

from __future__ import annotations

import difflib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import key_problem
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.bodies import _Bodies
from trackstar_dagster.mapping.coercion import FieldSpec, canonical_codes, coerce_codes, na_mask, obj_array
from trackstar_dagster.mapping.columns import _Columns, _key_codes
from trackstar_dagster.mapping.config import (
    MappingConfig,
    PayloadBatch,
    Target,
    _constants_for,
    _flatten_constants,
)
from trackstar_dagster.schema.openapi import find_operation

logger = logging.getLogger(__name__)


def _check_paths(paths: list[str]) -> None:
    """A path and one of its own sub-paths cannot both be set (``ship_to_address`` and ``...city``)."""
    ps = set(paths)
    for p in ps:
        parts = p.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in ps:
                raise ConfigError(f"target paths {'.'.join(parts[:i])!r} and {p!r} overlap; map only one")


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


_SURROGATE_KEY = "key holds a lone surrogate (not valid Unicode text), which no body, tag or ledger can carry"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key_problems(key_texts: np.ndarray) -> dict[int, str]:
    """``keys.key_problem`` of each distinct key text that has one (or a lone surrogate), by position."""
    texts = key_texts.tolist()
    present = [k for k in texts if k is not None] if None in texts else texts
    # cleaned keys are stripped, so only a NUL, an empty text or a lone surrogate can be wrong: screen the lot
    joined = "".join(present)
    if "\x00" not in joined and "" not in present and (joined.isascii() or _utf8(joined)):
        return {}
    return {i: why for i, k in enumerate(texts)
            if k is not None and (why := key_problem(k) or (None if _utf8(k) else _SURROGATE_KEY))}


def _shown(text: str) -> str:
    """A key as readable, storable text: NUL and lone surrogates written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _hashable_keys(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``frame`` with every key cell that cannot be hashed (a list, a dict, a signaling NaN) as None: a record
    without a key, refused as such, instead of an exception out of the join."""
    def ok(v: Any) -> bool:
        try:
            hash(v)
        except (TypeError, ArithmeticError):
            return False
        return True

    out = frame.copy()
    for k in keys:
        if out[k].dtype == object:
            out[k] = pd.Series([v if ok(v) else None for v in out[k].tolist()], index=out.index, dtype=object)
    return out


def _duplicated(frame: pd.DataFrame, wanted: list[str]) -> list[str]:
    """The columns of ``wanted`` that ``frame`` has more than once (``frame[c]`` would be a frame)."""
    names = Counter(str(c) for c in frame.columns)
    return [c for c in dict.fromkeys(wanted) if names[c] > 1]


class _Build(_Columns, _Bodies):
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
        twice = _duplicated(frame, cfg.source_columns())
        if items is not None:
            twice += [f"{c} (in items)" for c in _duplicated(items, [*cfg.key_columns, *cfg.fields.values()])]
        if twice:
            raise ConfigError(f"the source table has duplicate column(s) the mapping reads: {', '.join(twice)}; "
                              "rename or drop the copies")
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
        targets = self._target_paths()
        lacking: list[frozenset[str]] = []  # per group: the targets its schema lacks
        for name in cfg.connections():
            t = self.targets[name]
            gk = (t.integration_type, t.integration_name, id(t.doc))
            if gk not in seen:
                seen[gk] = len(self.groups)
                specs, required, complete = v.field_specs(t.doc, t.integration_type, t.integration_name,
                                                          self.action, list(cfg.fields))
                lacks = frozenset(v.unknown_paths(t.doc, t.integration_type, t.integration_name, self.action,
                                                  list(targets)))
                lacking.append(lacks)
                unknown = lacks if cfg.unknown_fields == "drop" else frozenset()
                self.groups.append(_Group(t.integration_type, t.integration_name, t.doc, specs, required,
                                          complete, v.has_property(t.doc, self.action, "trackstar_tags"), unknown))
            self.conn_group[name] = seen[gk]
        self._check_targets(targets, lacking)
        self.items_path = self._items_path()
        ip = self.items_path
        self.item_paths = [p for p in cfg.fields if ip and p.startswith(ip + ".")]
        self.header_paths = [p for p in cfg.fields if p not in self.item_paths]
        if ip and any(p == ip for p in cfg.fields):
            raise ConfigError(f"{ip!r} is the items path; map its fields ({ip}.sku, ...) instead")

    def _target_paths(self) -> dict[str, list[str]]:
        """Every target path the mapping writes (mapped fields, constants, connection constants) -> where it is
        set (``fields``, ``constants``, ``connection_constants.<connection>``)."""
        cfg = self.config
        out: dict[str, list[str]] = {}
        for path in cfg.fields:
            out.setdefault(path, []).append("fields")
        for path in _flatten_constants(cfg.constants):
            out.setdefault(path, []).append("constants")
        for conn, consts in cfg.connection_constants.items():
            for path in _flatten_constants(consts):
                out.setdefault(path, []).append(f"connection_constants.{conn}")
        return out

    def _check_targets(self, targets: dict[str, list[str]], lacking: list[frozenset[str]]) -> None:
        """A target no connection's schema has is a typo: one ``ConfigError`` naming each, with the closest field
        any of the schemas has. (One only some lack is left out for those, or rejected: ``unknown_fields``.)"""
        if not lacking:
            return
        typos = [p for p in targets if all(p in lacks for lacks in lacking)]
        if not typos:
            return
        known: list[str] = []
        for g in self.groups:
            known += v.fields_for(g.doc, g.integration_type, g.integration_name, self.action)["field"].tolist()
        known = list(dict.fromkeys(known))
        lines = []
        for p in typos:
            close = difflib.get_close_matches(p, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"{p!r} (in {', '.join(targets[p])}{hint})")
        schemas = sorted({g.integration_name for g in self.groups})
        raise ConfigError(f"no connection's {self.action} schema ({', '.join(schemas)}) has the target field(s) "
                          + ", ".join(lines))

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
        right_na = np.zeros(len(right), dtype=bool)
        for k in keys:
            right_na |= na_mask(right[k])
        right = right[~right_na]
        try:
            merged = left.merge(right, on=keys, how="left", sort=False)
        except (TypeError, ArithmeticError):  # a key cell that cannot be hashed (a list, a signaling NaN)
            left, right = _hashable_keys(left, keys), _hashable_keys(right, keys)
            right = right[~right[keys].isna().any(axis=1)]  # items whose key was refused belong to no order
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
        # a key that cannot identify a record (a NUL character): that record is refused, the others go on
        bad_key = _key_problems(key_uniques)
        if bad_key:
            for r in np.flatnonzero(np.isin(kc, list(bad_key))).tolist():
                key = self.rec_key[r]
                self._reject(r, key_label, bad_key[int(kc[r])], _shown(key))
                if not _utf8(key):  # no frame can hold it: the refused record's key column shows the escapes
                    self.rec_key[r] = key.encode("utf-8", "backslashreplace").decode("utf-8")
            alive &= ~np.isin(kc, list(bad_key))
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

    # -- outputs ----------------------------------------------------------------------------------------

    def _finish(self, built: dict[str, Any]) -> PayloadBatch:
        ok = self._validate_bodies(built)
        self._lap("body validation")
        good = built["good"][ok]
        keep = np.flatnonzero(ok)
        src_list = self.src_sorted.tolist()
        starts, ends = self.starts, self.ends
        bodies, hashes, tags = built["bodies"], built["hashes"], built["tags"]
        if len(keep) < len(bodies):
            bodies = [bodies[i] for i in keep.tolist()]
            hashes = [hashes[i] for i in keep.tolist()]
            tags = [tags[i] for i in keep.tolist()]
        self._lap("payloads: prepare")
        payloads = pd.DataFrame({
            "key": pd.Series(self.rec_key[good], dtype=object).astype("str"),
            "connection": pd.Series(self.rec_conn[good], dtype=object).astype("str"),
            "action": pd.Series(np.full(len(good), self.action, dtype=object)).astype("str"),
            "body": pd.Series(obj_array(bodies), dtype=object).astype("str"),
            "body_hash": pd.Series(obj_array(hashes), dtype=object).astype("str"),
            "source_rows": pd.Series([src_list[s:e] for s, e in zip(starts[good].tolist(), ends[good].tolist(),
                                                                      strict=True)], dtype=object),
            "tag": pd.Series(obj_array(tags), dtype=object).astype("str"),
        })
        self._lap("payloads frame")
        rejects = self._rejects_frame(src_list)
        checks = self._checks(len(good))
        self._lap("rejects and checks")
        dropped = {}
        for name, gi in self.conn_group.items():
            unknown = self.groups[gi].unknown
            if unknown:  # the mapped fields and this connection's constants its schema lacks
                used = [*self.config.fields, *_constants_for(self.config, name)]
                if left_out := sorted({p for p in used if p in unknown}):
                    dropped[name] = left_out
        return PayloadBatch(payloads=payloads, rejects=rejects, checks=checks, records=self.R,
                            timings=self.timings, dropped_fields=dropped,
                            untagged_connections=self._untagged_connections())

    def _untagged_connections(self) -> list[str]:
        """Connections whose bodies carry no key tag, warned about once per build."""
        cfg = self.config
        untagged = [name for name in cfg.connections()
                    if not (cfg.key_tag and self.groups[self.conn_group[name]].has_tags)]
        if untagged:
            why = ("key_tag is off" if not cfg.key_tag
                   else "their integration's schema has no trackstar_tags")
            logger.warning(
                "Bodies for connection(s) %s carry no key tag (%s): for them an unknown write outcome (a timeout, "
                "a lost response) cannot be proven from Trackstar, and a lost ledger cannot be rebuilt.",
                ", ".join(untagged), why)
        return untagged
