"""The catalog and write-info assets: what integrations exist, and what each one's writes need.

Factories, so a user picks integration types, integrations and connections (and, with a
``TrackstarTranslator``, the assets' keys, groups, tags...). The write-info asset keeps the raw documents in a
``SchemaStore`` (the write path compiles its validators from them without another call) and checks, inside
its own step, how they drifted from the previous snapshot.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from trackstar_dagster.metadata import frame_metadata, markdown_table
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.schema.catalog import catalog_frame
from trackstar_dagster.schema.drift import schema_drift
from trackstar_dagster.schema.fields import write_info_fields
from trackstar_dagster.schema.frames import CatalogModel, WriteInfoAssetModel
from trackstar_dagster.schema.store import SchemaStore, snapshot_key
from trackstar_dagster.translator import TrackstarAssetData, TrackstarTranslator, translated_spec

CATALOG_KEY = dg.AssetKey(["trackstar", "integrations"])
WRITE_INFO_KEY = dg.AssetKey(["trackstar", "write_info"])
DRIFT_CHECK = "schema_drift"
IO_MANAGER_METADATA_KEY = "dagster/io_manager_key"  # where AssetSpec.with_io_manager_key keeps it


def catalog_matrix(frame: pd.DataFrame) -> str:
    """Markdown table of integrations x write actions (a check mark where the integration supports it)."""
    rows = frame.dropna(subset=["action"])
    if rows.empty:
        return "_(no write operations)_"
    matrix = pd.crosstab(rows["integration_name"], rows["action"]).clip(upper=1)
    matrix = matrix.map(lambda v: "✓" if v else "")
    return markdown_table(matrix.reset_index(), max_rows=200, width=30)


def build_trackstar_catalog_asset(
    *,
    integration_types: Sequence[str] = ("wms",),
    resource_key: str = "trackstar",
    key: dg.AssetKey = CATALOG_KEY,
    group_name: str = "trackstar",
    translator: TrackstarTranslator | None = None,
) -> dg.AssetsDefinition:
    """The integrations catalog for the chosen types: one row per integration x write operation.

    One call per type: Trackstar allows the catalog endpoints once a minute.
    """
    types = list(integration_types)
    # the frame is stored by the default IO manager, as an @asset's would be
    spec = translated_spec(translator or TrackstarTranslator(), catalog_data(key, group_name, types))
    spec = spec.with_io_manager_key(spec.metadata.get(IO_MANAGER_METADATA_KEY) or "io_manager")

    @dg.multi_asset(name=spec.key.to_python_identifier(), specs=[spec], required_resource_keys={resource_key})
    def _catalog(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        client = trackstar.get_client()  # the resource's: it closes it
        answers = {t: {"data": client.get_integrations(t)} for t in types}
        frame = CatalogModel.validate(catalog_frame(answers))
        n_integrations = frame["integration_name"].nunique()
        return dg.Output(
            frame,
            output_name=spec.key.to_python_identifier(),
            metadata={
                **frame_metadata(frame),
                "integrations": dg.MetadataValue.int(int(n_integrations)),
                "integration_types": dg.MetadataValue.text(", ".join(types)),
                "integrations_x_actions": dg.MetadataValue.md(catalog_matrix(frame)),
            },
        )

    return _catalog


def build_trackstar_write_info_asset(
    *,
    integrations: Sequence[str] = (),
    integration_type: str = "wms",
    use_connections: bool = True,
    resource_key: str = "trackstar",
    key: dg.AssetKey = WRITE_INFO_KEY,
    catalog_key: dg.AssetKey = CATALOG_KEY,
    group_name: str = "trackstar",
    state_dir: str | None = None,
    translator: TrackstarTranslator | None = None,
) -> dg.AssetsDefinition:
    """Every field of every write operation, for the integrations the resource's connections use.

    Each connection's document is fetched with its own token (so its own enums, e.g. warehouse ids, come back);
    ``integrations`` adds integrations without a connection (fetched without a token). The documents are kept in
    a ``SchemaStore``; the ``schema_drift`` check compares them with the previous snapshot and fails when a
    field became required. With a ``translator``, ``catalog_key`` is the catalog's translated key (as
    ``build_trackstar_schema_assets`` passes it).
    """
    translator = translator or TrackstarTranslator()
    spec = translated_spec(
        translator, write_info_data(key, group_name, [integration_type]), deps=[catalog_key]
    )
    spec = spec.with_io_manager_key(spec.metadata.get(IO_MANAGER_METADATA_KEY) or "io_manager")
    key = spec.key

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        required_resource_keys={resource_key},
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=key,
                blocking=True,
                description="Write-info documents compared with the previous snapshot: fails when a field "
                "became required (rows that lack it would be rejected).",
            )
        ],
    )
    def _write_info(context: dg.AssetExecutionContext):
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        store = SchemaStore(state_dir) if state_dir else trackstar.schema_store()
        docs: dict[str, dict] = {}
        frames: list[pd.DataFrame] = []
        client = trackstar.get_client()  # the resource's: it closes it
        targets: list[tuple[str, str, str | None, str | None]] = []
        if use_connections:
            for conn in trackstar.resolved_connections():
                targets.append((conn.integration_type, conn.integration_name, conn.name, conn.access_token))
        for name in integrations:
            targets.append((integration_type, name, None, None))
        for itype, iname, conn_name, token in targets:
            skey = snapshot_key(itype, iname, conn_name)
            doc = client.get_write_info(itype, iname, access_token=token)
            docs[skey] = doc
            fields = write_info_fields(doc, itype, iname)
            fields["connection"] = pd.Series(
                [conn_name] * len(fields), dtype=fields["integration_name"].dtype
            )
            frames.append(fields)
        if frames:
            frame = pd.concat(frames, ignore_index=True)
        else:
            frame = write_info_fields({}, integration_type, "")
            frame["connection"] = frame["integration_name"]
        frame = WriteInfoAssetModel.validate(frame)

        previous = store.load_many(list(docs))
        drift = schema_drift(previous, {k: v for k, v in docs.items() if k in previous})
        for skey, doc in docs.items():
            store.save(skey, doc)

        summary = (
            frame.groupby(["integration_name", "action"], dropna=False)
            .agg(fields=("field", "size"), required=("required_effective", "sum"))
            .reset_index()
        )
        yield dg.Output(
            frame,
            output_name=key.to_python_identifier(),
            metadata={
                **frame_metadata(frame),
                "documents": dg.MetadataValue.json(sorted(docs)),
                "snapshot_dir": dg.MetadataValue.path(str(store.directory)),
                "fields_per_action": dg.MetadataValue.md(markdown_table(summary, max_rows=100)),
            },
        )
        yield dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            asset_key=key,
            passed=not drift.has_breaking,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                **{k: v for k, v in drift.to_metadata().items() if isinstance(v, int | float | str)},
                "drift": dg.MetadataValue.md(drift.to_markdown()),
                "compared_documents": dg.MetadataValue.int(len(previous)),
            },
            description="Newly required fields: "
            + ", ".join(sorted({d["field"] for d in drift.newly_required}))
            if drift.has_breaking
            else None,
        )

    return _write_info


def build_trackstar_schema_assets(
    *,
    integration_types: Sequence[str] = ("wms",),
    integrations: Sequence[str] = (),
    resource_key: str = "trackstar",
    group_name: str = "trackstar",
    state_dir: str | None = None,
    translator: TrackstarTranslator | None = None,
) -> list[dg.AssetsDefinition]:
    """Both schema assets, wired: catalog -> write-info (between their translated keys).

    Give a sync the same ``translator`` (``TrackstarSync(translator=...)``) so its payloads depend on the
    write-info asset's translated key, or set the sync's ``write_info_key``.
    """
    catalog = build_trackstar_catalog_asset(
        integration_types=integration_types,
        resource_key=resource_key,
        group_name=group_name,
        translator=translator,
    )
    return [
        catalog,
        build_trackstar_write_info_asset(
            integrations=integrations,
            integration_type=integration_types[0] if integration_types else "wms",
            resource_key=resource_key,
            catalog_key=catalog.key,
            group_name=group_name,
            state_dir=state_dir,
            translator=translator,
        ),
    ]


def catalog_data(
    key: dg.AssetKey = CATALOG_KEY, group_name: str = "trackstar", integration_types: Sequence[str] = ("wms",)
) -> TrackstarAssetData:
    """What a translator is told about the catalog asset."""
    return TrackstarAssetData(
        kind="catalog", key=key, group_name=group_name, integration_types=tuple(integration_types)
    )


def write_info_data(
    key: dg.AssetKey = WRITE_INFO_KEY,
    group_name: str = "trackstar",
    integration_types: Sequence[str] = ("wms",),
) -> TrackstarAssetData:
    """What a translator is told about the write-info asset."""
    return TrackstarAssetData(
        kind="write_info", key=key, group_name=group_name, integration_types=tuple(integration_types)
    )


def translated_write_info_key(translator: TrackstarTranslator | None) -> dg.AssetKey:
    """The write-info asset's key under ``translator`` (with the factory's defaults): what a sync depends on."""
    return (translator or TrackstarTranslator()).get_asset_spec(write_info_data()).key
