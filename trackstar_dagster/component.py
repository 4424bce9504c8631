"""``TrackstarSyncComponent``: one sync from a ``defs.yaml``, no Python.

It only assembles: the resource (secrets by environment variable name, turned into ``EnvVar``s, never a
resolved value), the schema assets, and the sync's definitions (``build_trackstar_sync_definitions``: assets,
checks, job, daily schedule, IO manager), reading rows and writing results back with ``trackstar_dagster.sql``
through a database resource (``DuckDBResource`` in the example). ``translation`` reshapes every asset it makes.
"""

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from dagster.components.utils.translation import ResolvedTranslationFn
from pydantic import Field

from trackstar_dagster.assets import build_trackstar_schema_assets
from trackstar_dagster.changes import ChangesSensorModel
from trackstar_dagster.client import PRODUCTION_URL
from trackstar_dagster.component_statuses import StatusesModel
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.resource import TrackstarConnection, TrackstarResource
from trackstar_dagster.sql import sql_results_sink, sql_row_loader
from trackstar_dagster.sync import TrackstarSync, build_trackstar_sync_definitions
from trackstar_dagster.sync.partitioning import TrackstarPartitions, trackstar_partitions
from trackstar_dagster.translator import TrackstarAssetData, TrackstarTranslator


class ConnectionModel(dg.Model, dg.Resolvable):
    """A Trackstar connection: its access token is read from the environment variable named here. Give its
    ``integration_name``, or its ``connection_id`` to look the integration up with the API key."""

    name: str
    access_token_env: str = Field(description="Name of the environment variable holding the access token.")
    integration_type: str = "wms"
    integration_name: str | None = None
    connection_id: str | None = Field(
        default=None, description="Looked up when integration_name is not given."
    )


class ConnectionsFromModel(dg.Model, dg.Resolvable):
    """Connections declared in bulk, read at run time (only these names go in Dagster's config): see
    ``trackstar_dagster.connections`` for each source's format."""

    env_prefix: str | None = Field(
        default=None,
        description="<prefix><NAME>_TOKEN with <prefix><NAME>_INTEGRATION or <prefix><NAME>_CONNECTION_ID.",
    )
    file: str | None = Field(default=None, description="A YAML or JSON file listing connections (mode 600).")
    function: str | None = Field(
        default=None, description="'package.module:function' returning (name, integration, token) items."
    )


class SourceModel(dg.Model, dg.Resolvable):
    """The warehouse table rows come from, read through a database resource."""

    table: str
    date_column: str | None = None
    resource_key: str = "duckdb"
    asset_key: str | None = Field(
        default=None, description="Upstream asset key (slash-separated); default the table."
    )


