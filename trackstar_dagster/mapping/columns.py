"""Mapped columns of one build: coercion per field spec, header conflicts and constants, on codes.

Why a module of its own: everything here is per column and vectorised, on factorised codes over the
sorted rows. In: the plan, the records, the column-codes cache and the ``Rejects`` collector (bad cells and
conflicting header rows are refused there). Out: ``Columns``, per mapped path its distinct values and a
code per record (header fields) or per sorted row (item fields), which the checks and the bodies read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trackstar_dagster.mapping.cells import none_mask, obj_array, with_none
from trackstar_dagster.mapping.coercion import ColumnCodes, canonical_codes, coerce_column
from trackstar_dagster.mapping.config import MappingConfig
from trackstar_dagster.mapping.fieldspec import FieldSpec
from trackstar_dagster.mapping.plan import Plan
from trackstar_dagster.mapping.records import Records
from trackstar_dagster.mapping.rejects import Rejects, truncate
from trackstar_dagster.mapping.unwritable import writable


@dataclass
class Columns:
    """Per mapped path: distinct values (ending with None, so code -1 reads None), codes and value kind.

    Header paths are coded per record (``header_codes[path][r]``), item paths per sorted row.
    """

    header_values: dict[str, np.ndarray] = field(default_factory=dict)
    header_codes: dict[str, np.ndarray] = field(default_factory=dict)
    header_kind: dict[str, str] = field(default_factory=dict)
    item_values: dict[str, np.ndarray] = field(default_factory=dict)
    item_codes: dict[str, np.ndarray] = field(default_factory=dict)
    item_kind: dict[str, str] = field(default_factory=dict)


def build_columns(
    config: MappingConfig,
    plan: Plan,
    records: Records,
    codes_of: ColumnCodes,
    rejects: Rejects,
    lap: Callable[[str], None],
) -> Columns:
    """Coerce every mapped column, check header conflicts, fill constants (timed by ``lap``)."""
    stage = _ColumnStage(config, plan, records, codes_of, rejects)
    for path in plan.header_paths:
        stage.header_column(path)
    lap("header columns")
    for path in plan.item_paths:
        stage.item_column(path)
    lap("item columns")
    stage.apply_constants()
    return stage.out


class _ColumnStage:
    """The column work of one build; its only output is ``out`` (and the rejects it reports)."""

    def __init__(
        self, config: MappingConfig, plan: Plan, records: Records, codes_of: ColumnCodes, rejects: Rejects
    ) -> None:
        self.config = config
        self.plan = plan
        self.records = records
        self.codes_of = codes_of
        self.rejects = rejects
        self.out = Columns()

    def _spec_groups(self, path: str) -> list[tuple[FieldSpec, list[int]]]:
        """Distinct coercion specs (type, format) of a path across the groups, with the groups using each."""
        out: dict[tuple[Any, Any], tuple[FieldSpec, list[int]]] = {}
        for gi, g in enumerate(self.plan.groups):
            spec = g.specs[path]
            k = (spec.type, spec.format)
            if k in out:
                out[k][1].append(gi)
            else:
                out[k] = (spec, [gi])
        return list(out.values())

    def _coerce_sorted(self, path: str) -> tuple[np.ndarray, str]:
        """Coerce a mapped column (per group spec) and return its values in sorted row order, rejecting bad rows."""
        rs = self.records
        col = self.config.fields[path]
        series = rs.work[col]
        out = np.full(rs.n, None, dtype=object)
        kinds: set[str] = set()
        row_group = rs.rec_group[rs.rec_of_row] if len(self.plan.groups) > 1 else None
        for spec, group_ids in self._spec_groups(path):
            if row_group is None:
                rows = None
                c = writable(coerce_column(series, spec), path)
                out = c.values
            else:
                rows = np.flatnonzero(np.isin(row_group, group_ids))
                if not len(rows):
                    continue
                c = writable(coerce_column(series.iloc[rows].reset_index(drop=True), spec), path)
                out[rows] = c.values
            if spec.type is not None:  # an untyped (or, dropped, unknown) field does not decide the kind
                kinds.add(c.kind)
            if c.bad.any():
                pos = np.flatnonzero(c.bad)
                at = pos if rows is None else rows[pos]
                keep = self._uses(at, path)
                pos, at = pos[keep], at[keep]
                self.rejects.row_failures(
                    "coercion",
                    rs.inv_order[at],
                    path,
                    [c.reasons[int(p)] for p in pos],
                    series.iloc[at].tolist(),
                )
        return out[rs.order], kinds.pop() if len(kinds) == 1 else "object"

    def header_column(self, path: str) -> None:
        """A record's one value of a header field, and conflicts between its rows, on integer codes.

        Per record, the largest and smallest canonical code among its non-empty rows: equal means the rows
        agree (the record takes that value), different means a conflict.
        """
        rs = self.records
        col = self.config.fields[path]
        uvals, codes, kind, distinct = self._coerce_codes_sorted(path)
        canon = canonical_codes(uvals, distinct)
        row = np.append(canon, -1)[codes]
        unknown = self._unknown_rows(path)
        if unknown is not None:
            row = np.where(unknown, -1, row)
        rec_codes = np.full(rs.R, -1, dtype=np.int64)
        if rs.n:
            mx = np.maximum.reduceat(row, rs.starts)
            mn = np.minimum.reduceat(np.where(row < 0, np.iinfo(row.dtype).max, row), rs.starts)
            conflict = np.flatnonzero((mx >= 0) & (mn != mx))
            if len(conflict):
                samples = []
                for r in conflict.tolist():
                    seen = list(dict.fromkeys(int(c) for c in codes[rs.starts[r] : rs.ends[r]] if c >= 0))
                    samples.append(" | ".join(str(truncate(uvals[c])) for c in seen[:2]))
                self.rejects.record_failures(
                    "conflicting header values",
                    conflict,
                    path,
                    f"{path}: rows of this record disagree (column {col})",
                    samples,
                )
            valid = canon >= 0
            first_u = np.full(int(canon.max(initial=-1)) + 1, -1, dtype=np.int64)
            first_u[canon[valid][::-1]] = np.flatnonzero(valid)[::-1]
            rec_codes = np.where(mx >= 0, first_u[np.maximum(mx, 0)] if len(first_u) else -1, -1)
        self.out.header_values[path] = with_none(uvals)
        self.out.header_codes[path] = rec_codes
        self.out.header_kind[path] = kind

    def _coerce_codes_sorted(self, path: str) -> tuple[np.ndarray, np.ndarray, str, bool]:
        """(distinct coerced values, code per sorted row (-1 = none), kind); bad rows are rejected here."""
        rs = self.records
        if len(self.plan.groups) > 1 and len(self._spec_groups(path)) > 1:
            vals, kind = self._coerce_sorted(path)
            codes = np.arange(rs.n, dtype=np.intp)
            codes[none_mask(vals)] = -1
            # one value per row: equal values on several rows are not distinct, so let them be factorised
            return vals, codes, kind, False
        col = self.config.fields[path]
        series = rs.work[col]
        spec = self._spec_groups(path)[0][0]
        codes, u = self.codes_of.get(col, spec)
        u = writable(u, path)  # a copy when a value is refused: the cached one also serves the key columns
        if u.bad.any():
            bad_rows = np.flatnonzero((codes >= 0) & np.append(u.bad, False)[codes])
            bad_rows = bad_rows[self._uses(bad_rows, path)]
            self.rejects.row_failures(
                "coercion",
                rs.inv_order[bad_rows],
                path,
                [u.reasons[int(codes[r])] for r in bad_rows.tolist()],
                series.iloc[bad_rows].tolist(),
            )
        valid = np.append(~none_mask(u.values), False)
        codes = np.where(valid[codes], codes, -1)[rs.order]
        return u.values, codes, u.kind, u.distinct

    def _uses(self, rows: np.ndarray, path: str) -> np.ndarray:
        """Which of these (work-order) rows' connections carry ``path``: a value a connection leaves out is
        not refused for it (mask over ``rows``)."""
        groups = self.plan.groups_lacking(path)
        if not groups or not len(rows):
            return np.ones(len(rows), dtype=bool)
        return ~np.isin(self.records.rec_group[self.records.rec_of_row[rows]], groups)

    def _unknown_rows(self, path: str) -> np.ndarray | None:
        """Sorted rows whose connection's schema lacks ``path`` (its value is left out), or None."""
        groups = self.plan.groups_lacking(path)
        if not groups:
            return None
        return np.isin(self.records.rec_group[self.records.rec_sorted], groups)

    def item_column(self, path: str) -> None:
        """An item field's value per sorted row (every row is an item)."""
        uvals, codes, kind, _ = self._coerce_codes_sorted(path)
        unknown = self._unknown_rows(path)
        if unknown is not None:
            codes = np.where(unknown, -1, codes)
        self.out.item_values[path] = with_none(uvals)
        self.out.item_codes[path] = codes
        self.out.item_kind[path] = kind

    def apply_constants(self) -> None:
        """Constants fill the mapped fields a record leaves empty (connection constants first), so the flat
        checks see what the body will hold."""
        cfg = self.config
        rs = self.records
        cols = self.out
        conn_names = self.plan.connections
        for conn in conn_names:
            consts = self.plan.constants(cfg, conn)
            cid = conn_names.index(conn)
            for path, value in consts.items():
                if path in cols.header_values:
                    uv, codes, conn_of = cols.header_values, cols.header_codes, rs.rec_conn_id
                elif path in cols.item_values:
                    uv, codes, conn_of = cols.item_values, cols.item_codes, rs.rec_conn_id[rs.rec_sorted]
                else:
                    continue
                fill = (codes[path] < 0) & (conn_of == cid)
                if fill.any():
                    new = len(uv[path]) - 1
                    uv[path] = with_none(np.append(uv[path][:-1], obj_array([value])))
                    codes[path] = np.where(fill, new, codes[path])
