"""Dagster metadata from plain frames: row counts, column schemas, markdown tables the UI renders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.mapping.previews import markdown_table

__all__ = ["frame_metadata", "markdown_table", "table_schema_for"]

_TYPE_NAMES = {
    "b": "boolean",
    "i": "integer",
    "u": "integer",
    "f": "number",
    "M": "datetime",
    "m": "timedelta",
}


def _type_name(column: pd.Series) -> str:
    dtype = column.dtype
    kind = getattr(dtype, "kind", "O")
    if kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind]
    if kind == "O":  # an object column is a string column only when its values are strings
        return "string" if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty") else "object"
    return "string" if pd.api.types.is_string_dtype(dtype) else "object"


def table_schema_for(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """A ``TableSchema`` from a frame's columns and dtypes (lists and dicts show as ``object``)."""
    descriptions = descriptions or {}
    columns = [
        dg.TableColumn(str(name), _type_name(frame.iloc[:, i]), description=descriptions.get(str(name)))
        for i, name in enumerate(frame.columns)
    ]
    return dg.TableSchema(columns=columns)


def frame_metadata(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The standard keys: row count and column schema."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": table_schema_for(frame, descriptions),
    }
