"""A sync's assets: the payloads step (rows -> payloads + rejects, with its row checks) and the write step.

The payloads step is not in the sync's pool: it frees the pool's dead holders and claims the pool for its run's
write step (``pools.hold_pool``); the write step runs in the pool (``write_step.run_writes``).
"""

# no `from __future__ import annotations`: Dagster reads the `config: WriteConfig` annotation at decoration time
import dataclasses
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.checks import reject_share_result, rows_valid_result
from trackstar_dagster.io_manager import StoredFrames
from trackstar_dagster.mapping import MappingConfig, Target
from trackstar_dagster.mapping.plan import OtherTargets
from trackstar_dagster.partitions import (
    add_partition_metadata,
    mapping_for,
    rows_requests,
    run_connections,
    run_partition_keys,
)
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.schema.store import snapshot_key
from trackstar_dagster.sync.changes_sensor import written_fingerprints
from trackstar_dagster.sync.declaration import TrackstarSync
from trackstar_dagster.sync.payloads_step import build_chunks, frame_store
from trackstar_dagster.translator import TrackstarTranslator
from trackstar_dagster.write_step import RATE_KEYS, WriteConfig, write_in_groups
from trackstar_dagster.write_totals import ResultsTally, first_head

IO_MANAGER_KEY = "trackstar_io_manager"
ROWS_VALID_CHECK = "rows_valid"
REJECT_SHARE_CHECK = "reject_share"


# ---------------------------------------------------------------------------------------------------------
# the payloads step's inputs


def resolve_targets(
    trackstar: TrackstarResource,
    mapping: MappingConfig,
    log: Any = None,
    frame: pd.DataFrame | None = None,
) -> dict[str, Target]:
    """Each connection's integration and write-info document: the stored snapshot, else one fetch.

    With open routing (the rows name their connection), the configured ones ``frame`` names (all without a
    frame)."""
    return TargetResolver(trackstar, mapping, log)(frame)


