"""SQL source and sink for a sync, over any resource whose ``get_connection()`` yields a DB-API-like connection
(``DuckDBResource`` in the example): the component reads its rows and writes its results back with these.

For another warehouse, or other SQL, give ``TrackstarSync`` your own ``load_rows`` and ``results_sink``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.io_manager import PARTITION_COLUMN

__all__ = ["quote_identifier", "sql_results_sink", "sql_row_loader"]


def _fetch_frame(conn: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    """The query's rows as a frame: DuckDB's own ``df()`` when there, else ``fetchall`` and the description."""
    result = conn.execute(sql, params)
    for attr in ("df", "fetchdf", "fetch_df"):
        if hasattr(result, attr):
            return getattr(result, attr)()
    return pd.DataFrame(result.fetchall(), columns=[d[0] for d in result.description])


def quote_identifier(identifier: str) -> str:
    """``schema.table`` as ``"schema"."table"`` (names come from YAML: never pasted into SQL unquoted)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


def sql_row_loader(
    table: str, date_column: str | None, resource_key: str
) -> Callable[[dg.AssetExecutionContext, dg.TimeWindow | None], pd.DataFrame]:
    """A ``load_rows`` reading the rows of ``table`` in the run's time window (all rows when unpartitioned)."""

    def load(context: dg.AssetExecutionContext, window: dg.TimeWindow | None) -> pd.DataFrame:
        db = getattr(context.resources, resource_key)
        sql = f"SELECT * FROM {quote_identifier(table)}"
        params: list[Any] = []
        if window is not None and date_column:
            sql += f" WHERE {quote_identifier(date_column)} >= ? AND {quote_identifier(date_column)} < ?"
            params = [
                pd.Timestamp(window.start).tz_convert("UTC").tz_localize(None).to_pydatetime(),
                pd.Timestamp(window.end).tz_convert("UTC").tz_localize(None).to_pydatetime(),
            ]
        if date_column:
            sql += f" ORDER BY {quote_identifier(date_column)}"
        with db.get_connection() as conn:
            frame = _fetch_frame(conn, sql, params)
        context.log.info(f"Read {len(frame)} rows from {table}")
        return frame

    return load


def sql_results_sink(
    prefix: str, resource_key: str
) -> Callable[[dg.AssetExecutionContext, str, pd.DataFrame], None]:
    """A ``results_sink`` writing results and rejects back as ``<prefix>_<kind>`` tables users can join
    (replacing the run's partitions, so a re-run leaves one row per record).

    Uses DuckDB's ``register`` and ``INSERT ... BY NAME``.
    """

    cleared: set[tuple[str, str, int]] = set()  # a step sends its frames in chunks: clear once per attempt

    def sink(context: dg.AssetExecutionContext, kind: str, frame: pd.DataFrame) -> None:
        db = getattr(context.resources, resource_key)
        table = quote_identifier(f"{prefix}_{kind}")
        out = frame.copy()
        for col in out.columns:
            if out[col].map(lambda v: isinstance(v, list | dict | tuple)).any():
                out[col] = out[col].map(lambda v: None if v is None else str(v))
        with db.get_connection() as conn:
            conn.register("_trackstar_frame", out)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _trackstar_frame LIMIT 0")
            partitioned = PARTITION_COLUMN in out.columns
            attempt = (context.run_id, kind, int(getattr(context, "retry_number", 0) or 0))
            first = attempt not in cleared
            cleared.add(attempt)
            if not first:
                pass  # an earlier chunk of this step cleared the run's partitions
            elif partitioned and (context.has_partition_key or context.has_partition_key_range):
                keys = list(context.partition_keys)
                conn.execute(
                    f"DELETE FROM {table} WHERE {PARTITION_COLUMN} IN ({','.join('?' * len(keys))})", keys
                )
            elif not partitioned:
                conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _trackstar_frame")
            conn.unregister("_trackstar_frame")
        context.log.info(f"Wrote {len(out)} rows to {prefix}_{kind}")

    return sink
