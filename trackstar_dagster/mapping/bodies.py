"""Bodies of one build: per-shape templates over the encoded column values, as JSON text, hashed once.

Why a module of its own: after the column stages have coded every value, this stage decides which
template each record and item uses (patterns of present fields, constants, items, key tag), has
``templates`` write the text and hashes it. The text is what goes on the wire: the payloads' ``body`` and
``body_hash`` are these strings and their SHA-256, computed here once (the writer sends those bytes).
The key tag's text is ``keys.key_tag``'s, built for all records at once when every key is plain
(``_tag_texts``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from trackstar_dagster.base.keys import KEY_ID_MAX, LEGACY_TAG_MAX, key_tag
from trackstar_dagster.mapping.cells import none_mask, obj_array
from trackstar_dagster.mapping.columns import Columns
from trackstar_dagster.mapping.config import MappingConfig
from trackstar_dagster.mapping.plan import Plan
from trackstar_dagster.mapping.records import Records
from trackstar_dagster.mapping.templates import ESCAPE, encode_values, json_text, text_builder


@dataclass
class BuiltBodies:
    """The bodies of the records ``good`` (in that order), and what layer (b) needs to group them by shape."""

    good: np.ndarray  # the records built
    bodies: list[str]  # compact, key-sorted JSON text: the bytes the writer sends
    hashes: list[str]  # SHA-256 hex of each body's UTF-8 text
    tags: list[str | None]  # the key tag each body carries (None: untagged)
    h_combo: np.ndarray  # per body: its header template
    item_shape: np.ndarray  # per body: the set of its item templates (a bit mask)
    shapes_ok: bool  # False when there are too many item templates for ``item_shape``: check every body


def _groups_of(codes: np.ndarray, k: int) -> list[np.ndarray]:
    """Positions of each code 0..k-1 (codes from ``pd.factorize``), one argsort for all."""
    if not len(codes):
        return []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(k)]


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


def _tag_texts(
    action: str,
    namespace: str | None,
    keys: list[str],
    tagging: np.ndarray,
) -> tuple[list[str | None], np.ndarray]:
    """Per record, ``keys.key_tag(action, key, namespace)`` and its JSON text (both None where not tagging).

    Fast path: when every key is its own key id (short, no character JSON escapes, no ``h:`` lookalike), the
    tag is ``prefix + key`` and its JSON text is that in quotes. Otherwise each tag comes from ``key_tag``.
    """
    prefix = key_tag(action, "k", namespace)[:-1]  # the text before the key (checks the namespace)
    if namespace is None:  # the first release's tsd:<action>:<key>, hashed past LEGACY_TAG_MAX
        limit = LEGACY_TAG_MAX - len(prefix)
        lookalike = False
    else:  # tsd:<namespace>:<action>:<key id>; a key starting "h:" is hashed (it would read as a key id)
        limit = KEY_ID_MAX
        lookalike = bool(keys) and ("|h:" in "|" + "|".join(keys))
    if not tagging.any():
        return [None] * len(keys), obj_array([None] * len(keys))
    if keys and not lookalike and not ESCAPE.search(prefix + "|".join(keys)) and max(map(len, keys)) <= limit:
        # == key_tag(action, k, namespace): plain keys are their own key id
        texts = [prefix + k for k in keys]
        quoted = obj_array(['"' + t + '"' for t in texts])
    else:
        texts = [key_tag(action, k, namespace) for k in keys]
        quoted = obj_array([json_text(t) for t in texts])
    tags = cast(list[str | None], texts)  # the same list: untagged records' tags become None below
    if not tagging.all():
        off = np.flatnonzero(~tagging)
        quoted[off] = None
        for i in off.tolist():
            tags[i] = None
    return tags, quoted


def build_bodies(
    config: MappingConfig,
    plan: Plan,
    records: Records,
    columns: Columns,
    good: np.ndarray,
    lap: Callable[[str], None],
) -> BuiltBodies:
    """Bodies as compact, key-sorted JSON text, built by compiled templates per shape.

    Distinct values are JSON-encoded once (``orjson``); a template per (connection, present fields) joins
    the encoded pieces, so no per-record dict is built or serialised.
    """
    cfg = config
    rs = records
    ip = plan.items_path
    conn_names = plan.connections
    conn_consts = {c: plan.constants(cfg, c) for c in conn_names}
    head_consts = {
        c: {p: x for p, x in cc.items() if not (ip and p.startswith(ip + "."))}
        for c, cc in conn_consts.items()
    }
    item_consts = {
        c: {p[len(ip) + 1 :]: x for p, x in cc.items() if ip and p.startswith(ip + ".")}
        for c, cc in conn_consts.items()
    }
    G = len(good)
    n = rs.n
    g_conn = rs.rec_conn_id[good]

    # items: one JSON object per row, a template per (connection constants, pattern)
    rows = _rows_of(good, rs.starts, rs.ends, n) if G else np.zeros(0, dtype=np.int64)
    ipaths = plan.item_paths
    rel = [p[len(ip) + 1 :] for p in ipaths] if ip else []
    i_codes = [columns.item_codes[p][rows] for p in ipaths]
    i_enc = [encode_values(columns.item_values[p]) for p in ipaths]
    i_pat = _patterns([c >= 0 for c in i_codes], len(rows))
    any_item_consts = any(item_consts.values())
    row_conn = rs.rec_conn_id[rs.rec_sorted[rows]] if any_item_consts else np.zeros(len(rows), np.int64)
    i_combo, i_uniques = pd.factorize(row_conn * (int(i_pat.max(initial=0)) + 1) + i_pat)
    item_txt = np.full(n, None, dtype=object)
    for sel in _groups_of(i_combo, len(i_uniques)):
        k0 = sel[0]
        present = [k for k in range(len(ipaths)) if i_codes[k][k0] >= 0]
        consts = item_consts[conn_names[row_conn[k0]]] if any_item_consts else {}
        if not present:
            continue  # a row with no item field filled is no item (e.g. an order without lines)
        build = text_builder([rel[k] for k in present], consts)
        cols = [i_enc[k][i_codes[k][sel]] for k in present]
        item_txt[rows[sel]] = obj_array(list(map(build, *cols)) if cols else [build() for _ in sel])

    lap("bodies: items")
    # per record: the items array text and the key tag text
    items_list = item_txt.tolist()
    starts = rs.starts[good].tolist()
    ends = rs.ends[good].tolist()
    if ip:
        if len(rows) and none_mask(item_txt[rows]).any():
            its = [[x for x in items_list[s:e] if x is not None] for s, e in zip(starts, ends, strict=True)]
            items_json = ["[" + ",".join(x) + "]" if x else None for x in its]
        else:
            items_json = ["[" + ",".join(items_list[s:e]) + "]" for s, e in zip(starts, ends, strict=True)]
    else:
        items_json = [None] * G
    items_arr = obj_array(items_json)
    tagging = (
        np.array([plan.tagged(cfg, c) for c in conn_names] + [False], dtype=bool)[g_conn]
        if G
        else np.zeros(0, dtype=bool)
    )
    tag_text, tags_arr = _tag_texts(plan.action, cfg.tag_namespace, rs.rec_key[good].tolist(), tagging)

    lap("bodies: item arrays and tags")
    # headers: a template per (connection, present fields, has items, has tag)
    hp = plan.header_paths
    h_codes = [columns.header_codes[p][good] for p in hp]
    h_enc = [encode_values(columns.header_values[p]) for p in hp]
    lap("bodies: encode header values")
    h_pat = _patterns([c >= 0 for c in h_codes], G)
    flags = (~none_mask(items_arr)).astype(np.int64) * 2 + tagging.astype(np.int64)
    h_key = (g_conn * (int(h_pat.max(initial=0)) + 1) + h_pat) * 4 + flags
    h_combo, h_uniques = pd.factorize(h_key)
    bodies = np.full(G, None, dtype=object)
    for sel in _groups_of(h_combo, len(h_uniques)):
        k0 = sel[0]
        present = [k for k in range(len(hp)) if h_codes[k][k0] >= 0]
        has_items, has_tag = bool(flags[k0] & 2), bool(flags[k0] & 1)
        build = text_builder(
            [hp[k] for k in present],
            head_consts[conn_names[g_conn[k0]]],
            items_path=ip if has_items else None,
            tag=has_tag,
        )
        cols = [h_enc[k][h_codes[k][sel]] for k in present]
        if has_items:
            cols.append(items_arr[sel])
        if has_tag:
            cols.append(tags_arr[sel])
        bodies[sel] = obj_array(list(map(build, *cols)) if cols else [build() for _ in sel])

    lap("bodies: headers")
    # shapes: header template x set of item templates, per record
    item_shape = np.zeros(G, dtype=np.int64)
    shapes_ok = True
    if ip and len(rows):
        pid = np.zeros(n, dtype=np.int64)
        pid[rows] = i_combo + 1
        if len(i_uniques) + 1 <= 62:
            per_rec = np.bitwise_or.reduceat(np.left_shift(np.int64(1), pid), rs.starts)
            item_shape = per_rec[good]
        else:
            shapes_ok = False
    lap("bodies: shapes")
    body_list = bodies.tolist()
    sha = hashlib.sha256
    hashes = [sha(b.encode()).hexdigest() for b in body_list]
    return BuiltBodies(good, body_list, hashes, tag_text, h_combo, item_shape, shapes_ok)
