"""A sync: source table -> payloads (+ rejects) -> write results, as Dagster assets and definitions.

The Dagster layer only wires: rows come from the user's ``load_rows``, bodies from ``mapping.build_payloads``,
writes from ``writer.write_payloads`` (through ``write_step.run_writes``); this module declares the sync, its
assets (shaped by its ``TrackstarTranslator``) and its ``Definitions`` (assets, checks, job, schedule and the
IO manager they need). Partition bookkeeping lives in ``partitions``, the plain op in ``ops``.
"""

# no `from __future__ import annotations`: Dagster reads the `config: WriteConfig` annotation at decoration time
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import dagster as dg
import pandas as pd

from trackstar_dagster.assets import translated_write_info_key
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import check_namespace
from trackstar_dagster.checks import reject_share_result, rows_valid_result
from trackstar_dagster.io_manager import PARTITION_COLUMN, TrackstarFrameIOManager, read_frames
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.previews import preview_bodies, top_reject_reasons
from trackstar_dagster.mapping.validation import PayloadsModel, RejectsModel
from trackstar_dagster.metadata import frame_metadata
from trackstar_dagster.partitions import partition_of_rows, stamp_partitions, tag_frame
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.schema.store import snapshot_key
from trackstar_dagster.translator import AssetKind, TrackstarAssetData, TrackstarTranslator, translated_spec
from trackstar_dagster.write_step import RATE_KEYS, WriteConfig, results_metadata, run_writes

RowLoader = Callable[[dg.AssetExecutionContext, dg.TimeWindow | None], pd.DataFrame]
ResultsSink = Callable[[dg.AssetExecutionContext, str, pd.DataFrame], None]
IO_MANAGER_KEY = "trackstar_io_manager"
ROWS_VALID_CHECK = "rows_valid"
REJECT_SHARE_CHECK = "reject_share"


