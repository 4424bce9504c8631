"""A status sink over a DuckDB-style resource: the orders read back, upserted into one table by
(connection, trackstar_id), so reading an order again (an overlap, a re-run) replaces its row.

For another warehouse, give ``StatusReadBack(sink=...)`` your own ``sink(context, frame)``.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pandas as pd

from trackstar_dagster.sql import quote_identifier

__all__ = ["STATUS_TABLE_DDL", "sql_statuses_sink"]

#: the table's columns (created when missing); the primary key is what a re-read replaces
STATUS_TABLE_DDL = """(
    connection VARCHAR NOT NULL,
    key VARCHAR,
    order_number VARCHAR,
    trackstar_id VARCHAR NOT NULL,
    status VARCHAR,
    raw_status VARCHAR,
    shipments BIGINT,
    tracking_numbers VARCHAR,
    trackstar_updated_date TIMESTAMPTZ,
    read_at TIMESTAMPTZ,
    PRIMARY KEY (connection, trackstar_id)
)"""


def sql_statuses_sink(
    table: str, resource_key: str
) -> Callable[[dg.AssetExecutionContext, pd.DataFrame], None]:
    """A ``StatusReadBack.sink`` upserting the rows into ``table`` in one transaction (DuckDB's ``register``
    and ``INSERT ... BY NAME``): a row's old version is deleted, then the new one inserted."""
    name = quote_identifier(table)

    def sink(context: dg.AssetExecutionContext, frame: pd.DataFrame) -> None:
        db = getattr(context.resources, resource_key)
        with db.get_connection() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} {STATUS_TABLE_DDL}")
            if frame.empty:
                return
            conn.register("_trackstar_statuses", frame)
            try:
                conn.execute("BEGIN TRANSACTION")
                conn.execute(
                    f"DELETE FROM {name} AS t WHERE EXISTS (SELECT 1 FROM _trackstar_statuses AS f "
                    "WHERE f.connection = t.connection AND f.trackstar_id = t.trackstar_id)"
                )
                conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _trackstar_statuses")
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.unregister("_trackstar_statuses")
        context.log.info(f"Upserted {len(frame)} order statuses into {table}")

    return sink
