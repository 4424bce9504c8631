"""Records: the join of items, keys and routing to connections, as sorted index arrays over the rows.

Why a module of its own: a record's identity (key and connection) and its rows are decided once, here, and
every later stage reads the same layout (``Records``): rows sorted by record, each record's slice
``starts[r]:ends[r]`` of them, its key, connection and schema group. A key or route that cannot make a
record (null, a NUL character, a routing value no connection takes) is found by ``screen``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
import pandas as pd

from trackstar_dagster.base.keys import encode_key, key_problem
from trackstar_dagster.mapping.cells import na_mask, none_mask, obj_array, with_none
from trackstar_dagster.mapping.coercion import ColumnCodes, canonical_codes, coerce_codes
from trackstar_dagster.mapping.config import MappingConfig, route_names
from trackstar_dagster.mapping.fieldspec import FieldSpec
from trackstar_dagster.mapping.plan import Plan

_SURROGATE_KEY = "key holds a lone surrogate (not valid Unicode text), which no body, tag or ledger can carry"


@dataclass
class Records:
    """The rows of one build grouped into records (one per key and connection), as index arrays.

    Rows are "work" rows (``work``, after the join); "sorted" rows are the same rows ordered by record.
    """

    work: pd.DataFrame  # the (joined) source rows
    n: int  # rows
    R: int  # records
    order: np.ndarray  # sorted position -> work row
    inv_order: np.ndarray  # work row -> sorted position
    rec_of_row: np.ndarray  # work row -> record
    rec_sorted: np.ndarray  # sorted position -> record
    starts: np.ndarray  # record -> its first sorted position
    ends: np.ndarray  # record -> one past its last sorted position
    src_sorted: np.ndarray  # sorted position -> row of the caller's ``frame``
    rec_key: np.ndarray  # record -> key text (None: no key)
    rec_key_code: np.ndarray  # record -> index into ``key_uniques`` (-1: no key)
    key_uniques: np.ndarray  # distinct key texts
    rec_conn: np.ndarray  # record -> connection name (None: unrouted)
    rec_raw_conn: np.ndarray  # record -> raw routing value (None: empty)
    rec_group: np.ndarray  # record -> schema group (-1: unrouted)
    rec_conn_id: np.ndarray  # record -> index into ``plan.connections`` (-1: unrouted)

    @cached_property
    def _src_list(self) -> list[int]:
        return self.src_sorted.tolist()

    def source_rows(self, recs: np.ndarray) -> list[list[int]]:
        """The caller's frame rows of each record (the ``source_rows`` column of payloads and rejects)."""
        src_list = self._src_list
        return [
            src_list[s:e] for s, e in zip(self.starts[recs].tolist(), self.ends[recs].tolist(), strict=True)
        ]


#: one refusal by ``screen``: (record, field, reason, value shown)
Refusal = tuple[int, str, str, Any]


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


def join(
    frame: pd.DataFrame, items: pd.DataFrame | None, config: MappingConfig, plan: Plan
) -> tuple[pd.DataFrame, np.ndarray]:
    """(work rows, their row in ``frame``): ``frame`` as it is, or joined with ``items`` on the key columns."""
    if items is None:
        return frame, np.arange(len(frame))
    keys = config.key_columns
    item_cols = [c for p, c in config.fields.items() if p in plan.item_paths and c in items.columns]
    head_cols = [c for c in config.source_columns() if c in frame.columns and c not in item_cols]
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