class PartitionsModel(dg.Model, dg.Resolvable):
    """Partitions by the source's date column (a day, week or month each), optionally x connection, and a
    schedule for the latest one (one run per connection when ``by_connection``)."""

    start_date: str
    grain: Literal["day", "week", "month"] = Field(default="day", description="Each time partition's span.")
    by_connection: bool = Field(
        default=False,
        description="Partition by time x connection: each customer's status in the UI, backfills of one "
        "customer. The connection dimension is dynamic (a sensor adds new connections) unless "
        "`connection_names` lists them.",
    )
    connection_names: list[str] | None = Field(
        default=None, description="A static connection dimension with these names (default: dynamic)."
    )
    end_offset: int = 0
    schedule: bool = Field(default=True, description="A schedule that runs the latest partition.")
    hour_of_day: int = 3
    minute_of_hour: int = 0
    single_run_backfill: bool = Field(
        default=True,
        description="A backfill of many partitions runs as one run (by_connection: Dagster makes one run per "
        "connection when a backfill spans more days than connections).",
    )

    def spec(self) -> TrackstarPartitions:
        return trackstar_partitions(
            self.start_date,
            self.grain,
            by_connection=self.by_connection,
            connections=self.connection_names,
            end_offset=self.end_offset,
        )


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
          translation:                     # optional: every asset it makes, as an AssetSpec update
            group_name: trackstar_orders
            tags: {team: fulfilment}
            key_prefix: ops                # ops/orders_sync/payloads, ops/trackstar/write_info, ...
          read_back_statuses:              # optional: orders_sync/order_statuses -> this table
            table: order_statuses

    In ``translation``, ``{{ data.kind }}`` (catalog, write_info, payloads, rejects, write_results),
    ``{{ data.sync_name }}``, ``{{ data.key }}``... describe the asset (``TrackstarAssetData``); override
    ``get_asset_spec`` in a subclass for more.
    """

    name: str
    api_key_env: str = Field(
        default="TRACKSTAR_API_KEY", description="Environment variable with the org API key."
    )
    base_url: str = PRODUCTION_URL
    base_url_env: str | None = Field(
        default=None, description="Environment variable overriding base_url when set."
    )
    connections: list[ConnectionModel] = Field(default_factory=list)
    connections_from: ConnectionsFromModel | None = Field(
        default=None, description="Connections by env prefix, file or function, beside `connections`."
    )
    lookup_integration_by_token: bool = Field(
        default=False,
        description="Look up a connection's integration by its token (the token goes in a URL; not recommended).",
    )
    source: SourceModel
    mapping: dict[str, Any] | None = Field(
        default=None, description="Inline mapping config (see MappingConfig)."
    )
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
    results_table_prefix: str | None = Field(
        default=None, description="Write results and rejects back as tables."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="On the sync's assets and its job's runs.")
    translation: ResolvedTranslationFn[TrackstarAssetData] = Field(
        default=None,
        description="An AssetSpec update for every asset (templates see `data`: TrackstarAssetData).",
    )
    read_back_statuses: StatusesModel | None = Field(
        default=None, description="Read the sync's orders back (status, tracking numbers) into a table."
    )
    changes_sensor: ChangesSensorModel | None = Field(
        default=None, description="Late and changed rows: a sensor runs the partitions whose rows changed."
    )

    def get_asset_spec(self, data: TrackstarAssetData) -> dg.AssetSpec:
        """The spec of one asset: the default translator's, then ``translation``. Override in a subclass."""
        spec = TrackstarTranslator().get_asset_spec(data)
        return self.translation(spec, data) if self.translation else spec

    @property
    def translator(self) -> TrackstarTranslator:
        """A translator that asks this component (its ``get_asset_spec``)."""
        return _ComponentTranslator(self)

    def load_mapping(self, context: dg.ComponentLoadContext) -> MappingConfig:
        if self.mapping is not None:
            return MappingConfig.model_validate(self.mapping)
        if self.mapping_file:
            return MappingConfig.from_yaml(Path(context.path) / self.mapping_file)
        raise dg.DagsterInvalidDefinitionError(f"{self.name}: give `mapping` or `mapping_file`")

    def trackstar_resource(self) -> TrackstarResource:
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
            connections_from_env=self.connections_from.env_prefix if self.connections_from else None,
            connections_file=self.connections_from.file if self.connections_from else None,
            connections_function=self.connections_from.function if self.connections_from else None,
            lookup_integration_by_token=self.lookup_integration_by_token,
        )

    def build_sync(
        self, context: dg.ComponentLoadContext, write_info_key: dg.AssetKey | None = None
    ) -> TrackstarSync:
        src = self.source
        mapping = self.load_mapping(context)
        return TrackstarSync(
            name=self.name,
            mapping=mapping,
            load_rows=sql_row_loader(src.table, src.date_column, src.resource_key, mapping),
            source_key=dg.AssetKey(src.asset_key.split("/") if src.asset_key else [src.table]),
            date_column=src.date_column,
            partitions=self.partitions.spec() if self.partitions else None,
            backfill_policy=(
                None
                if not self.partitions or self.partitions.single_run_backfill
                else dg.BackfillPolicy.multi_run(1)
            ),
            write_from=date.fromisoformat(self.write_from) if self.write_from else None,
            mode=self.mode,
            dry_run=self.dry_run,
            max_reject_share=self.max_reject_share,
            max_failed_share=self.max_failed_share,
            pool=self.pool,
            results_sink=sql_results_sink(self.results_table_prefix, src.resource_key)
            if self.results_table_prefix
            else None,
            extra_resource_keys=frozenset({src.resource_key}),
            write_info_key=write_info_key,
            tags=self.tags,
            translator=self.translator,
            read_back_statuses=(
                self.read_back_statuses.read_back(src.resource_key) if self.read_back_statuses else None
            ),
            changes_sensor=self.changes_sensor.spec() if self.changes_sensor else None,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        schema_assets = (
            build_trackstar_schema_assets(
                integration_types=self.integration_types, translator=self.translator
            )
            if self.include_schema_assets
            else []
        )
        # the sync's payloads depend on the write-info asset as built here (its translated key)
        sync = self.build_sync(context, write_info_key=schema_assets[1].key if schema_assets else None)
        sync_defs = build_trackstar_sync_definitions(
            sync,
            trackstar=self.trackstar_resource(),
            schedule=bool(self.partitions and self.partitions.schedule),
            hour_of_day=self.partitions.hour_of_day if self.partitions else 0,
            minute_of_hour=self.partitions.minute_of_hour if self.partitions else 0,
        )
        return dg.Definitions.merge(dg.Definitions(assets=schema_assets), sync_defs)


class _ComponentTranslator(TrackstarTranslator):
    """The component's ``get_asset_spec`` (default spec + ``translation``) as a ``TrackstarTranslator``."""

    def __init__(self, component: TrackstarSyncComponent) -> None:
        self.component = component

    def get_asset_spec(self, data: TrackstarAssetData) -> dg.AssetSpec:
        return self.component.get_asset_spec(data)
