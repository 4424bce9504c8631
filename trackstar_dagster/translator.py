"""``TrackstarTranslator``: how the assets of a sync and the schema assets look in Dagster.

Modelled on ``DagsterFivetranTranslator.get_asset_spec(props)``: each asset the package builds is described
by a small ``TrackstarAssetData`` (which asset it is, of which sync, its default key and group, ...), and the
translator turns it into the ``AssetSpec`` the factories build it with. Subclass it and override
``get_asset_spec`` to change keys, groups, tags, descriptions, owners, kinds or metadata; the factories wire
lineage (source -> payloads, write-info -> payloads, payloads -> write results, catalog -> write-info) between
the *translated* keys, so renaming one asset never breaks the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import dagster as dg

__all__ = ["AssetKind", "TrackstarAssetData", "TrackstarTranslator"]

#: Which of the package's assets a ``TrackstarAssetData`` describes.
AssetKind = Literal["catalog", "write_info", "payloads", "rejects", "write_results", "order_statuses"]

_DESCRIPTIONS: dict[str, str] = {
    "catalog": "Trackstar integrations catalog ({types}): one row per integration x write operation.",
    "write_info": "Trackstar write-info: one row per field of every write operation, per integration.",
    "payloads": "Base Schema bodies ready to write, one per record.",
    "rejects": "Records refused before sending, with the field and reason.",
    "write_results": "One row per record: created, updated, unchanged, rejected, failed or dry_run, "
    "with the Trackstar id.",
    "order_statuses": "The sync's orders as Trackstar holds them: status, shipments, tracking numbers "
    "(the rows read in this materialization; the table holds them all).",
}


@dataclass(frozen=True)
class TrackstarAssetData:
    """What a translator knows about one asset (plain values, usable in a component's ``translation`` template
    as ``{{ data.kind }}``, ``{{ data.sync_name }}``, ...).

    ``key`` and ``group_name`` are the defaults the factory's own arguments give (``key_prefix``, ``group_name``,
    ``key=``): the base a translator usually starts from.
    """

    kind: AssetKind
    key: dg.AssetKey
    group_name: str
    #: the sync's name (``None`` for the catalog and write-info assets, which syncs share)
    sync_name: str | None = None
    #: the sync's ``tags`` (applied to its assets by default)
    tags: Mapping[str, str] = field(default_factory=dict)
    #: the mapping's write action (e.g. ``create_order``), for a sync's assets
    action: str | None = None
    #: the connections the sync's mapping writes to, or the schema assets fetch for
    connections: tuple[str, ...] = ()
    #: the integration types of the catalog (and of the write-info asset)
    integration_types: tuple[str, ...] = ()


class TrackstarTranslator:
    """Turns a ``TrackstarAssetData`` into the ``AssetSpec`` its asset is built with.

    Example: every Trackstar asset under ``ops/`` in one group, owned by a team::

        class OpsTranslator(TrackstarTranslator):
            def get_asset_spec(self, data: TrackstarAssetData) -> dg.AssetSpec:
                spec = super().get_asset_spec(data)
                return spec.replace_attributes(key=spec.key.with_prefix("ops"), group_name="ops",
                                               owners=["team:fulfilment"])

    Deps the returned spec names are kept, besides the ones the factories wire; ``partitions_def``,
    ``automation_condition`` and the IO manager are the sync's, whatever the spec says.
    """

    def get_asset_spec(self, data: TrackstarAssetData) -> dg.AssetSpec:
        """The default look: the factory's key and group, kinds ``trackstar`` and ``pandas``, a description
        of what the asset holds, and the sync's tags on a sync's assets."""
        description = _DESCRIPTIONS[data.kind].format(types=", ".join(data.integration_types) or "wms")
        return dg.AssetSpec(
            key=data.key,
            group_name=data.group_name,
            description=description,
            kinds={"trackstar", "pandas"},
            tags=dict(data.tags),
        )


def translated_spec(
    translator: TrackstarTranslator, data: TrackstarAssetData, *, deps: list[dg.AssetKey] | None = None
) -> dg.AssetSpec:
    """The translator's spec with the factory's deps first (the user's own deps are kept after them)."""
    spec = translator.get_asset_spec(data)
    if not isinstance(spec, dg.AssetSpec):
        raise dg.DagsterInvalidDefinitionError(
            f"{type(translator).__name__}.get_asset_spec must return a dg.AssetSpec, not {type(spec).__name__}"
        )
    wired = list(deps or [])
    extra = [d for d in spec.deps if d.asset_key not in wired]
    return spec.replace_attributes(deps=[*wired, *extra])
