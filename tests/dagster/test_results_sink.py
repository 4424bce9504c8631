"""The SQL results sink over a real DuckDB file: a table's columns follow what the runs write."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from trackstar_dagster.sql import sql_results_sink


def _write(path: str, frame: pd.DataFrame) -> None:
    sink = sql_results_sink("t", "duckdb")  # a new run: a sink per step, as the sync makes it
    with dg.build_asset_context(resources={"duckdb": DuckDBResource(database=path)}) as context:
        sink(context, "write_results", frame)


def test_a_first_run_without_errors_leaves_a_table_that_takes_the_next_runs_errors(tmp_path):
    """The first run wrote no error (an all-empty column): DuckDB typed it NULL, which takes no value, and
    the next run's first error failed the write step (``Conversion Error ... VARCHAR -> "NULL"``)."""
    path = str(tmp_path / "w.duckdb")
    _write(path, pd.DataFrame({"key": ["a", "b"], "status": ["created"] * 2, "error": [None, None]}))
    _write(path, pd.DataFrame({"key": ["c"], "status": ["rejected"], "error": ["422: city is required"]}))
    con = duckdb.connect(path, read_only=True)
    rows = con.execute("SELECT key, error FROM t_write_results ORDER BY key").fetchall()
    kinds = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns").fetchall())
    con.close()
    assert rows == [("c", "422: city is required")]  # an unpartitioned table: the last run's rows
    assert kinds["error"] == "VARCHAR"


def test_a_table_an_earlier_release_made_with_a_null_column_is_mended(tmp_path):
    path = str(tmp_path / "w.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE t_write_results AS SELECT 'a' AS key, NULL AS error")
    con.close()
    _write(path, pd.DataFrame({"key": ["c"], "error": ["timed out"]}))
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT key, error FROM t_write_results").fetchall() == [("c", "timed out")]
    con.close()


def test_an_empty_frame_of_text_columns_is_written(tmp_path):
    """No rejects: an empty frame whose columns are pandas' string dtype (``.any()`` refused to reduce it)."""
    path = str(tmp_path / "w.duckdb")
    _write(
        path, pd.DataFrame({"key": pd.Series([], dtype="string"), "reason": pd.Series([], dtype="string")})
    )
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM t_write_results").fetchone() == (0,)
    con.close()
