"""``TrackstarSyncComponent``: one sync from a ``defs.yaml``, no Python.

It only wires Dagster: the resource (secrets by environment variable name, turned into ``EnvVar``s, never a
resolved value), the schema assets, the sync's assets, its job and daily schedule. Rows are read with SQL
through a database resource (``DuckDBResource`` in the example; any resource whose ``get_connection()``
yields a DB-API connection works).
"""


from datetime import date
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from trackstar_dagster.assets import build_trackstar_schema_assets
from trackstar_dagster.client import PRODUCTION_URL
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.resource import TrackstarConnection, TrackstarResource
from trackstar_dagster.sync import TrackstarSync, build_trackstar_sync_assets, trackstar_io_manager_resources


class ConnectionModel(dg.Model, dg.Resolvable):
    """A Trackstar connection: its access token is read from the environment variable named here. Give its
    ``integration_name``, or its ``connection_id`` to look the integration up with the API key."""

    name: str
    access_token_env: str = Field(description="Name of the environment variable holding the access token.")
    integration_type: str = "wms"
    integration_name: str | None = None
    connection_id: str | None = Field(default=None, description="Looked up when integration_name is not given.")


class SourceModel(dg.Model, dg.Resolvable):
    """The warehouse table rows come from, read through a database resource."""

    table: str
    date_column: str | None = None
    resource_key: str = "duckdb"
    asset_key: str | None = Field(default=None, description="Upstream asset key (slash-separated); default the table.")


class PartitionsModel(dg.Model, dg.Resolvable):
    """Daily partitions by the source's date column, and a daily schedule for the latest one."""

    start_date: str
    end_offset: int = 0
    schedule: bool = Field(default=True, description="A daily schedule that runs the latest partition.")
    hour_of_day: int = 3
    minute_of_hour: int = 0
    single_run_backfill: bool = Field(default=True, description="A backfill of many days runs as one run.")


