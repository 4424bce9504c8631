"""Mapped columns of one build: key codes, coercion per field spec, header conflicts, constants, pandera.

Why a module of its own: everything here is per column and vectorised, on factorised codes over the
sorted rows; it fills the per-path value/code arrays (``hu``/``hc`` for header fields, ``iu``/``ic`` for
item fields) that ``payload_bodies`` reads, and refuses bad rows through ``payload_rejects``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.keys import encode_key
from trackstar_dagster.base.nulls import is_null_like
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.coercion import (
    Coerced,
    FieldSpec,
    canonical_codes,
    clean_strings,
    coerce_codes,
    coerce_column,
    obj_array,
    typed_series,
    unwritable,
)
from trackstar_dagster.mapping.config import _constants_for
from trackstar_dagster.mapping.rejects import _Rejects, _truncate


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
    """(code per row, key text per code): keys as cleaned text, several columns as ``keys.encode_key``.

    A row whose key (or any key part) is null-like gets code -1. Several columns: the rows' part codes are
    factorised together (codes in order of first appearance), then each distinct combination is encoded once,
    so ``("a|b", "c")`` and ``("a", "b|c")`` stay two keys.
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
        t = np.full(int(canon.max(initial=-1)) + 1, None, dtype=object)
        ok = canon >= 0
        t[canon[ok]] = values[ok]
        texts.append(t)
    present = np.flatnonzero(~missing)
    combo = np.zeros(len(present), dtype=np.int64)
    for (codes, _, _), t in zip(parts, texts, strict=True):  # canonical part codes -> one code per combination
        combo = pd.factorize(combo * (len(t) + 1) + codes[present])[0].astype(np.int64)
    rows = present[np.unique(combo, return_index=True)[1]]  # each combination's first row, by code
    cols = [t[codes[rows]].tolist() for (codes, _, _), t in zip(parts, texts, strict=True)]
    # parts holding neither "|" nor "\\" are joined as they are (what ``encode_key`` does to them, faster)
    seen = "".join(x for t in texts for x in t.tolist() if x is not None)
    plain = "|" not in seen and "\\" not in seen
    uniques = obj_array(["|".join(p) for p in zip(*cols, strict=True)] if plain
                        else [encode_key(p) for p in zip(*cols, strict=True)])
    out = np.full(len(frame), -1, dtype=np.intp)
    out[present] = combo
    return out, uniques


def _missing(cell: Any) -> bool:
    """A source cell with nothing in it (None, NaN, NA, NaT); text, even null-like text, is something."""
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    if isinstance(cell, float | np.floating):
        return bool(cell != cell)
    return isinstance(cell, np.datetime64) and bool(np.isnat(cell))


def _writable(c: Coerced, path: str) -> Coerced:
    """``c`` with every value ``unwritable`` finds refused (bad, with its reason, None): a copy if any."""
    found = unwritable(c.values, c.kind)
    if not found:
        return c
    at = list(found)
    values, bad, null = c.values.copy(), c.bad.copy(), c.null.copy()
    values[at] = None
    bad[at] = True
    null[at] = False
    reasons = {**c.reasons, **{p: f"{path}: {why}" for p, why in found.items()}}
    return Coerced(values, null, bad, reasons, c.kind, c.distinct, path)


class _Columns(_Rejects):
    """The column stages of ``_Build`` (state set up by ``_Build``: work frame, sorted rows, groups)."""

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
                c = _writable(coerce_column(series, spec), path)
                out = c.values
            else:
                rows = np.flatnonzero(np.isin(row_group, group_ids))
                if not len(rows):
                    continue
                c = _writable(coerce_column(series.iloc[rows].reset_index(drop=True), spec), path)
                out[rows] = c.values
            if spec.type is not None:  # an untyped (or, dropped, unknown) field does not decide the kind
                kinds.add(c.kind)
            if c.bad.any():
                pos = np.flatnonzero(c.bad)
                at = pos if rows is None else rows[pos]
                keep = self._uses(at, path)
                pos, at = pos[keep], at[keep]
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
        u = _writable(u, path)  # a copy when a value is refused: the cached one also serves the key columns
        if u.bad.any():
            bad_rows = np.flatnonzero((codes >= 0) & np.append(u.bad, False)[codes])
            bad_rows = bad_rows[self._uses(bad_rows, path)]
            self._row_failures("coercion", self.inv_order[bad_rows], path,
                               [u.reasons[int(codes[r])] for r in bad_rows.tolist()],
                               series.iloc[bad_rows].tolist())
        valid = np.append(~np.equal(u.values, None), False)
        codes = np.where(valid[codes], codes, -1)[self.order]
        return u.values, codes, u.kind, u.distinct

    def _uses(self, rows: np.ndarray, path: str) -> np.ndarray:
        """Which of these (work-order) rows' connections carry ``path``: a value a connection leaves out is
        not refused for it (mask over ``rows``)."""
        groups = [gi for gi, g in enumerate(self.groups) if path in g.unknown]
        if not groups or not len(rows):
            return np.ones(len(rows), dtype=bool)
        return ~np.isin(self.rec_group[self.rec_of_row[rows]], groups)

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

    def _apply_constants(self) -> None:
        """Constants fill the mapped fields a record leaves empty (connection constants first), so the flat
        checks see what the body will hold."""
        cfg = self.config
        conn_names = cfg.connections()
        for conn in conn_names:
            consts = _constants_for(cfg, conn, self.groups[self.conn_group[conn]].unknown)
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
        whole = pd.isna(fc["index"]).to_numpy(dtype=bool)
        pos = np.where(whole, 0, pd.to_numeric(fc["index"], errors="coerce").fillna(0).to_numpy()).astype(np.int64)
        cases = self._source_values(fields, pos, whole, level, fc["failure_case"].tolist())
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

    def _source_values(self, fields: list[str], pos: np.ndarray, whole: np.ndarray, level: str,
                       checked: list[Any]) -> list[Any]:
        """The source cell behind each pandera failure, so a reject shows what the row held (``"NULL"``,
        ``" 0 "``), not the cleaned value (None, 0): an item's own cell; for a header field, the first
        non-missing cell among the record's rows. The checked value stays where every cell is empty, where
        a constant filled a null-like cell (the constant is what failed) and for frame-level failures."""
        out = list(checked)
        by_field: dict[str, list[int]] = {}
        for i, (fld, w) in enumerate(zip(fields, whole.tolist(), strict=True)):
            if not w and fld in self.config.fields:
                by_field.setdefault(fld, []).append(i)
        for fld, idx in by_field.items():
            series = self.work[self.config.fields[fld]]
            at = pos[idx]
            if level == "row":
                starts, lens = at, np.ones(len(at), dtype=np.int64)
            else:
                starts, lens = self.starts[at], self.ends[at] - self.starts[at]
            # every sorted row of the failures, in one gather: range k covers starts[k] .. starts[k] + lens[k]
            ends = np.cumsum(lens)
            sorted_rows = np.repeat(starts - (ends - lens), lens) + np.arange(int(ends[-1]) if len(ends) else 0)
            cells = series.iloc[self.order[sorted_rows]].tolist()
            if len(cells) == len(idx):  # one cell per failure (items, one-row records)
                firsts = cells
            else:
                firsts = [next((c for c in cells[s:e] if not _missing(c)), None)
                          for s, e in zip((ends - lens).tolist(), ends.tolist(), strict=True)]
            for i, cell in zip(idx, firsts, strict=True):
                if not _missing(cell) and (_missing(out[i]) or not is_null_like(cell)):
                    out[i] = cell
        return out
