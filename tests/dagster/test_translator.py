"""The translator: renamed keys, groups, tags, owners and descriptions show up in the definitions, lineage follows
the renamed keys, and a renamed sync still materializes; the component's YAML ``translation`` does the same."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from dagster.components.core.component_tree import ComponentTree

from tests.dagster.test_sync import MAPPING, resources, rows  # noqa: F401  (resources: a fixture)
from trackstar_dagster import (
    TrackstarAssetData,
    TrackstarResource,
    TrackstarSync,
    TrackstarSyncComponent,
    TrackstarTranslator,
    build_trackstar_schema_assets,
    build_trackstar_sync_definitions,
)

key = dg.AssetKey


def stand_ins() -> dict:
    """Resources the definitions name, for inspecting them without a run."""
    return {
        "trackstar": TrackstarResource(api_key=dg.EnvVar("TRACKSTAR_API_KEY")),
        "duckdb": dg.ResourceDefinition.none_resource(),
    }


class OpsTranslator(TrackstarTranslator):
    """Everything under ``ops/``; a sync's assets in one group, owned by a team; write results renamed."""

    def get_asset_spec(self, data: TrackstarAssetData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        path = ["ops", *spec.key.path]
        if data.kind == "write_results":
            path[-1] = "sent"
        return spec.replace_attributes(
            key=key(path),
            group_name="fulfilment" if data.sync_name else "ops_schemas",
            owners=["team:fulfilment"],
            description=f"{data.kind} ({data.action or 'schema'})",
        ).merge_attributes(tags={"layer": data.kind})


def make_sync(frame: pd.DataFrame, **kwargs) -> TrackstarSync:
    return TrackstarSync(
        name="s",
        mapping=MAPPING,
        load_rows=lambda context, window: frame,
        translator=OpsTranslator(),
        tags={"team": "fulfilment"},
        **kwargs,
    )


def defs_of(sync: TrackstarSync, extra_resources: dict | None = None) -> dg.Definitions:
    schema = dg.Definitions(assets=build_trackstar_schema_assets(translator=OpsTranslator()))
    return dg.Definitions.merge(
        schema, build_trackstar_sync_definitions(sync), dg.Definitions(resources=extra_resources or {})
    )


def test_renamed_keys_groups_tags_and_owners_show_in_the_definitions_and_lineage_follows():
    sync = make_sync(rows(1))
    defs = defs_of(sync, stand_ins())
    graph = defs.resolve_asset_graph()
    payloads, rejects, sent = (
        key(["ops", "s", "payloads"]),
        key(["ops", "s", "rejects"]),
        key(["ops", "s", "sent"]),
    )
    catalog, write_info = key(["ops", "trackstar", "integrations"]), key(["ops", "trackstar", "write_info"])
    assert (sync.payloads_key, sync.rejects_key, sync.results_key) == (payloads, rejects, sent)
    assert set(graph.get_all_asset_keys()) == {payloads, rejects, sent, catalog, write_info}

    assert graph.get(payloads).parent_keys == {write_info}  # no source_key given
    assert graph.get(rejects).parent_keys == {write_info}
    assert graph.get(sent).parent_keys == {payloads}
    assert graph.get(write_info).parent_keys == {catalog}

    node = graph.get(sent)
    assert node.group_name == "fulfilment" and node.owners == ["team:fulfilment"]
    assert (
        node.tags["team"] == "fulfilment" and node.tags["layer"] == "write_results"
    )  # the sync's tags, the translator's
    assert node.description == "write_results (create_order)"
    assert graph.get(catalog).group_name == "ops_schemas" and "team" not in graph.get(catalog).tags
    assert graph.get(payloads).kinds == {"trackstar", "pandas"}

    checks = {(c.asset_key, c.name) for c in graph.asset_check_keys}
    assert checks == {(payloads, "rows_valid"), (payloads, "reject_share"), (write_info, "schema_drift")}
    job = defs.resolve_job_def("s_job")
    assert job.tags["team"] == "fulfilment"  # the sync's tags on its runs


def test_default_translator_keeps_the_documented_keys():
    sync = TrackstarSync(
        name="orders",
        mapping=MAPPING,
        load_rows=lambda c, w: pd.DataFrame(),
        key_prefix=["wh"],
        group_name="g",
        source_key=key("src"),
    )
    graph = dg.Definitions.merge(
        dg.Definitions(assets=build_trackstar_schema_assets(), resources=stand_ins()),
        build_trackstar_sync_definitions(sync),
    ).resolve_asset_graph()
    assert graph.get(key(["wh", "orders", "payloads"])).parent_keys == {
        key("src"),
        key(["trackstar", "write_info"]),
    }
    assert graph.get(key(["wh", "orders", "write_results"])).group_name == "g"
    assert graph.get(key(["trackstar", "integrations"])).group_name == "trackstar"


def test_a_renamed_sync_still_materializes(sandbox, instance, resources):  # noqa: F811
    sync = make_sync(rows(4))
    defs = defs_of(sync, {"trackstar": resources["trackstar"]})
    assert dg.materialize(
        build_trackstar_schema_assets(translator=OpsTranslator()),
        instance=instance,
        resources={"trackstar": resources["trackstar"]},
    ).success
    result = defs.resolve_job_def("s_job").execute_in_process(instance=instance)
    assert result.success
    results = result.asset_value(key(["ops", "s", "sent"]))
    assert set(results["status"]) == {"created"} and len(results) == 4
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 4
    assert set(sync.read_results(instance=instance)["key"]) == set(results["key"])


def test_component_translation_from_yaml_attributes():
    component = TrackstarSyncComponent.from_attributes_dict(
        attributes={
            "name": "orders_sync",
            "connections": [
                {"name": "acme", "access_token_env": "ACME_TOKEN", "integration_name": "wms_sandbox"}
            ],
            "source": {"table": "order_lines", "date_column": "order_date"},
            "mapping": MAPPING.model_dump(exclude_defaults=True),
            "partitions": {"start_date": "2026-11-01"},
            "tags": {"team": "fulfilment"},
            "translation": {
                "key_prefix": "ops",
                "group_name": "trackstar_orders",
                "description": "{{ data.kind }} of {{ data.sync_name or 'every sync' }}",
            },
        }
    )
    defs = component.build_defs(ComponentTree.for_test().load_context)
    defs = dg.Definitions.merge(defs, dg.Definitions(resources={"duckdb": stand_ins()["duckdb"]}))
    graph = defs.resolve_asset_graph()
    payloads, results = key(["ops", "orders_sync", "payloads"]), key(["ops", "orders_sync", "write_results"])
    write_info = key(["ops", "trackstar", "write_info"])
    assert graph.get(payloads).parent_keys == {key("order_lines"), write_info}
    assert graph.get(results).parent_keys == {payloads}
    assert graph.get(write_info).parent_keys == {key(["ops", "trackstar", "integrations"])}
    assert graph.get(results).group_name == "trackstar_orders"
    assert graph.get(results).description == "write_results of orders_sync"
    assert graph.get(write_info).description == "write_info of every sync"
    assert graph.get(payloads).tags["team"] == "fulfilment"
    assert defs.resolve_schedule_def("orders_sync_schedule").cron_schedule == "0 3 * * *"
    assert set(defs.resources) >= {"trackstar", "trackstar_io_manager"}


def test_two_syncs_definitions_merge_with_one_io_manager():
    a, b = (TrackstarSync(name=n, mapping=MAPPING, load_rows=lambda c, w: pd.DataFrame()) for n in ("a", "b"))
    defs = dg.Definitions.merge(
        build_trackstar_sync_definitions(a),
        build_trackstar_sync_definitions(b),
        dg.Definitions(assets=build_trackstar_schema_assets(), resources=stand_ins()),
    )
    assert {j for j in ("a_job", "b_job") if defs.resolve_job_def(j)} == {"a_job", "b_job"}
    assert (
        defs.resources["trackstar_io_manager"]
        is build_trackstar_sync_definitions(a).resources["trackstar_io_manager"]
    )
