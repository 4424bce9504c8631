"""Layer (a) of one build: pandera on typed flat frames made from the coded columns, per schema group.

Why a module of its own: it turns the ``Columns`` back into frames (one row per record for header fields,
one per item row), runs the Base Schema model and each integration's schema (``validation``), and maps the
failure cases back to records and to the source cells they came from, refusing through ``Rejects``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trackstar_dagster.base.nulls import is_null_like
from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.cells import is_missing, none_mask
from trackstar_dagster.mapping.columns import Columns
from trackstar_dagster.mapping.config import MappingConfig
from trackstar_dagster.mapping.fieldspec import typed_series
from trackstar_dagster.mapping.plan import Plan
from trackstar_dagster.mapping.records import Records
from trackstar_dagster.mapping.rejects import Rejects, failure_frame


def check_rows(
    config: MappingConfig, plan: Plan, records: Records, columns: Columns, rejects: Rejects
) -> None:
    """Layer (a): the static Base Schema model and each integration's schema, on typed flat frames."""
    rs, cols = records, columns
    header_paths, item_paths = plan.header_paths, plan.item_paths
    multi = len(plan.groups) > 1
    for gi, g in enumerate(plan.groups):
        recs = np.flatnonzero((rs.rec_group == gi) & ~none_mask(rs.rec_key))
        if not len(recs):
            continue
        dyn_head = v.integration_schema({p: g.specs[p] for p in header_paths}, g.integration_name)
        dyn_item = v.integration_schema({p: g.specs[p] for p in item_paths}, g.integration_name)
        need_head = [p for p in header_paths if p in v.BASE_COLUMNS or p in dyn_head.columns]
        need_item = [p for p in item_paths if p in v.BASE_COLUMNS or p in dyn_item.columns]
        head = {"key": typed_series(rs.rec_key[recs], "string")}
        for p in need_head:
            head[p] = typed_series(cols.header_values[p][cols.header_codes[p][recs]], cols.header_kind[p])
        hframe = pd.DataFrame(head)
        hframe.index = recs
        rows = np.flatnonzero(np.isin(rs.rec_sorted, recs)) if multi else np.arange(rs.n)
        if item_paths:
            any_item = np.zeros(len(rows), dtype=bool)
            for p in item_paths:
                any_item |= cols.item_codes[p][rows] >= 0
            if not any_item.all():
                rows = rows[any_item]
                multi = True
        item = {
            p: typed_series(
                cols.item_values[p][cols.item_codes[p][rows] if multi else cols.item_codes[p]],
                cols.item_kind[p],
            )
            for p in need_item
        }
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
                _refuse(config, records, rejects, check, fc, level, g.integration_name, recs)


def _refuse(
    config: MappingConfig,
    records: Records,
    rejects: Rejects,
    check: str,
    fc: pd.DataFrame,
    level: str,
    integration: str,
    recs: np.ndarray,
) -> None:
    """Pandera failure cases -> rejects (one per record, field and reason) and check failure rows."""
    rs = records
    checks = fc["check"].astype(str).tolist()
    fields = [str(c) for c in fc["column"].tolist()]
    reason_of = {
        pair: v.check_reason(pair[0], pair[1], integration) for pair in set(zip(checks, fields, strict=True))
    }
    reasons = [reason_of[pair] for pair in zip(checks, fields, strict=True)]
    whole = pd.isna(fc["index"]).to_numpy(dtype=bool)
    pos = np.where(whole, 0, pd.to_numeric(fc["index"], errors="coerce").fillna(0).to_numpy()).astype(
        np.int64
    )
    cases = source_values(config, records, fields, pos, whole, level, fc["failure_case"].tolist())
    recs_of = pos if level == "record" else rs.rec_sorted[pos]
    src_index = rs.src_sorted[rs.starts[pos]] if level == "record" else rs.src_sorted[pos]
    for i, (rec, fld, why, case, w) in enumerate(
        zip(recs_of.tolist(), fields, reasons, cases, whole.tolist(), strict=True)
    ):
        if w:  # a frame-level failure (e.g. a wrong column type): every record of the frame fails
            for r in recs.tolist():
                rejects.reject(r, fld, why, None)
            src_index[i] = -1
        elif (rec, fld) not in rejects.coerced:  # else refused already, with a better reason
            rejects.reject(rec, fld, why, case)
    rejects.add_failures(check, failure_frame(reasons, fields, cases, src_index))


def source_values(
    config: MappingConfig,
    records: Records,
    fields: list[str],
    pos: np.ndarray,
    whole: np.ndarray,
    level: str,
    checked: list[Any],
) -> list[Any]:
    """The source cell behind each pandera failure, so a reject shows what the row held (``"NULL"``,
    ``" 0 "``), not the cleaned value (None, 0): an item's own cell; for a header field, the first
    non-missing cell among the record's rows. The checked value stays where every cell is empty, where
    a constant filled a null-like cell (the constant is what failed) and for frame-level failures.

    ``pos``: per failure, a record (``level == "record"``) or a sorted row (``"row"``).
    """
    rs = records
    out = list(checked)
    by_field: dict[str, list[int]] = {}
    for i, (fld, w) in enumerate(zip(fields, whole.tolist(), strict=True)):
        if not w and fld in config.fields:
            by_field.setdefault(fld, []).append(i)
    for fld, idx in by_field.items():
        series = rs.work[config.fields[fld]]
        at = pos[idx]
        if level == "row":
            starts, lens = at, np.ones(len(at), dtype=np.int64)
        else:
            starts, lens = rs.starts[at], rs.ends[at] - rs.starts[at]
        # every sorted row of the failures, in one gather: range k covers starts[k] .. starts[k] + lens[k]
        ends = np.cumsum(lens)
        sorted_rows = np.repeat(starts - (ends - lens), lens) + np.arange(int(ends[-1]) if len(ends) else 0)
        cells = series.iloc[rs.order[sorted_rows]].tolist()
        if len(cells) == len(idx):  # one cell per failure (items, one-row records)
            firsts = cells
        else:
            firsts = [
                next((c for c in cells[s:e] if not is_missing(c)), None)
                for s, e in zip((ends - lens).tolist(), ends.tolist(), strict=True)
            ]
        for i, cell in zip(idx, firsts, strict=True):
            if not is_missing(cell) and (is_missing(out[i]) or not is_null_like(cell)):
                out[i] = cell
    return out