class TargetResolver:
    """The targets a run's chunks need, each connection resolved once for the run (the write step needs only
    its token): a chunk asks for the connections its rows name, so a run over a few of hundreds of
    connections resolves only those."""

    def __init__(self, trackstar: TrackstarResource, mapping: MappingConfig, log: Any = None) -> None:
        self.trackstar = trackstar
        self.mapping = mapping
        self.log = log
        self.store = trackstar.schema_store()
        self.resolved: dict[str, Target] = {}

    def __call__(self, frame: pd.DataFrame | None) -> dict[str, Target]:
        names = self.mapping.connections_for(frame, self.trackstar.connection_names())
        for name in names:
            if name not in self.resolved:
                self.resolved[name] = self._resolve(name)
        return {name: self.resolved[name] for name in names}

    def _resolve(self, name: str) -> Target:
        target = self._stored(name)
        if target is not None:
            return target
        conn = self.trackstar.connection(name)
        skey = snapshot_key(conn.integration_type, conn.integration_name, conn.name)
        if self.log:
            self.log.info(f"No write-info snapshot for {skey}; fetching it")
        # the resource's client: it closes it at the end of the run
        doc = self.trackstar.get_client().get_write_info(
            conn.integration_type, conn.integration_name, access_token=conn.access_token
        )
        self.store.save(skey, doc)
        return Target(name, conn.integration_type, conn.integration_name, doc)

    def _stored(self, name: str) -> Target | None:
        """The connection's target from the write-info asset's snapshot, or None when there is none yet."""
        conn = self.trackstar.connection(name)
        doc = self.store.load(snapshot_key(conn.integration_type, conn.integration_name, conn.name))
        return None if doc is None else Target(name, conn.integration_type, conn.integration_name, doc)

    def others(self, full: MappingConfig) -> OtherTargets | None:
        """For a run of some of ``full``'s connections (one customer's partitions; with open routing, the
        connections a chunk names): the targets of all of them, from the snapshots only (never fetched),
        so that a field only another connection's schema has is not called a typo. None when the run
        covers every connection."""
        if not full.open_routing and set(full.connections()) == set(self.mapping.connections()):
            return None
        box: list[Mapping[str, Target] | None] = []

        def load() -> Mapping[str, Target] | None:
            if not box:
                names = self.trackstar.connection_names() if full.open_routing else full.connections()
                found: dict[str, Target] = {}
                for n in names:
                    target = self.resolved.get(n) or self._stored(n)
                    if target is None:  # not fetched yet: the others cannot all be known
                        box.append(None)
                        break
                    found[n] = target
                else:
                    box.append(found)
            return box[0]

        return load


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
        required_resource_keys={resource_key, IO_MANAGER_KEY, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        # no pool: this step must run while a dead run holds the pool, to free it (pools.hold_pool)
        can_subset=False,
    )
    def _payloads(context: dg.AssetExecutionContext):
        from trackstar_dagster.pools import hold_pool

        # free the slots of dead runs, then hold the pool for this run's write step (from here to its end)
        hold_pool(context, sync.pool_name, results_step)
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        # a run of some connections (time x connection partitions) resolves and maps those only
        mapping = mapping_for(sync.tagged_mapping, run_connections(rows_requests(sync, context)))
        targets = TargetResolver(trackstar, mapping, context.log)
        others = targets.others(sync.tagged_mapping)
        keys = run_partition_keys(sync, context)
        payloads_store = frame_store(context, IO_MANAGER_KEY, payloads_key, keys)
        rejects_store = frame_store(context, IO_MANAGER_KEY, rejects_key, keys)
        sink = sync.results_sink
        run = build_chunks(
            context,
            sync,
            mapping,
            targets,
            payloads_store,
            rejects_store,
            on_rejects=(lambda frame: sink(context, "rejects", frame)) if sink is not None else None,
            others=others,
        )
        payloads = payloads_store.finish(run.payloads_template)
        rejects = rejects_store.finish(run.rejects_template)
        context.log.info(
            f"Trackstar payloads: {run.source_rows} source rows, {run.records} records: "
            f"{run.payloads} payloads, {run.rejected} rejected"
        )
        add_partition_metadata(context, payloads_key, {k: run.payload_figures(k) for k in keys})
        add_partition_metadata(context, rejects_key, {k: run.reject_figures(k) for k in keys})
        whole = not keys
        yield dg.Output(
            payloads,
            output_name=payloads_key.to_python_identifier(),
            metadata=run.payload_figures("") if whole else None,
        )
        yield dg.Output(
            rejects,
            output_name=rejects_key.to_python_identifier(),
            metadata=run.reject_figures("") if whole else None,
        )
        yield rows_valid_result(
            payloads_key,
            ROWS_VALID_CHECK,
            run.checks,
            n_rows=run.source_rows,
            n_records=run.records,
            n_rejected=run.rejected,
        )
        yield reject_share_result(
            payloads_key, REJECT_SHARE_CHECK, run.rejected, run.records, sync.max_reject_share
        )

    @dg.multi_asset(
        name=results_step,  # the step key hold_pool claims the pool for
        specs=[results_spec.with_io_manager_key(IO_MANAGER_KEY)],
        # annotated StoredFrames: the IO manager hands the stored payloads on, not loaded
        ins={"payloads": dg.AssetIn(payloads_key, input_manager_key=IO_MANAGER_KEY)},
        required_resource_keys={resource_key, IO_MANAGER_KEY, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        pool=sync.pool_name,
    )
    def _results(context: dg.AssetExecutionContext, config: WriteConfig, payloads: StoredFrames):
        from trackstar_dagster.pools import keep_heartbeat

        sink = sync.results_sink

        keep_heartbeat(context, sync.pool_name)  # while it holds the pool, other runs can tell it is alive
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        keys = run_partition_keys(sync, context)
        store = frame_store(context, IO_MANAGER_KEY, results_key, keys)
        dry_run = config.dry_run or sync.dry_run

        def figures(
            done: list[str],
            tallies: dict[str, ResultsTally],
            template: pd.DataFrame | None,
            run: dict[str, Any],
        ) -> dict[str, dict[str, Any]]:
            """Each partition's figures, with the fingerprint of the rows it was written from."""
            # the rows this write sent came from: what the changes sensor compares the source with
            written = (
                written_fingerprints(
                    context,
                    payloads_key,
                    results_key,
                    done,
                    dry_run=dry_run,
                    incomplete=[k for k in done if k in tallies and not tallies[k].complete],
                )
                if sync.changes_sensor is not None
                else {}
            )
            return {
                k: {**(tallies.get(k) or ResultsTally(template)).metadata(), **run, **written.get(k, {})}
                for k in done
            }

        def materialize_complete(tallies: dict[str, ResultsTally]) -> None:
            """The step fails (a customer's token refused, records not written), but a run holds several
            partitions: those whose every record went out are materialized all the same, with their figures
            and stored results, so the UI shows only the others failed and a re-execution has only them to do."""
            done = [k for k in keys if (t := tallies.get(k)) is None or t.complete]
            if len(keys) < 2 or not done:
                return
            template = first_head(tallies)
            store.finish(template)
            for k, metadata in figures(done, tallies, template, {}).items():
                context.log_event(dg.AssetMaterialization(results_key, partition=k, metadata=metadata))
            context.log.warning(
                f"Trackstar write: {len(done)} of {len(keys)} partitions written in full, materialized "
                f"although the step fails: {', '.join(done[:10])}{' ...' if len(done) > 10 else ''}"
            )

        tallies, metadata = write_in_groups(
            context,
            trackstar,
            payloads.parts(),
            store.split,
            dry_run=dry_run,
            mode=config.mode_or(sync.mode),
            max_failed_share=sync.max_failed_share,
            namespace=sync.name,
            sink=(lambda frame: sink(context, "write_results", frame)) if sink is not None else None,
            group_rows=max(1, config.group_rows),
            preview_limit=config.preview_limit,
            before_failure=materialize_complete if keys else None,
        )
        template = first_head(tallies)
        results = store.finish(template)
        if not keys:
            return dg.Output(results, output_name=results_step, metadata=metadata)
        run_figures = {k: v for k, v in metadata.items() if k in RATE_KEYS}
        add_partition_metadata(context, results_key, figures(keys, tallies, template, run_figures))
        return dg.Output(results, output_name=results_step)

    if sync.status_read_back is None:
        return [_payloads, _results]
    from trackstar_dagster.sync.statuses import build_order_statuses_asset  # it imports this module

    return [_payloads, _results, build_order_statuses_asset(sync)]