class TrackstarSyncComponent(dg.Component, dg.Model, dg.Resolvable):
    """Pushes rows of a warehouse table into Trackstar as Base Schema records (orders by default).

    Example ``defs.yaml``::

        type: trackstar_dagster.TrackstarSyncComponent
        attributes:
          name: orders_sync
          api_key_env: TRACKSTAR_API_KEY
          base_url: http://127.0.0.1:8787
          connections:
            - {name: acme_wms, access_token_env: ACME_TOKEN, integration_name: wms_sandbox}
          source: {table: order_lines, date_column: order_date}
          mapping_file: mapping.yaml
          partitions: {start_date: "2024-11-25"}
          write_from: "2026-11-01"
    """

    name: str
    api_key_env: str = Field(default="TRACKSTAR_API_KEY", description="Environment variable with the org API key.")
    base_url: str = PRODUCTION_URL
    base_url_env: str | None = Field(default=None, description="Environment variable overriding base_url when set.")
    connections: list[ConnectionModel] = Field(default_factory=list)
    lookup_integration_by_token: bool = Field(
        default=False,
        description="Look up a connection's integration by its token (the token goes in a URL; not recommended).",
    )
    source: SourceModel
    mapping: dict[str, Any] | None = Field(default=None, description="Inline mapping config (see MappingConfig).")
    mapping_file: str | None = Field(default=None, description="Mapping YAML, relative to this defs.yaml.")
    partitions: PartitionsModel | None = None
    write_from: str | None = None
    mode: Literal["create_only", "upsert"] = "create_only"
    dry_run: bool = False
    max_reject_share: float = 0.1
    max_failed_share: float = 0.0
    pool: str | None = None
    integration_types: list[str] = Field(default_factory=lambda: ["wms"])
    include_schema_assets: bool = True
    results_table_prefix: str | None = Field(default=None, description="Write results and rejects back as tables.")

    def load_mapping(self, context: dg.ComponentLoadContext) -> MappingConfig:
        if self.mapping is not None:
            return MappingConfig.model_validate(self.mapping)
        if self.mapping_file:
            return MappingConfig.from_yaml(Path(context.path) / self.mapping_file)
        raise dg.DagsterInvalidDefinitionError(f"{self.name}: give `mapping` or `mapping_file`")

    def trackstar_resource(self) -> TrackstarResource:
        import os

        base_url = os.environ.get(self.base_url_env, self.base_url) if self.base_url_env else self.base_url
        return TrackstarResource(
            api_key=dg.EnvVar(self.api_key_env),
            base_url=base_url,
            connections=[
                TrackstarConnection(
                    name=c.name,
                    access_token=dg.EnvVar(c.access_token_env),
                    integration_type=c.integration_type,
                    integration_name=c.integration_name,
                    connection_id=c.connection_id,
                )
                for c in self.connections
            ],
            lookup_integration_by_token=self.lookup_integration_by_token,
        )

    def build_sync(self, context: dg.ComponentLoadContext) -> TrackstarSync:
        src = self.source
        partitions_def = (
            dg.DailyPartitionsDefinition(start_date=self.partitions.start_date, end_offset=self.partitions.end_offset)
            if self.partitions
            else None
        )
        return TrackstarSync(
            name=self.name,
            mapping=self.load_mapping(context),
            load_rows=sql_row_loader(src.table, src.date_column, src.resource_key),
            source_key=dg.AssetKey(src.asset_key.split("/") if src.asset_key else [src.table]),
            date_column=src.date_column,
            partitions_def=partitions_def,
            backfill_policy=(
                None if not self.partitions or self.partitions.single_run_backfill else dg.BackfillPolicy.multi_run(1)
            ),
            write_from=date.fromisoformat(self.write_from) if self.write_from else None,
            mode=self.mode,
            dry_run=self.dry_run,
            max_reject_share=self.max_reject_share,
            max_failed_share=self.max_failed_share,
            pool=self.pool,
            results_sink=sql_results_sink(self.results_table_prefix, src.resource_key) if self.results_table_prefix else None,
            extra_resource_keys=frozenset({src.resource_key}),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        sync = self.build_sync(context)
        assets: list[Any] = build_trackstar_sync_assets(sync)
        if self.include_schema_assets:
            assets = [*build_trackstar_schema_assets(integration_types=self.integration_types), *assets]
        job = dg.define_asset_job(
            f"{self.name}_job",
            selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
            partitions_def=sync.partitions_def,
        )
        schedules = []
        if self.partitions and self.partitions.schedule:
            schedules.append(
                dg.build_schedule_from_partitioned_job(
                    job,
                    name=f"{self.name}_schedule",
                    hour_of_day=self.partitions.hour_of_day,
                    minute_of_hour=self.partitions.minute_of_hour,
                )
            )
        return dg.Definitions(
            assets=assets,
            jobs=[job],
            schedules=schedules,
            resources={"trackstar": self.trackstar_resource(), **trackstar_io_manager_resources()},
        )


# ---------------------------------------------------------------------------------------------------------
# SQL source and sink over any resource with get_connection() (DuckDB, or DB-API connections)


def _fetch_frame(conn: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    result = conn.execute(sql, params)
    for attr in ("df", "fetchdf", "fetch_df"):
        if hasattr(result, attr):
            return getattr(result, attr)()
    return pd.DataFrame(result.fetchall(), columns=[d[0] for d in result.description])


def _quote(identifier: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


def sql_row_loader(table: str, date_column: str | None, resource_key: str):
    """Rows of ``table`` in the run's time window (all rows when unpartitioned)."""

    def load(context: dg.AssetExecutionContext, window: dg.TimeWindow | None) -> pd.DataFrame:
        db = getattr(context.resources, resource_key)
        sql = f"SELECT * FROM {_quote(table)}"
        params: list[Any] = []
        if window is not None and date_column:
            sql += f" WHERE {_quote(date_column)} >= ? AND {_quote(date_column)} < ?"
            params = [pd.Timestamp(window.start).tz_convert("UTC").tz_localize(None).to_pydatetime(),
                      pd.Timestamp(window.end).tz_convert("UTC").tz_localize(None).to_pydatetime()]
        if date_column:
            sql += f" ORDER BY {_quote(date_column)}"
        with db.get_connection() as conn:
            frame = _fetch_frame(conn, sql, params)
        context.log.info(f"Read {len(frame)} rows from {table}")
        return frame

    return load


def sql_results_sink(prefix: str, resource_key: str):
    """Write results and rejects back as ``<prefix>_<kind>`` tables users can join (replacing the run's partitions).

    Uses DuckDB's ``register`` and ``INSERT ... BY NAME``; for another warehouse, give ``TrackstarSync`` your own
    ``results_sink``.
    """

    def sink(context: dg.AssetExecutionContext, kind: str, frame: pd.DataFrame) -> None:
        db = getattr(context.resources, resource_key)
        table = _quote(f"{prefix}_{kind}")
        out = frame.copy()
        for col in out.columns:
            if out[col].map(lambda v: isinstance(v, list | dict | tuple)).any():
                out[col] = out[col].map(lambda v: None if v is None else str(v))
        with db.get_connection() as conn:
            conn.register("_trackstar_frame", out)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _trackstar_frame LIMIT 0")
            if "partition" in out.columns and (context.has_partition_key or context.has_partition_key_range):
                keys = list(context.partition_keys)
                conn.execute(f"DELETE FROM {table} WHERE partition IN ({','.join('?' * len(keys))})", keys)
            elif "partition" not in out.columns:
                conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _trackstar_frame")
            conn.unregister("_trackstar_frame")
        context.log.info(f"Wrote {len(out)} rows to {prefix}_{kind}")

    return sink
