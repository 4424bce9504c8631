"""What the UI shows for a frame: its row count, its column schema (names, types, descriptions), markdown tables."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from trackstar_dagster.metadata import frame_metadata, markdown_table, table_schema_for


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": pd.array(["A-1", "A-2", "A-3"], dtype="string"),
            "attempts": [1, 2, 1],
            "latency_s": [0.1, 0.25, None],
            "dry_run": [False, True, False],
            "finished_at": pd.to_datetime(["2026-11-20", "2026-11-21", "2026-11-22"], utc=True),
            "source_rows": [[0, 1], [2], [3]],
        }
    )


def test_row_count_and_column_schema():
    meta = frame_metadata(frame(), descriptions={"key": "the record's key"})
    assert meta["dagster/row_count"].value == 3
    schema = meta["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    types = {c.name: c.type for c in schema.columns}
    assert types == {
        "key": "string",
        "attempts": "integer",
        "latency_s": "number",
        "dry_run": "boolean",
        "finished_at": "datetime",
        "source_rows": "object",
    }
    assert [c.description for c in schema.columns][:2] == ["the record's key", None]


def test_an_empty_frame_keeps_its_schema():
    meta = frame_metadata(frame().iloc[0:0])
    assert meta["dagster/row_count"].value == 0
    assert [c.name for c in meta["dagster/column_schema"].columns] == list(frame().columns)
    assert table_schema_for(pd.DataFrame()).columns == []


def test_markdown_preview_values_rows_and_cut():
    text = markdown_table(
        pd.DataFrame({"key": ["A-1", "A-2", "A-3"], "status": ["created", "failed", "x" * 300]}),
        max_rows=2,
        width=20,
    )
    lines = text.splitlines()
    assert lines[0] == "| key | status |" and lines[1] == "|---|---|"
    assert lines[2] == "| A-1 | created |" and lines[3] == "| A-2 | failed |"
    assert "x" * 300 not in text  # cells are cut at width
    assert "_1 more rows_" in text
    assert markdown_table(pd.DataFrame()) == "_(empty)_"
