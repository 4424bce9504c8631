"""SQL source and sink for a sync, over any resource whose ``get_connection()`` yields a DB-API-like connection
(``DuckDBResource`` in the example): the component reads its rows and writes its results back with these.

For another warehouse, or other SQL, give ``TrackstarSync`` your own ``load_rows`` and ``results_sink``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.changes import ChangesProbe, Fingerprint, ProbeRequest, fingerprints_of_groups
from trackstar_dagster.io_manager import PARTITION_COLUMN
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.partition_keys import time_partitions_def
from trackstar_dagster.partitions import UNROUTED, RowsRequest

__all__ = [
    "connection_filter",
    "quote_identifier",
    "sql_changes_probe",
    "sql_results_sink",
    "sql_row_loader",
]


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


def connection_filter(
    mapping: MappingConfig | None, connections: Sequence[str] | None
) -> tuple[str, list[Any]]:
    """A parameterised SQL condition keeping the rows of ``connections`` (``UNROUTED``: rows whose routing value
    names no connection), by the mapping's routing column; ``("", [])`` when there is nothing to filter.

    The column's text is compared trimmed (as the mapping reads it); the exact rule stays the mapping's: the
    payloads step checks every row again (``partitions.load_slice``) and counts any that do not belong."""
    if mapping is None or connections is None or mapping.connection_column is None:
        return "", []
    column = f"trim(CAST({quote_identifier(mapping.connection_column)} AS VARCHAR))"
    wanted = set(connections)
    if mapping.open_routing:  # the column names the connection (matched case-insensitively, as routing may)
        column = f"lower({column})"
        values = sorted({c.lower() for c in wanted if c != UNROUTED})
        every = values  # rows naming another configured connection are loaded, then left out by load_slice
    else:
        values = [v for v, conn in mapping.connection_values.items() if conn in wanted]
        every = list(mapping.connection_values)
    parts: list[str] = []
    params: list[Any] = []
    if values:
        parts.append(f"{column} IN ({', '.join('?' * len(values))})")
        params += values
    if UNROUTED in wanted and not every:
        parts.append("TRUE")  # nothing to tell routed rows by in SQL: load_slice keeps the unrouted ones
    elif UNROUTED in wanted:
        parts.append(
            f"({quote_identifier(mapping.connection_column)} IS NULL OR {column} NOT IN ({', '.join('?' * len(every))}))"
        )
        params += every
    return f"({' OR '.join(parts)})" if parts else "FALSE", params


def sql_row_loader(
    table: str, date_column: str | None, resource_key: str, mapping: MappingConfig | None = None
) -> Callable[[dg.AssetExecutionContext, Any], pd.DataFrame]:
    """A ``load_rows`` reading the rows of ``table`` in the slice's time window (all rows when unpartitioned)
    and, given the sync's ``mapping`` and a slice of some connections (a sync partitioned by connection), only
    the rows its routing column sends to them. Names and dates go in as parameters, never into the SQL text.

    It takes the ``RowsRequest`` (or, called directly, a ``TimeWindow`` or None)."""

    def load(context: dg.AssetExecutionContext, request: RowsRequest | dg.TimeWindow | None) -> pd.DataFrame:
        window, connections = (
            (request.window, request.connections) if isinstance(request, RowsRequest) else (request, None)
        )
        db = getattr(context.resources, resource_key)
        conditions: list[str] = []
        params: list[Any] = []
        if window is not None and date_column:
            conditions.append(f"{quote_identifier(date_column)} >= ? AND {quote_identifier(date_column)} < ?")
            params += [
                pd.Timestamp(window.start).tz_convert("UTC").tz_localize(None).to_pydatetime(),
                pd.Timestamp(window.end).tz_convert("UTC").tz_localize(None).to_pydatetime(),
            ]
        condition, values = connection_filter(mapping, connections)
        if condition:
            conditions.append(condition)
            params += values
        sql = f"SELECT * FROM {quote_identifier(table)}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if date_column:
            sql += f" ORDER BY {quote_identifier(date_column)}"
        with db.get_connection() as conn:
            frame = _fetch_frame(conn, sql, params)
        context.log.debug(f"Read {len(frame)} rows from {table}")
        return frame

    load.takes_rows_request = True  # type: ignore[attr-defined]
    if date_column:  # the changes sensor's default probe: a GROUP BY of the rows this loader reads
        load.changes_probe = sql_changes_probe(table, date_column, resource_key, mapping)  # type: ignore[attr-defined]
    return load


def sql_changes_probe(
    table: str, date_column: str, resource_key: str, mapping: MappingConfig | None = None
) -> ChangesProbe:
    """A changes probe of ``table`` (``ChangesProbe``), the rows ``sql_row_loader`` with the same arguments
    reads: one ``GROUP BY`` over the probed window, per day (per hour when the partitions' timezone is not
    UTC: a day in UTC straddles two of theirs) and routing value, of ``count(*)`` and ``max(updated)``.
    Routing values go to their connection by the mapping's own rule, as the payloads step places rows.

    Uses DuckDB's ``epoch()`` (naive timestamps taken as UTC, as the loader takes them)."""

    def probe(context: dg.SensorEvaluationContext, request: ProbeRequest) -> Mapping[str, Fingerprint]:
        db = getattr(context.resources, resource_key)
        date_col, updated = quote_identifier(date_column), quote_identifier(request.updated_column)
        routing = (mapping or request.mapping).connection_column
        tz = getattr(time_partitions_def(request.partitions_def), "timezone", None)
        seconds = 86400 if tz in (None, "UTC", "Etc/UTC") else 3600
        route = f"trim(CAST({quote_identifier(routing)} AS VARCHAR))" if routing else "NULL"
        sql = (
            f"SELECT CAST(floor(epoch({date_col}) / {seconds}) AS BIGINT) * {seconds} AS bucket, "
            f'{route} AS route, count(*) AS "rows", max({updated}) AS "updated" '
            f"FROM {quote_identifier(table)} WHERE {date_col} >= ? AND {date_col} < ? GROUP BY 1, 2"
        )
        params = [
            pd.Timestamp(t).tz_convert("UTC").tz_localize(None).to_pydatetime()
            for t in (request.window.start, request.window.end)
        ]
        with db.get_connection() as conn:
            groups = _fetch_frame(conn, sql, params)
        groups["bucket"] = pd.to_datetime(groups["bucket"].astype("int64"), unit="s", utc=True)
        return fingerprints_of_groups(groups, request, route="route" if routing else None)

    return probe


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
            if any(isinstance(v, list | dict | tuple) for v in out[col]):  # any dtype, empty too
                out[col] = out[col].map(lambda v: None if v is None else str(v))
        with db.get_connection() as conn:
            conn.register("_trackstar_frame", out)
            # a column with no value yet (no run had an error) is DuckDB's NULL type, which takes no value
            # later: text until a value says otherwise
            types = {
                name: "VARCHAR" if col_type.strip('"') == "NULL" else col_type
                for name, col_type, *_ in conn.execute("DESCRIBE SELECT * FROM _trackstar_frame").fetchall()
            }
            columns = ", ".join(f"{quote_identifier(n)} {t}" for n, t in types.items())
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            # a dry run's columns (would, preview, changes) into a table a real run made: added, never dropped
            have = {r[0]: r[1] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
            for name, col_type in types.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_identifier(name)} {col_type}")
                elif have[name].strip('"') == "NULL":  # made so by an earlier release
                    conn.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_identifier(name)} TYPE {col_type}")
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
