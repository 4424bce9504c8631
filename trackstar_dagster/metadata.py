"""Dagster metadata from plain frames: row counts, column schemas, markdown tables the UI renders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

_TYPE_NAMES = {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "M": "datetime", "m": "timedelta"}


def table_schema_for(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """A ``TableSchema`` from a frame's columns and dtypes (lists and dicts show as ``object``)."""
    descriptions = descriptions or {}
    columns = []
    for name, dtype in frame.dtypes.items():
        kind = getattr(dtype, "kind", "O")
        type_name = _TYPE_NAMES.get(kind, "string" if pd.api.types.is_string_dtype(dtype) else "object")
        columns.append(dg.TableColumn(str(name), type_name, description=descriptions.get(str(name))))
    return dg.TableSchema(columns=columns)


def _cell(value: Any, width: int) -> str:
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(frame: pd.DataFrame, *, max_rows: int = 20, width: int = 60) -> str:
    """A markdown table of the first ``max_rows`` rows (the UI renders it; metadata is kept forever, keep it small)."""
    if frame.empty:
        return "_(empty)_"
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, width) for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)


def frame_metadata(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The standard keys: row count and column schema."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": table_schema_for(frame, descriptions),
    }
