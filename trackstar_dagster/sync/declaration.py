"""A sync's declaration: where its rows come from, how they map, where they go, its policies, its asset keys.

``TrackstarSync`` is plain configuration with derived names (translated keys, pool, job); its steps are built by
``sync.assets``, its ``Definitions`` by ``sync.definitions``.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import dagster as dg
import pandas as pd

from trackstar_dagster.assets import translated_write_info_key
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import check_namespace
from trackstar_dagster.changes import ChangesSensor
from trackstar_dagster.io_manager import read_frames
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.partitions import check_partitions_def
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.sync.partitioning import TrackstarPartitions, check_partition_count
from trackstar_dagster.sync.status_config import StatusReadBack, status_read_back
from trackstar_dagster.translator import AssetKind, TrackstarAssetData, TrackstarTranslator, translated_spec

#: ``load_rows(context, window)``, or ``load_rows(context, request: RowsRequest)`` (the slice's window and
#: connections); either may return one DataFrame or an iterator of DataFrames
RowLoader = Callable[[dg.AssetExecutionContext, Any], Any]
ResultsSink = Callable[[dg.AssetExecutionContext, str, pd.DataFrame], None]


@dataclass(frozen=True)
class TrackstarSync:
    """Everything one sync needs: where rows come from, how they map, where they go, and its policies.

    ``tags`` go on the sync's assets (through the translator's default spec) and on the runs of the job
    ``build_trackstar_sync_definitions`` makes; asset tags follow Dagster's rules (short ``[A-Za-z0-9_.-]``
    values). ``translator`` shapes its assets (keys, groups, tags, ...); ``payloads_key`` and friends are the
    translated keys. ``write_info_key`` defaults to the translator's key of the write-info asset.

    Partitions: ``partitions=trackstar_partitions(start_date, grain="day", by_connection=True)`` (time x
    connection: each customer's status in the UI, backfills of one customer), or any ``partitions_def``
    (time-window, or a ``MultiPartitionsDefinition`` of ``date`` and ``connection``).
    """

    name: str
    mapping: MappingConfig
    load_rows: RowLoader
    source_key: dg.AssetKey | None = None
    date_column: str | None = None
    partitions_def: dg.PartitionsDefinition | None = None
    partitions: TrackstarPartitions | None = None
    backfill_policy: dg.BackfillPolicy | None = None
    write_from: datetime | date | str | None = None
    mode: Literal["create_only", "upsert"] = "create_only"
    dry_run: bool = False
    max_reject_share: float = 0.1
    max_failed_share: float = 0.0
    pool: str | None = None
    results_sink: ResultsSink | None = None
    resource_key: str = "trackstar"
    key_prefix: Sequence[str] = ()
    group_name: str | None = None
    write_info_key: dg.AssetKey | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: resources ``load_rows`` and ``results_sink`` use (e.g. ``{"duckdb"}``)
    extra_resource_keys: frozenset[str] = frozenset()
    translator: TrackstarTranslator = field(default_factory=TrackstarTranslator)
    #: read the orders back (status, shipments, tracking numbers): ``True`` or a ``StatusReadBack``
    read_back_statuses: StatusReadBack | bool | None = None
    #: late and changed rows: ``<name>_changes_sensor`` runs written partitions whose rows changed since
    changes_sensor: ChangesSensor | None = None

    def __post_init__(self) -> None:
        status_read_back(self.read_back_statuses, self.mapping.action)  # orders only: said when declared
        # the name is the sync's namespace: in its bodies' tags and its ledger rows (keys.key_tag)
        try:
            check_namespace(self.name)
        except ValueError as e:
            raise ConfigError(f"sync name: {e}") from None
        if self.partitions is not None:
            built = self.partitions.partitions_def(self.name)
            if self.partitions_def is not None and self.partitions_def != built:
                raise ConfigError(f"{self.name}: give `partitions` or `partitions_def`, not both")
            object.__setattr__(self, "partitions_def", built)  # frozen: set once, here
            if self.partitions.by_connection and self.partitions.connections is not None:
                check_partition_count(self, len(self.partitions.connections))
        check_partitions_def(self.partitions_def)

    @property
    def prefix(self) -> list[str]:
        return [*self.key_prefix, self.name]

    # -- how its assets look (the translator's specs) --------------------------------------------------

    def asset_data(self, kind: AssetKind) -> TrackstarAssetData:
        """What the translator is told about one of this sync's assets."""
        return TrackstarAssetData(
            kind=kind,
            key=dg.AssetKey([*self.prefix, kind]),
            group_name=self.group_name or self.name,
            sync_name=self.name,
            tags=dict(self.tags),
            action=self.mapping.action,
            connections=tuple(self.mapping.connections()),
        )

    def asset_spec(self, kind: AssetKind) -> dg.AssetSpec:
        """The translator's spec of one of this sync's assets, with its lineage (translated keys) and partitions."""
        deps: list[dg.AssetKey] = []
        if kind in ("payloads", "rejects"):
            deps = [k for k in (self.source_key, self.upstream_write_info_key) if k is not None]
        elif kind == "write_results":
            deps = [self.payloads_key]
        elif kind == "order_statuses":  # read per connection, incrementally: not partitioned
            return translated_spec(self.translator, self.asset_data(kind), deps=[self.results_key])
        spec = translated_spec(self.translator, self.asset_data(kind), deps=deps)
        return spec.replace_attributes(partitions_def=self.partitions_def)

    @property
    def upstream_write_info_key(self) -> dg.AssetKey:
        return self.write_info_key or translated_write_info_key(self.translator)

    @property
    def payloads_key(self) -> dg.AssetKey:
        return self.translator.get_asset_spec(self.asset_data("payloads")).key

    @property
    def rejects_key(self) -> dg.AssetKey:
        return self.translator.get_asset_spec(self.asset_data("rejects")).key

    @property
    def results_key(self) -> dg.AssetKey:
        return self.translator.get_asset_spec(self.asset_data("write_results")).key

    @property
    def statuses_key(self) -> dg.AssetKey:
        return self.translator.get_asset_spec(self.asset_data("order_statuses")).key

    @property
    def status_read_back(self) -> StatusReadBack | None:
        """How the orders are read back, None when they are not."""
        return status_read_back(self.read_back_statuses, self.mapping.action)

    @property
    def job_name(self) -> str:
        return f"{self.name}_job"

    # -- policies ----------------------------------------------------------------------------------------

    @property
    def tagged_mapping(self) -> MappingConfig:
        """The mapping, its bodies tagged in this sync's namespace (its name) unless it names one itself."""
        if self.mapping.tag_namespace is not None:
            return self.mapping
        return self.mapping.model_copy(update={"tag_namespace": self.name})

    @property
    def pool_name(self) -> str:
        return self.pool or f"trackstar_{self.name}"

    @property
    def effective_backfill_policy(self) -> dg.BackfillPolicy | None:
        if self.partitions_def is None:
            return None
        return self.backfill_policy or dg.BackfillPolicy.single_run()

    @property
    def write_from_ts(self) -> pd.Timestamp | None:
        if self.write_from is None:
            return None
        ts = pd.Timestamp(self.write_from)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    # -- reading back ------------------------------------------------------------------------------------

    def ledger_entries(self, trackstar: TrackstarResource) -> pd.DataFrame:
        """This sync's rows of the write ledger (status, Trackstar id, last error per record)."""
        with trackstar.ledger() as ledger:
            return ledger.entries(namespace=self.name)

    def read_results(
        self,
        partitions: list[str] | None = None,
        *,
        base_dir: str | None = None,
        instance: dg.DagsterInstance | None = None,
    ) -> pd.DataFrame:
        """The stored ``write_results`` frames (every partition, or those named)."""
        return read_frames(self.results_key, partitions, base_dir=base_dir, instance=instance)

    def build_defs(self, **kwargs: Any) -> dg.Definitions:
        """``build_trackstar_sync_definitions(self, **kwargs)``."""
        # imported here: the definitions are built from this declaration (sync.definitions imports this module)
        from trackstar_dagster.sync.definitions import build_trackstar_sync_definitions

        return build_trackstar_sync_definitions(self, **kwargs)