@dataclass(frozen=True)
class TrackstarSync:
    """Everything one sync needs: where rows come from, how they map, where they go, and its policies.

    ``tags`` go on the sync's assets (through the translator's default spec) and on the runs of the job
    ``build_trackstar_sync_definitions`` makes; asset tags follow Dagster's rules (short ``[A-Za-z0-9_.-]``
    values). ``translator`` shapes its assets (keys, groups, tags, ...); ``payloads_key`` and friends are the
    translated keys. ``write_info_key`` defaults to the translator's key of the write-info asset.
    """

    name: str
    mapping: MappingConfig
    load_rows: RowLoader
    source_key: dg.AssetKey | None = None
    date_column: str | None = None
    partitions_def: dg.PartitionsDefinition | None = None
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

    def __post_init__(self) -> None:
        # the name is the sync's namespace: in its bodies' tags and its ledger rows (keys.key_tag)
        try:
            check_namespace(self.name)
        except ValueError as e:
            raise ConfigError(f"sync name: {e}") from None

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
        return build_trackstar_sync_definitions(self, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# the payloads step's inputs


def resolve_targets(
    trackstar: TrackstarResource, mapping: MappingConfig, log: Any = None
) -> dict[str, Target]:
    """Each connection's integration and write-info document: the stored snapshot, else one fetch.

    Each connection is resolved once here, for the run: the write step needs only its token."""
    store = trackstar.schema_store()
    targets: dict[str, Target] = {}
    for name in mapping.connections():
        conn = trackstar.connection(name)
        skey = snapshot_key(conn.integration_type, conn.integration_name, conn.name)
        doc = store.load(skey)
        if doc is None:
            if log:
                log.info(f"No write-info snapshot for {skey}; fetching it")
            # the resource's client: it closes it at the end of the run
            doc = trackstar.get_client().get_write_info(
                conn.integration_type, conn.integration_name, access_token=conn.access_token
            )
            store.save(skey, doc)
        targets[name] = Target(
            connection=name,
            integration_type=conn.integration_type,
            integration_name=conn.integration_name,
            doc=doc,
        )
    return targets


# ---------------------------------------------------------------------------------------------------------
# the asset factory


def build_trackstar_sync_assets(
    sync: TrackstarSync, *, translator: TrackstarTranslator | None = None
) -> list[dg.AssetsDefinition]:
    """The sync's nodes: payloads + rejects (one step, with row checks) -> write results (in the sync's pool).

    ``translator`` replaces the sync's own (``TrackstarSync(translator=...)`` keeps ``sync.payloads_key`` and
    friends in step with it: prefer that)."""
    if translator is not None:
        sync = dataclasses.replace(sync, translator=translator)
    resource_key = sync.resource_key
    payloads_spec, rejects_spec, results_spec = (
        sync.asset_spec(k) for k in ("payloads", "rejects", "write_results")
    )
    payloads_key, rejects_key, results_key = payloads_spec.key, rejects_spec.key, results_spec.key
    results_step = results_key.to_python_identifier()

    @dg.multi_asset(
        name=f"{sync.name}_payloads",
        specs=[
            payloads_spec.with_io_manager_key(IO_MANAGER_KEY),
            rejects_spec.with_io_manager_key(IO_MANAGER_KEY),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_VALID_CHECK,
                asset=payloads_key,
                description="pandera and write-info validation of every row (WARN on any failure).",
            ),
            dg.AssetCheckSpec(
                REJECT_SHARE_CHECK,
                asset=payloads_key,
                blocking=True,
                description=f"ERROR when more than {sync.max_reject_share:.0%} of records are rejected, WARN when any.",
            ),
        ],
        required_resource_keys={resource_key, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        # no pool: this step must run while a dead run holds the pool, to free it (pools.hold_pool)
        can_subset=False,
    )
    def _payloads(context: dg.AssetExecutionContext):
        from trackstar_dagster.pools import hold_pool

        # free the slots of dead runs, then hold the pool for this run's write step (from here to its end)
        hold_pool(context, sync.pool_name, results_step)
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        window = (
            context.partition_time_window
            if isinstance(sync.partitions_def, dg.TimeWindowPartitionsDefinition)
            else None
        )
        frame = sync.load_rows(context, window).reset_index(drop=True)
        targets = resolve_targets(trackstar, sync.mapping, context.log)
        batch = build_payloads(frame, sync.tagged_mapping, targets)
        PayloadsModel.validate(
            batch.payloads
        )  # the outputs' own contract, before anything downstream uses them
        RejectsModel.validate(batch.rejects)
        for conn, dropped in batch.dropped_fields.items():
            context.log.info(
                f"{conn}: its integration's schema has no {', '.join(dropped)}; left out of its bodies"
            )
        if batch.untagged_connections:
            context.log.warning(
                f"bodies for {', '.join(batch.untagged_connections)} carry no key tag (key_tag off, or the schema has "
                f"no trackstar_tags): an unknown outcome cannot be proven and a lost ledger cannot be rebuilt for "
                f"them; exactly once then rests on the ledger and Trackstar honouring Idempotency-Key"
            )
        keys = list(context.partition_keys) if sync.partitions_def is not None else []
        row_parts = partition_of_rows(frame, sync.date_column, sync.partitions_def, keys)
        payloads = tag_frame(batch.payloads, frame, row_parts, sync.date_column, sync.write_from_ts)
        rejects = tag_frame(batch.rejects, frame, row_parts, dry_run_column=False)
        if sync.results_sink is not None:
            sync.results_sink(context, "rejects", rejects)

        n_records, n_rejected = batch.records, batch.rejected_records
        source_parts = (
            pd.Series(row_parts if row_parts is not None else [], dtype=object).value_counts().to_dict()
        )

        def payload_figures(part: pd.DataFrame) -> dict[str, Any]:
            per_conn = part.groupby("connection").size().to_dict() if len(part) else {}
            key = part[PARTITION_COLUMN].iloc[0] if PARTITION_COLUMN in part.columns and len(part) else None
            return {
                **frame_metadata(part),
                "source_rows": dg.MetadataValue.int(
                    int(source_parts.get(key, 0)) if row_parts is not None else len(frame)
                ),
                "dry_run_records": dg.MetadataValue.int(int(part["dry_run"].sum()) if len(part) else 0),
                **{f"records_{c}": dg.MetadataValue.int(int(n)) for c, n in sorted(per_conn.items())},
                **(
                    {"fields_left_out": dg.MetadataValue.json(batch.dropped_fields)}
                    if batch.dropped_fields
                    else {}
                ),
                "preview": dg.MetadataValue.md(preview_bodies(part)),
            }

        def reject_figures(part: pd.DataFrame) -> dict[str, Any]:
            return {
                **frame_metadata(part),
                # records refused (the reject_share check counts these) vs rows of the rejects table
                "rejected_records": dg.MetadataValue.int(int(part["key"].nunique()) if len(part) else 0),
                "reject_rows": dg.MetadataValue.int(len(part)),
                "top_reasons": dg.MetadataValue.md(top_reject_reasons(part)),
            }

        context.log.info(
            f"Trackstar payloads: {len(frame)} source rows, {n_records} records: "
            f"{len(payloads)} payloads, {n_rejected} rejected"
        )
        by_partition = stamp_partitions(context, payloads_key, payloads, payload_figures)
        stamp_partitions(context, rejects_key, rejects, reject_figures)
        yield dg.Output(
            payloads,
            output_name=payloads_key.to_python_identifier(),
            metadata=None if by_partition else payload_figures(payloads),
        )
        yield dg.Output(
            rejects,
            output_name=rejects_key.to_python_identifier(),
            metadata=None
            if by_partition
            else {**reject_figures(rejects), "rejected_records": dg.MetadataValue.int(n_rejected)},
        )
        yield rows_valid_result(
            payloads_key,
            ROWS_VALID_CHECK,
            batch.checks,
            n_rows=len(frame),
            n_records=n_records,
            n_rejected=n_rejected,
        )
        yield reject_share_result(
            payloads_key, REJECT_SHARE_CHECK, n_rejected, n_records, sync.max_reject_share
        )

    @dg.multi_asset(
        name=results_step,  # the step key hold_pool claims the pool for
        specs=[results_spec.with_io_manager_key(IO_MANAGER_KEY)],
        ins={"payloads": dg.AssetIn(payloads_key, input_manager_key=IO_MANAGER_KEY)},
        required_resource_keys={resource_key, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        pool=sync.pool_name,
    )
    def _results(context: dg.AssetExecutionContext, config: WriteConfig, payloads: pd.DataFrame):
        from trackstar_dagster.pools import keep_heartbeat

        sink = sync.results_sink

        keep_heartbeat(context, sync.pool_name)  # while it holds the pool, other runs can tell it is alive
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        results, metadata = run_writes(
            context,
            trackstar,
            payloads,
            dry_run=config.dry_run or sync.dry_run,
            mode=config.mode_or(sync.mode),
            max_failed_share=sync.max_failed_share,
            namespace=sync.name,
            sink=(lambda frame: sink(context, "write_results", frame)) if sink is not None else None,
        )
        run_figures = {k: v for k, v in metadata.items() if k in RATE_KEYS}
        if stamp_partitions(
            context, results_key, results, lambda part: {**results_metadata(part), **run_figures}
        ):
            return dg.Output(results, output_name=results_step)
        return dg.Output(results, output_name=results_step, metadata=metadata)

    return [_payloads, _results]


# ---------------------------------------------------------------------------------------------------------
# the sync's definitions


@functools.cache
def trackstar_io_manager(base_dir: str | None = None) -> TrackstarFrameIOManager:
    """One IO manager object per ``base_dir``: the definitions of several syncs merge (Dagster's merge wants the
    same object under a resource key)."""
    return TrackstarFrameIOManager(base_dir=base_dir)


def trackstar_io_manager_resources(base_dir: str | None = None) -> dict[str, Any]:
    """The resources a sync's assets need besides ``trackstar`` (``build_trackstar_sync_definitions`` adds
    them itself; for definitions built from ``build_trackstar_sync_assets``)."""
    return {IO_MANAGER_KEY: trackstar_io_manager(base_dir)}


def build_trackstar_sync_definitions(
    sync: TrackstarSync,
    *,
    trackstar: TrackstarResource | None = None,
    schedule: bool | dg.ScheduleDefinition = False,
    hour_of_day: int = 0,
    minute_of_hour: int = 0,
    io_manager_base_dir: str | None = None,
    translator: TrackstarTranslator | None = None,
) -> dg.Definitions:
    """Everything the sync runs with: its assets and checks, the job ``<name>_job`` over them (its runs tagged
    with the sync's ``tags``), a schedule of that job when asked (``schedule=True``: the latest partition of a
    time-partitioned sync daily at ``hour_of_day:minute_of_hour``; or give your own), and the IO manager they
    read and write through. ``trackstar``: the resource under ``sync.resource_key``, when it is not given
    elsewhere (the schema assets' definitions, for one).
    """
    if translator is not None:
        sync = dataclasses.replace(sync, translator=translator)
    assets = build_trackstar_sync_assets(sync)
    job = dg.define_asset_job(
        sync.job_name,
        selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
        partitions_def=sync.partitions_def,
        tags=dict(sync.tags) or None,
    )
    schedules: list[
        Any
    ] = []  # a ScheduleDefinition, or the unresolved one build_schedule_from_partitioned_job makes
    if isinstance(schedule, dg.ScheduleDefinition):
        schedules.append(schedule)
    elif schedule:
        if not isinstance(sync.partitions_def, dg.TimeWindowPartitionsDefinition):
            raise ConfigError(
                f"{sync.name}: schedule=True needs a time-window partitioned sync; give a schedule"
            )
        schedules.append(
            dg.build_schedule_from_partitioned_job(
                job,
                name=f"{sync.name}_schedule",
                hour_of_day=hour_of_day,
                minute_of_hour=minute_of_hour,
            )
        )
    resources: dict[str, Any] = trackstar_io_manager_resources(io_manager_base_dir)
    if trackstar is not None:
        resources[sync.resource_key] = trackstar
    return dg.Definitions(assets=assets, jobs=[job], schedules=schedules, resources=resources)