def key_codes(n: int, columns: list[str], codes_of: ColumnCodes) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, key text per code): keys as cleaned text, several columns as ``keys.encode_key``.

    A row whose key (or any key part) is null-like gets code -1. Several columns: the rows' part codes are
    factorised together (codes in order of first appearance), then each distinct combination is encoded once,
    so ``("a|b", "c")`` and ``("a", "b|c")`` stay two keys.
    """
    parts = []
    for c in columns:
        codes, u = codes_of.get(c, FieldSpec(c, type="string"))
        canon = canonical_codes(u.values, u.distinct)
        parts.append((np.where(codes >= 0, np.append(canon, -1)[codes], -1), u.values, canon))
    if len(parts) == 1:
        codes, values, canon = parts[0]
        text = np.full(int(canon.max(initial=-1)) + 1, None, dtype=object)
        ok = canon >= 0
        text[canon[ok]] = values[ok]
        return codes, text
    missing = np.zeros(n, dtype=bool)
    texts = []
    for codes, values, canon in parts:
        missing |= codes < 0
        t = np.full(int(canon.max(initial=-1)) + 1, None, dtype=object)
        ok = canon >= 0
        t[canon[ok]] = values[ok]
        texts.append(t)
    present = np.flatnonzero(~missing)
    combo = np.zeros(len(present), dtype=np.int64)
    for (codes, _, _), t in zip(
        parts, texts, strict=True
    ):  # canonical part codes -> one code per combination
        combo = pd.factorize(combo * (len(t) + 1) + codes[present])[0].astype(np.int64)
    rows = present[np.unique(combo, return_index=True)[1]]  # each combination's first row, by code
    cols = [t[codes[rows]].tolist() for (codes, _, _), t in zip(parts, texts, strict=True)]
    # parts holding neither "|" nor "\\" are joined as they are (what ``encode_key`` does to them, faster)
    seen = "".join(x for t in texts for x in t.tolist() if x is not None)
    plain = "|" not in seen and "\\" not in seen
    uniques = obj_array(
        ["|".join(p) for p in zip(*cols, strict=True)]
        if plain
        else [encode_key(p) for p in zip(*cols, strict=True)]
    )
    out = np.full(n, -1, dtype=np.intp)
    out[present] = combo
    return out, uniques


def _routing(
    work: pd.DataFrame, config: MappingConfig, conn_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(connection code per row, raw routing code per row, raw routing values): -1 where unrouted/empty."""
    n = len(work)
    if config.connection:
        conn_code = np.zeros(n, dtype=np.int64)
        return conn_code, conn_code, np.array([config.connection], dtype=object)
    column = cast(str, config.connection_column)  # the config sets exactly one of the two
    raw_code, ru = coerce_codes(work[column], FieldSpec(column, type="string"))
    raw_uniques = ru.values
    canon = canonical_codes(raw_uniques)
    raw_code = np.where(raw_code >= 0, np.append(canon, -1)[raw_code], -1)
    first_of: dict[int, int] = {}
    for i, c in enumerate(canon.tolist()):
        first_of.setdefault(c, i)
    raw_uniques = (
        raw_uniques[[first_of[c] for c in sorted(first_of) if c >= 0]] if len(canon) else raw_uniques[:0]
    )
    cid = {name: i for i, name in enumerate(conn_names)}
    values = (
        route_names([x for x in raw_uniques.tolist() if isinstance(x, str)], conn_names)
        if config.open_routing
        else config.connection_values
    )
    u_conn = np.array(
        [cid.get(values[x], -1) if x in values else -1 for x in raw_uniques.tolist()], dtype=np.int64
    )
    conn_code = np.where(raw_code >= 0, np.append(u_conn, -1)[raw_code], -1)
    return conn_code, raw_code, raw_uniques


def row_connections(frame: pd.DataFrame, config: MappingConfig, available: Sequence[str] = ()) -> np.ndarray:
    """Each row's connection as the mapping routes it (None: routed nowhere), by the same rule as the build:
    for callers that split rows by connection before mapping them (a sync partitioned by connection). With
    open routing (the column names the connection), ``available`` are the names it may name."""
    names = sorted(set(available)) if config.open_routing else config.connections()
    conn_code, _, _ = _routing(frame, config, names)
    return with_none(np.asarray(names, dtype=object))[conn_code]


