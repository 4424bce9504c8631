"""Dagster metadata from plain frames: row counts, column schemas, markdown tables the UI renders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.mapping.previews import markdown_table

__all__ = ["frame_metadata", "markdown_table", "table_schema_for"]

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


def frame_metadata(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The standard keys: row count and column schema."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": table_schema_for(frame, descriptions),
    }
