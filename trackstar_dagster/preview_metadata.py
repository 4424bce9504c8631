"""A dry run's preview of changes as Dagster metadata: records read, fields changed per field name, and a
table of the first changes (key, connection, field, held value, new value).

Metadata is kept forever, so values are masked as the payload previews mask them (``mapping.previews``:
names, addresses, emails, phones; postal codes cut to two characters); the results frame keeps them (it is
the user's warehouse).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.mapping.previews import mask_body, mask_value
from trackstar_dagster.metadata import markdown_table
from trackstar_dagster.writer.preview import MISSING, NOT_PREVIEWED, PREVIEWED, READ_FAILED

TABLE_ROWS = 50
_ITEM = re.compile(r"\[[^\]]*\]")


def field_name(path: str) -> str:
    """A change's field whatever the item: ``line_items[sku=A].quantity`` -> ``line_items[].quantity``."""
    return _ITEM.sub("[]", path)


def _shown(field: str, value: Any) -> Any:
    """A held or new value as the table shows it: masked, objects (added or removed items) as JSON."""
    if isinstance(value, dict | list):
        return json.dumps(mask_body(value, field), sort_keys=True, ensure_ascii=False, default=str)
    return mask_value(field, value)


class PreviewTally:
    """The preview columns of results frames (``preview``, ``changes``), added group by group."""

    def __init__(self) -> None:
        self.seen = False
        self.records: Counter[str] = Counter()
        self.fields: Counter[str] = Counter()
        self.without_changes = 0
        self.rows: list[dict[str, Any]] = []

    def add(self, results: pd.DataFrame) -> None:
        if "preview" not in results.columns or not len(results):
            return
        self.seen = True
        status = results["preview"]
        picked = results[status.notna()]
        self.records.update(picked["preview"].astype(str).value_counts().to_dict())
        for key, conn, state, text in zip(
            picked["key"], picked["connection"], picked["preview"], picked["changes"], strict=True
        ):
            if state in (MISSING, READ_FAILED):
                what = "(deleted in Trackstar)" if state == MISSING else "(read failed)"
                self._row(key, conn, what, None, None)
            if state != PREVIEWED or not isinstance(text, str):
                continue
            changes = json.loads(text)
            if not changes:
                self.without_changes += 1
            for change in changes:
                self.fields[field_name(change["field"])] += 1
                self._row(
                    key,
                    conn,
                    change["field"],
                    _shown(change["field"], change["held"]),
                    _shown(change["field"], change["new"]),
                )

    def _row(self, key: Any, conn: Any, field: str, held: Any, new: Any) -> None:
        if len(self.rows) <= TABLE_ROWS:
            self.rows.append({"key": key, "connection": conn, "field": field, "held": held, "new": new})

    def metadata(self) -> dict[str, Any]:
        """Empty unless the results held a preview (a dry run in upsert mode)."""
        if not self.seen:
            return {}
        n = {s: int(self.records.get(s, 0)) for s in (PREVIEWED, MISSING, READ_FAILED, NOT_PREVIEWED)}
        out: dict[str, Any] = {
            "preview_records_read": dg.MetadataValue.int(n[PREVIEWED] + n[MISSING] + n[READ_FAILED]),
            "preview_records_previewed": dg.MetadataValue.int(n[PREVIEWED]),
            "preview_records_without_changes": dg.MetadataValue.int(self.without_changes),
            "preview_records_missing": dg.MetadataValue.int(n[MISSING]),
            "preview_records_read_failed": dg.MetadataValue.int(n[READ_FAILED]),
            "preview_records_not_previewed": dg.MetadataValue.int(n[NOT_PREVIEWED]),
            "preview_fields_changed": dg.MetadataValue.json(dict(self.fields.most_common())),
        }
        if self.rows:
            table = pd.DataFrame(
                self.rows[:TABLE_ROWS], columns=["key", "connection", "field", "held", "new"]
            )
            text = markdown_table(table, max_rows=TABLE_ROWS)
            if len(self.rows) > TABLE_ROWS:
                text += "\n\n_more changes in the results' `changes` column_"
            out["preview_changes"] = dg.MetadataValue.md(text)
        if n[NOT_PREVIEWED]:
            out["preview_note"] = dg.MetadataValue.text(
                f"{n[NOT_PREVIEWED]} changed records not previewed: over the run's preview_limit "
                "(each read costs 0.1 s of its token's 10 reads/s); raise WriteConfig.preview_limit to see them"
            )
        return out