def index_records(
    work: pd.DataFrame, src: np.ndarray, config: MappingConfig, plan: Plan, codes_of: ColumnCodes
) -> Records:
    """Group the work rows into records: one per (connection or raw routing value, key), on factorised codes.

    Rows with a null key are records alone (each refused by ``screen``).
    """
    n = len(work)
    k_codes, key_uniques = key_codes(n, config.key_columns, codes_of)
    conn_names = plan.connections
    conn_code, raw_code, raw_uniques = _routing(work, config, conn_names)
    route = np.where(conn_code >= 0, conn_code, len(conn_names) + raw_code.astype(np.int64) + 1)
    combo = route.astype(np.int64) * (len(key_uniques) + 1) + (k_codes.astype(np.int64) + 1)
    null_key = k_codes < 0
    combo[null_key] = -1 - np.flatnonzero(null_key)
    rec_of_row, _ = pd.factorize(combo)
    order = np.argsort(rec_of_row, kind="stable")
    inv_order = np.empty(n, dtype=np.int64)
    inv_order[order] = np.arange(n)
    rec_sorted = rec_of_row[order]
    R = int(rec_sorted[-1]) + 1 if n else 0
    starts = np.flatnonzero(np.r_[True, rec_sorted[1:] != rec_sorted[:-1]]) if n else np.zeros(0, int)
    ends = np.r_[starts[1:], n] if n else np.zeros(0, int)
    first_row = order[starts]
    kc = k_codes[first_row]
    cc = conn_code[first_row]
    rc = raw_code[first_row]
    group_of = np.array([plan.conn_group[c] for c in conn_names], dtype=np.int64)
    return Records(
        work=work,
        n=n,
        R=R,
        order=order,
        inv_order=inv_order,
        rec_of_row=rec_of_row,
        rec_sorted=rec_sorted,
        starts=starts,
        ends=ends,
        src_sorted=src[order],
        rec_key=with_none(key_uniques)[kc],
        rec_key_code=kc,
        key_uniques=key_uniques,
        rec_conn=with_none(np.asarray(conn_names, dtype=object))[cc],
        rec_raw_conn=with_none(raw_uniques)[rc],
        rec_group=np.append(group_of, -1)[cc],
        rec_conn_id=cc.astype(np.int64),
    )


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
    return {
        i: why
        for i, k in enumerate(texts)
        if k is not None and (why := key_problem(k) or (None if _utf8(k) else _SURROGATE_KEY))
    }


def _shown(text: str) -> str:
    """A key as readable, storable text: NUL and lone surrogates written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def screen(records: Records, config: MappingConfig) -> tuple[np.ndarray, list[Refusal]]:
    """(records that can be built, refusals): a null key, a key ``keys.key_problem`` refuses, no connection.

    A key no frame can hold (a lone surrogate) is rewritten in ``records.rec_key`` with its escapes, so the
    refused record's key column can be stored.
    """
    out: list[Refusal] = []
    alive = np.ones(records.R, dtype=bool)
    rec_key = records.rec_key
    kc = records.rec_key_code
    key_label = "+".join(config.key_columns)
    for r in np.flatnonzero(none_mask(rec_key)).tolist():
        out.append((r, key_label, "record key is null or empty", None))
    bad_key = _key_problems(records.key_uniques)
    if bad_key:
        for r in np.flatnonzero(np.isin(kc, list(bad_key))).tolist():
            key = rec_key[r]
            out.append((r, key_label, bad_key[int(kc[r])], _shown(key)))
            if not _utf8(key):  # no frame can hold it: the refused record's key column shows the escapes
                rec_key[r] = key.encode("utf-8", "backslashreplace").decode("utf-8")
        alive &= ~np.isin(kc, list(bad_key))
    for r in np.flatnonzero(none_mask(records.rec_conn) & ~none_mask(rec_key)).tolist():
        raw = records.rec_raw_conn[r]
        if raw is None:
            why = "routing value is empty"
        elif config.open_routing:
            why = "routing value names no configured connection"
        else:
            why = "routing value is not in connection_values (no connection for it)"
        out.append((r, config.connection_column or "connection", f"{config.connection_column}: {why}", raw))
    alive &= ~none_mask(rec_key) & (records.rec_group >= 0)
    return alive, out
