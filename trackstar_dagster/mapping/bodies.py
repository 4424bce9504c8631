"""Bodies of one build: per-shape templates over the encoded column values, then layer (b) validation.

Why a module of its own: after the column stages have coded every value, this part decides which
template each record and item uses (patterns of present fields, constants, items, key tag), has
``body_templates`` write the text, hashes it, and validates one body per shape. The key tag's text is
``keys.key_tag``'s, built for all records at once when every key is plain (``_tag_texts``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson
import pandas as pd

from trackstar_dagster.base.keys import KEY_ID_MAX, LEGACY_TAG_MAX, key_tag
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.coercion import obj_array
from trackstar_dagster.mapping.config import _constants_for
from trackstar_dagster.mapping.previews import mask_body
from trackstar_dagster.mapping.rejects import _Rejects, _truncate
from trackstar_dagster.mapping.templates import _ESCAPE, _encode, _json_text, _text_builder


def _groups_of(codes: np.ndarray, k: int) -> list[np.ndarray]:
    """Positions of each code 0..k-1 (codes from ``pd.factorize``), one argsort for all."""
    if not len(codes):
        return []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(k)]


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


def _tag_texts(action: str, namespace: str | None, keys: list[str], tagging: np.ndarray,
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
    if keys and not lookalike and not _ESCAPE.search(prefix + "|".join(keys)) and max(map(len, keys)) <= limit:
        tags = [prefix + k for k in keys]  # == key_tag(action, k, namespace): plain keys are their own key id
        quoted = obj_array(['"' + t + '"' for t in tags])
    else:
        tags = [key_tag(action, k, namespace) for k in keys]
        quoted = obj_array([_json_text(t) for t in tags])
    if not tagging.all():
        off = np.flatnonzero(~tagging)
        quoted[off] = None
        for i in off.tolist():
            tags[i] = None
    return tags, quoted


class _Bodies(_Rejects):
    """The body stages of ``_Build`` (state set up by ``_Build`` and the column stages)."""

    def _bodies(self, good: np.ndarray) -> dict[str, Any]:
        """Bodies as compact, key-sorted JSON text, built by compiled templates per shape.

        Distinct values are JSON-encoded once (``orjson``); a template per (connection, present fields) joins
        the encoded pieces, so no per-record dict is built or serialised.
        """
        cfg = self.config
        ip = self.items_path
        conn_names = cfg.connections()
        conn_consts = {c: _constants_for(cfg, c, self.groups[self.conn_group[c]].unknown) for c in conn_names}
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
        tag_text, tags_arr = _tag_texts(self.action, cfg.tag_namespace, self.rec_key[good].tolist(), tagging)

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
        return {"good": good, "bodies": body_list, "hashes": hashes, "tags": tag_text, "h_combo": h_combo,
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
                        "check": [f"{fld}: {msg}"], "column": [fld],  # an object's personal leaves masked
                        "failure_case": [_truncate(mask_body(val, fld) if isinstance(val, dict | list) else val)],
                        "index": [int(self.src_sorted[self.starts[rec]])]}))
        if problems_seen:
            self.failures.setdefault("bodies", []).extend(problems_seen)
        return ok
