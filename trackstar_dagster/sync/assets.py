"""A sync's assets: the payloads step (rows -> payloads + rejects, with its row checks) and the write step.

The payloads step is not in the sync's pool: it frees the pool's dead holders and claims the pool for its run's
write step (``pools.hold_pool``); the write step runs in the pool (``write_step.run_writes``).
"""

# no `from __future__ import annotations`: Dagster reads the `config: WriteConfig` annotation at decoration time
import dataclasses
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.checks import reject_share_result, rows_valid_result
from trackstar_dagster.io_manager import PARTITION_COLUMN
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.previews import preview_bodies, top_reject_reasons
from trackstar_dagster.mapping.validation import PayloadsModel, RejectsModel
from trackstar_dagster.metadata import frame_metadata
from trackstar_dagster.partitions import (
    load_slice,
    mapping_for,
    partition_of_rows,
    rows_requests,
    run_connections,
    stamp_partitions,
    tag_frame,
)
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.schema.store import snapshot_key
from trackstar_dagster.sync.declaration import TrackstarSync
from trackstar_dagster.translator import TrackstarTranslator
from trackstar_dagster.write_step import RATE_KEYS, WriteConfig, results_metadata, run_writes

IO_MANAGER_KEY = "trackstar_io_manager"
ROWS_VALID_CHECK = "rows_valid"
REJECT_SHARE_CHECK = "reject_share"


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
        requests = rows_requests(sync, context)
        chunks = [c for req in requests for c in load_slice(sync, context, req)]
        frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
        # a run of some connections resolves and maps for those only
        mapping = mapping_for(sync.tagged_mapping, run_connections(requests))
        targets = resolve_targets(trackstar, mapping, context.log)
        batch = build_payloads(frame, mapping, targets)
        # the outputs' own contract, before anything downstream uses them
        PayloadsModel.validate(batch.payloads)
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
        row_parts = partition_of_rows(frame, sync.date_column, sync.partitions_def, keys, sync.mapping)
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
